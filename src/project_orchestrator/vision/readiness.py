"""Is the vision complete enough to write down? Pure functions over brainstorm notes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from project_orchestrator.vision.models import SINGLE_VALUED_TOPICS, NoteTopic

MIN_FEATURES = 3
MIN_SUCCESS_MEASURES = 1

# Said to the person who has the idea, so no jargon ("user journey", "success metrics").
_SINGLE_PHRASES: tuple[tuple[NoteTopic, str], ...] = (
    (NoteTopic.WHAT, "what it is"),
    (NoteTopic.WHO, "who it is for"),
    (NoteTopic.PROBLEM, "the problem it solves"),
)
JOURNEY_PHRASE = "how someone would use it from start to finish"
SUCCESS_PHRASE = "how you will know it is working"


class Note(Protocol):
    """What these functions read of a note; `BrainstormNote` rows have it."""

    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> NoteTopic: ...
    @property
    def text(self) -> str: ...
    @property
    def retracted_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Readiness:
    ready: bool
    missing: tuple[str, ...]
    # How many current notes each topic has, every topic listed (zero included).
    have: dict[str, int]

    def describe_missing(self) -> str:
        """The missing items as one sentence fragment: "a, b and c"."""
        return join_phrases(self.missing)


N = TypeVar("N", bound=Note)


def current(notes: Iterable[N]) -> list[N]:
    """The notes in force, in id order: the latest of each single-valued topic, and every
    unretracted note of the list topics."""
    ordered = sorted(notes, key=lambda note: note.id)
    latest: dict[NoteTopic, int] = {
        note.topic: note.id for note in ordered if note.topic in SINGLE_VALUED_TOPICS
    }
    return [
        note
        for note in ordered
        if note.retracted_at is None
        and (note.topic not in SINGLE_VALUED_TOPICS or latest[note.topic] == note.id)
    ]


def check_readiness(notes: Iterable[Note]) -> Readiness:
    """Accepts every note of a project, superseded and retracted ones included."""
    have = {topic.value: 0 for topic in NoteTopic}
    for note in current(notes):
        have[note.topic.value] += 1

    missing = [phrase for topic, phrase in _SINGLE_PHRASES if not have[topic.value]]
    features = have[NoteTopic.FEATURE.value]
    if features < MIN_FEATURES:
        missing.append(_features_phrase(features))
    if not have[NoteTopic.JOURNEY.value]:
        missing.append(JOURNEY_PHRASE)
    if have[NoteTopic.SUCCESS.value] < MIN_SUCCESS_MEASURES:
        missing.append(SUCCESS_PHRASE)
    return Readiness(ready=not missing, missing=tuple(missing), have=have)


def _features_phrase(features: int) -> str:
    if features == 0:
        return f"at least {MIN_FEATURES} features"
    more = MIN_FEATURES - features
    return f"at least {more} more {'feature' if more == 1 else 'features'}"


def join_phrases(phrases: Sequence[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"
