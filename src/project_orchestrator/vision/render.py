"""The vision document as Markdown. Pure and deterministic: the hash of the text names a
version, so the same notes must always give byte-identical text."""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Iterable

from project_orchestrator.vision.models import LIST_TOPICS, NoteTopic
from project_orchestrator.vision.readiness import Note, current, join_phrases

NOT_DECIDED = "Not decided yet."
NOTHING_RULED_OUT = "Nothing ruled out yet."
UNTITLED = "Untitled project"

SECTION_WHAT = "What It Is"
SECTION_WHO = "Who It's For"
SECTION_PROBLEM = "Problem"
SECTION_SOLUTION = "Solution"
SECTION_FEATURES = "Key Features"
SECTION_JOURNEY = "User Journey"
SECTION_SUCCESS = "Success Metrics"
SECTION_OUT_OF_SCOPE = "Out of Scope"

# A line of the person's text that Markdown would read as a heading (ATX `# x`, or a
# setext underline) would masquerade as a section of the document; it is kept as text.
_HEADING_LIKE = re.compile(r"^( {0,3})(#{1,6}(?:[ \t]|$)|=+[ \t]*$|-+[ \t]*$)", re.MULTILINE)
_BLANK_RUN = re.compile(r"\n{3,}")
_ESCAPED = re.compile(r"^([ \t]*(?:- )?)\\([#=-])", re.MULTILINE)
_SENTENCE_END = ".!?"


def render_vision(project_name: str, notes: Iterable[Note]) -> str:
    """Markdown for the notes in force; superseded and retracted notes are left out."""
    single: dict[NoteTopic, str] = {}
    lists: dict[NoteTopic, list[str]] = {topic: [] for topic in LIST_TOPICS}
    for note in current(notes):
        if note.topic in lists:
            item = _one_line(note.text)
            if item:
                lists[note.topic].append(item)
        else:
            single[note.topic] = note.text

    features = lists[NoteTopic.FEATURE]
    solution = _paragraph(single.get(NoteTopic.SOLUTION, "")) or _plain_text(
        _fallback_solution(single.get(NoteTopic.WHAT, ""), features)
    )
    sections = (
        (SECTION_WHAT, _paragraph(single.get(NoteTopic.WHAT, "")) or NOT_DECIDED),
        (SECTION_WHO, _paragraph(single.get(NoteTopic.WHO, "")) or NOT_DECIDED),
        (SECTION_PROBLEM, _paragraph(single.get(NoteTopic.PROBLEM, "")) or NOT_DECIDED),
        (SECTION_SOLUTION, solution or NOT_DECIDED),
        (SECTION_FEATURES, _bullets(features) or NOT_DECIDED),
        (SECTION_JOURNEY, _paragraph(single.get(NoteTopic.JOURNEY, "")) or NOT_DECIDED),
        (SECTION_SUCCESS, _bullets(lists[NoteTopic.SUCCESS]) or NOT_DECIDED),
        (SECTION_OUT_OF_SCOPE, _bullets(lists[NoteTopic.OUT_OF_SCOPE]) or NOTHING_RULED_OUT),
    )
    title = " ".join(project_name.split()) or UNTITLED
    parts = [f"# {title}: Vision", *(f"## {heading}\n\n{body}" for heading, body in sections)]
    return "\n\n".join(parts) + "\n"


def content_hash(markdown: str) -> str:
    return hashlib.sha256(markdown.encode("utf-8")).hexdigest()


def summarize_vision(markdown: str, limit: int = 600) -> str:
    """A few plain sentences for the agent's system prompt: what, who, and the features."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    sections = _sections(markdown)
    pieces = []
    what = _plain(sections.get(SECTION_WHAT, ""))
    if what:
        pieces.append(f"What it is: {_sentence(what)}")
    who = _plain(sections.get(SECTION_WHO, ""))
    if who:
        pieces.append(f"Who it's for: {_sentence(who)}")
    features = [
        _plain(line[2:])
        for line in sections.get(SECTION_FEATURES, "").splitlines()
        if line.startswith("- ")
    ]
    if features:
        pieces.append(f"Key features: {'; '.join(f.rstrip('.;') for f in features)}.")
    return _truncate(" ".join(pieces), limit)


def brief_for_coding_agent(markdown: str, limit: int = 3000) -> str:
    """The approved vision on one line, for the coding agent's plan command: what it is,
    who it is for, the features, the journey and what is out of scope."""
    sections = _sections(markdown)
    pieces = []
    for heading, label in (
        (SECTION_WHAT, "What it is"),
        (SECTION_WHO, "Who it is for"),
        (SECTION_PROBLEM, "Problem"),
        (SECTION_FEATURES, "Key features"),
        (SECTION_JOURNEY, "User journey"),
        (SECTION_SUCCESS, "Success looks like"),
        (SECTION_OUT_OF_SCOPE, "Out of scope (do not build)"),
    ):
        body = sections.get(heading, "")
        items = [_plain(line[2:]) for line in body.splitlines() if line.startswith("- ")]
        text = "; ".join(i.rstrip(".;") for i in items) if items else _plain(body)
        if text and text not in (NOT_DECIDED, NOTHING_RULED_OUT):
            pieces.append(f"{label}: {text.rstrip('.')}.")
    return _truncate(" ".join(pieces), limit)


def _normalise(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return textwrap.dedent("\n".join(line.rstrip() for line in lines)).strip()


def _paragraph(text: str) -> str:
    return _plain_text(_BLANK_RUN.sub("\n\n", _normalise(text)))


def _plain_text(text: str) -> str:
    return _HEADING_LIKE.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {_plain_text(item)}" for item in items)


def _fallback_solution(what: str, features: list[str]) -> str:
    """A sentence from what it is and its features, when nobody has said how it solves
    the problem."""
    sentences = []
    what_line = _one_line(what)
    if what_line:
        sentences.append(_sentence(what_line))
    if features:
        listed = join_phrases([feature.rstrip(".;") for feature in features])
        sentences.append(f"It solves the problem with these features: {listed}.")
    return " ".join(sentences)


def _sentence(text: str) -> str:
    return text if text[-1] in _SENTENCE_END else f"{text}."


def sections(markdown: str) -> dict[str, str]:
    """The document's sections by heading."""
    return _sections(markdown)


def _sections(markdown: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    heading: str | None = None
    body: list[str] = []
    for line in [*markdown.splitlines(), "## "]:
        if line.startswith("## "):
            if heading is not None:
                sections[heading] = "\n".join(body).strip()
            heading, body = line[3:].strip(), []
        else:
            body.append(line)
    return sections


def _plain(text: str) -> str:
    return " ".join(_ESCAPED.sub(r"\1\2", text).split())


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    # Cut at a word boundary unless that would throw away most of the room.
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"
