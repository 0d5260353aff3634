"""The summary report: what the builds of a period came to, for a person to paste.

Every figure is read from the rows in one statement (one snapshot), for the
half-open window [since, until): a run counts as started by its creation, as completed
or cancelled by its end; a decision by when it was made; a failure by when its phase
ended.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from project_orchestrator.db.engine import one_connection_database
from project_orchestrator.projects.cost import Cost, Usage
from project_orchestrator.projects.spending import prices

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PERIOD = re.compile(r"(\d{1,5})([mhdw])")
LONGEST_PERIOD = timedelta(days=3660)


def parse_period(value: str) -> timedelta:
    """`30m`, `24h`, `7d`, `2w` as a duration; ValueError in plain words otherwise."""
    found = _PERIOD.fullmatch(value.strip().lower())
    if found is None:
        raise ValueError(
            f"{value!r} is not a period: use a number and a unit, such as 24h, 7d or 2w "
            "(m minutes, h hours, d days, w weeks)"
        )
    period = timedelta(seconds=int(found[1]) * _UNITS[found[2]])
    if not timedelta(0) < period <= LONGEST_PERIOD:
        raise ValueError(f"{value!r} is out of range: between 1m and 3660d")
    return period


@dataclass(frozen=True)
class GateWait:
    kind: str
    decisions: int
    median_seconds: float


@dataclass(frozen=True)
class Summary:
    since: datetime
    until: datetime
    projects_total: int
    projects_new: int
    runs_started: int
    runs_completed: int
    runs_cancelled: int
    runs_failed: int
    # From a run's start (the idea) to its merged pull request, over runs completed.
    median_idea_to_merge_seconds: float | None
    # Build attempts after a run's first: each one fixes failed checks or a change asked
    # for at the merge gate.
    fix_attempts: int
    # Every model call charged in the period (interrupted tool rounds included).
    ai_tokens: int
    # Estimated at the price list's prices; None when a model used has no price.
    ai_cost_usd: float | None = None
    ai_unpriced_models: list[str] = field(default_factory=list)
    gate_waits: list[GateWait] = field(default_factory=list)
    failures_by_phase: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat()
        data["until"] = self.until.isoformat()
        return data


_TOTALS = text(
    """
    SELECT
        (SELECT count(*) FROM projects WHERE created_at < :until) AS projects_total,
        (SELECT count(*) FROM projects
          WHERE created_at >= :since AND created_at < :until) AS projects_new,
        (SELECT count(*) FROM workflow_runs
          WHERE created_at >= :since AND created_at < :until) AS runs_started,
        (SELECT count(*) FROM workflow_runs WHERE status = 'completed'
            AND finished_at >= :since AND finished_at < :until) AS runs_completed,
        (SELECT count(*) FROM workflow_runs WHERE status = 'cancelled'
            AND finished_at >= :since AND finished_at < :until) AS runs_cancelled,
        (SELECT count(*) FROM workflow_runs WHERE status = 'failed'
            AND finished_at >= :since AND finished_at < :until) AS runs_failed,
        (SELECT percentile_cont(0.5) WITHIN GROUP (
                ORDER BY extract(epoch FROM finished_at - created_at))
           FROM workflow_runs WHERE status = 'completed'
            AND finished_at >= :since AND finished_at < :until) AS median_idea_to_merge,
        (SELECT count(*) FROM workflow_phases WHERE phase = 'execute' AND attempt > 1
            AND created_at >= :since AND created_at < :until) AS fix_attempts,
        (SELECT coalesce(json_agg(u), '[]') FROM (
            SELECT model, sum(input_tokens) AS input, sum(output_tokens) AS output,
                   sum(cache_read_tokens) AS cache_read, sum(cache_write_tokens) AS cache_write
              FROM ai_usage WHERE created_at >= :since AND created_at < :until
             GROUP BY model) u) AS ai_usage,
        (SELECT coalesce(json_agg(w ORDER BY w.kind), '[]') FROM (
            SELECT kind::text AS kind, count(*) AS decisions,
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY extract(epoch FROM decided_at - created_at)) AS median_seconds
              FROM approval_gates
             WHERE status IN ('approved', 'rejected')
               AND decided_at >= :since AND decided_at < :until
             GROUP BY kind) w) AS gate_waits,
        (SELECT coalesce(json_object_agg(f.phase, f.failures ORDER BY f.phase), '{}') FROM (
            SELECT phase::text AS phase, count(*) AS failures
              FROM workflow_phases
             WHERE status = 'failed' AND finished_at >= :since AND finished_at < :until
             GROUP BY phase) f) AS failures_by_phase
    """
)


async def summarise(session: AsyncSession, *, since: datetime, until: datetime) -> Summary:
    """The summary of [since, until), read in one statement (one snapshot)."""
    totals = (await session.execute(_TOTALS, {"since": since, "until": until})).one()
    ai = prices().cost(_usage(row) for row in _json(totals.ai_usage))
    return Summary(
        since=since,
        until=until,
        projects_total=totals.projects_total,
        projects_new=totals.projects_new,
        runs_started=totals.runs_started,
        runs_completed=totals.runs_completed,
        runs_cancelled=totals.runs_cancelled,
        runs_failed=totals.runs_failed,
        median_idea_to_merge_seconds=_seconds(totals.median_idea_to_merge),
        fix_attempts=totals.fix_attempts,
        ai_tokens=ai.tokens,
        ai_cost_usd=ai.dollars,
        ai_unpriced_models=list(ai.unpriced_models),
        gate_waits=[
            GateWait(w["kind"], int(w["decisions"]), float(w["median_seconds"]))
            for w in _json(totals.gate_waits)
        ],
        failures_by_phase={phase: int(n) for phase, n in _json(totals.failures_by_phase).items()},
    )


def _usage(row: dict[str, Any]) -> Usage:
    return Usage(
        str(row["model"]),
        int(row["input"]),
        int(row["output"]),
        int(row["cache_read"]),
        int(row["cache_write"]),
    )


def _json(value: Any) -> Any:
    """A json column of a text() statement: asyncpg hands it over as its text."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def human_duration(seconds: float | None) -> str:
    """`3 days 4 hours`, `2 hours 5 minutes`, `40 seconds`: two units at most."""
    if seconds is None:
        return "none finished"
    whole = round(seconds)
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(parts[:2]) or "0 seconds"


# How a gate kind reads in the report where its own name would not.
_GATE_NAMES = {"error_resolution": "after a problem"}


def render_markdown(summary: Summary) -> str:
    """The report as Markdown a person can paste into a chat."""
    day = "%Y-%m-%d %H:%M UTC"
    lines = [
        f"## Builds from {summary.since.strftime(day)} to {summary.until.strftime(day)}",
        "",
        f"- Projects: {summary.projects_total} ({summary.projects_new} new)",
        f"- Builds started: {summary.runs_started}",
        f"- Builds merged: {summary.runs_completed}",
        f"- Builds cancelled: {summary.runs_cancelled}",
        f"- Builds failed: {summary.runs_failed}",
        "- Median time from idea to merged pull request: "
        + human_duration(summary.median_idea_to_merge_seconds),
        f"- Fix attempts (rebuilds after failed checks or requested changes): "
        f"{summary.fix_attempts}",
        f"- AI tokens: {summary.ai_tokens:,}, "
        + Cost(
            summary.ai_tokens, summary.ai_cost_usd, tuple(summary.ai_unpriced_models)
        ).dollar_words(),
        "",
        "### Waiting for decisions (median)",
        "",
    ]
    if summary.gate_waits:
        lines += [
            f"- {_GATE_NAMES.get(w.kind, w.kind)}: {human_duration(w.median_seconds)} "
            f"over {w.decisions} decision{'' if w.decisions == 1 else 's'}"
            for w in summary.gate_waits
        ]
    else:
        lines.append("- no decisions in this period")
    lines += ["", "### Steps that failed", ""]
    if summary.failures_by_phase:
        lines += [f"- {phase}: {n}" for phase, n in summary.failures_by_phase.items()]
    else:
        lines.append("- none")
    return "\n".join(lines) + "\n"


async def report_from(database_url: str, period: timedelta) -> Summary:
    """`orchestrator report`: the summary of the last `period`, from a database URL."""
    async with one_connection_database(database_url) as db, db.sessionmaker() as session:
        until = datetime.now(UTC)
        return await summarise(session, since=until - period, until=until)
