"""The job kinds and how a job's payload is written and read."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

# One job per inbound event; the event row holds everything the handler needs.
HANDLE_EVENT = "handle_event"


@dataclass(frozen=True)
class EventJob:
    event_id: int
    correlation_id: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"event_id": self.event_id, "correlation_id": self.correlation_id})

    @classmethod
    def decode(cls, payload: bytes | None) -> EventJob:
        if not payload:
            raise ValueError("event job without a payload")
        data = orjson.loads(payload)
        return cls(event_id=int(data["event_id"]), correlation_id=data.get("correlation_id"))


# One job per phase attempt that runs a SCAR command; the phase row holds the rest.
RUN_STEP = "run_step"


@dataclass(frozen=True)
class StepJob:
    phase_id: str
    correlation_id: str | None = None
    # A checks phase waits on GitHub: its jobs form one chain of polls (`poll` counts
    # them), and webhooks add `wake` jobs, which read GitHub once and end no chain.
    poll: int = 0
    wake: bool = False

    def encode(self) -> bytes:
        data: dict[str, object] = {"phase_id": self.phase_id, "correlation_id": self.correlation_id}
        if self.poll:
            data["poll"] = self.poll
        if self.wake:
            data["wake"] = True
        return orjson.dumps(data)

    @classmethod
    def decode(cls, payload: bytes | None) -> StepJob:
        if not payload:
            raise ValueError("step job without a payload")
        data = orjson.loads(payload)
        return cls(
            phase_id=str(data["phase_id"]),
            correlation_id=data.get("correlation_id"),
            poll=int(data.get("poll") or 0),
            wake=bool(data.get("wake")),
        )


# One job per outbox row written; it delivers its conversation's pending messages in order.
DELIVER_OUTBOUND = "deliver_outbound"


@dataclass(frozen=True)
class DeliveryJob:
    conversation: str
    correlation_id: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(
            {"conversation": self.conversation, "correlation_id": self.correlation_id}
        )

    @classmethod
    def decode(cls, payload: bytes | None) -> DeliveryJob:
        if not payload:
            raise ValueError("delivery job without a payload")
        data = orjson.loads(payload)
        return cls(
            conversation=str(data["conversation"]), correlation_id=data.get("correlation_id")
        )


# One job per person's message the agent answers; it answers its project's newest turn.
AGENT_TURN = "agent_turn"


@dataclass(frozen=True)
class TurnJob:
    project_id: str
    correlation_id: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"project_id": self.project_id, "correlation_id": self.correlation_id})

    @classmethod
    def decode(cls, payload: bytes | None) -> TurnJob:
        if not payload:
            raise ValueError("turn job without a payload")
        data = orjson.loads(payload)
        return cls(project_id=str(data["project_id"]), correlation_id=data.get("correlation_id"))
