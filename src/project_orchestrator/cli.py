"""The `orchestrator` command line (typer). Heavy imports stay inside commands."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer

from project_orchestrator.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from project_orchestrator.config import Settings

app = typer.Typer(
    name="orchestrator",
    help="Project Orchestrator: build software by chatting.",
    no_args_is_help=True,
    add_completion=False,
)
events_app = typer.Typer(help="Inspect and replay inbound events.", no_args_is_help=True)
app.add_typer(events_app, name="events")
telegram_app = typer.Typer(help="Point Telegram at this service.", no_args_is_help=True)
app.add_typer(telegram_app, name="telegram")


def _load_settings() -> Settings:
    from pydantic import ValidationError

    from project_orchestrator.config import get_settings
    from project_orchestrator.logging import configure_logging, set_known_secrets

    try:
        settings = get_settings()
    except ValidationError as exc:
        typer.echo(f"Invalid configuration:\n{_describe_validation_error(exc)}", err=True)
        raise typer.Exit(2) from None
    configure_logging(level=settings.log_level, json_output=settings.is_production)
    set_known_secrets(settings.secret_values())
    return settings


def _describe_validation_error(exc: ValidationError) -> str:
    """Each setting at fault, by name, with pydantic's message: never the value given.

    `str(exc)` would print every `input_value`, and the offending input may be a secret
    (or a secret pasted into the wrong setting), so only the names and messages are used,
    and a message that quotes its input anyway has it cut out.
    """
    lines = []
    for error in exc.errors(include_url=False, include_context=False, include_input=True):
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        message = str(error["msg"])
        given = error.get("input")
        if isinstance(given, str) and given.strip() and given in message:
            message = message.replace(given, "[redacted]")
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)


def _refuse_unstartable(settings: Settings) -> None:
    try:
        settings.check_startable()
    except ConfigurationError as exc:
        typer.echo(f"Refusing to start: {exc.message}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run the job worker in-process.")
    ] = True,
    host: Annotated[str | None, typer.Option(help="Listen address (default HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default PORT).")] = None,
    api_processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="API processes sharing the port (default WEB_CONCURRENCY, else 1); "
            "with more than one, the worker runs as a process of its own.",
        ),
    ] = None,
) -> None:
    """Run the API (and, unless --no-worker, a worker), migrating the database first."""
    settings = _load_settings()
    _refuse_unstartable(settings)
    from project_orchestrator.runtime import run_server

    run_server(
        settings,
        with_worker=worker,
        host=host,
        port=port,
        api_processes=api_processes or settings.api_processes,
    )


@app.command()
def migrate() -> None:
    """Apply pending database migrations (same as `alembic upgrade head`)."""
    settings = _load_settings()
    from project_orchestrator.runtime import database_url_for_cli, migrate_database

    with database_url_for_cli(settings) as url:
        migrate_database(url)
    typer.echo("Database is at the latest migration.")


@app.command("database-url")
def database_url() -> None:
    """Print DATABASE_URL as psql and pg_dump take it: psql "$(orchestrator database-url)"."""
    settings = _load_settings()
    if not settings.database_url:
        typer.echo(
            "DATABASE_URL is not set: the embedded database runs only inside "
            "`orchestrator serve` (and one-off commands such as `orchestrator report`). "
            "Set DATABASE_URL to use psql or pg_dump.",
            err=True,
        )
        raise typer.Exit(2)
    from project_orchestrator.db.raw import asyncpg_dsn

    # SQLAlchemy's `postgresql+asyncpg://` without the driver is the libpq form.
    typer.echo(asyncpg_dsn(settings.database_url))


@app.command()
def backup(
    file: Annotated[
        str | None, typer.Argument(help="Where to write it (default orchestrator-<time>.dump)")
    ] = None,
) -> None:
    """Back up the database (pg_dump's custom format), the configured or the embedded one."""
    settings = _load_settings()
    from pathlib import Path

    from project_orchestrator.db import backup as backups
    from project_orchestrator.runtime import database_url_for_cli

    target = Path(file) if file else backups.default_name()
    with database_url_for_cli(settings) as url:
        try:
            backups.backup(url, target)
        except backups.BackupError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(exc.exit_code) from None
    typer.echo(f"Backed up to {target} ({target.stat().st_size:,} bytes).")


@app.command()
def restore(
    file: Annotated[str, typer.Argument(help="A file `orchestrator backup` wrote")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace what a non-empty database holds.")
    ] = False,
) -> None:
    """Restore a backup into the database; an empty one, unless --force."""
    settings = _load_settings()
    from pathlib import Path

    from project_orchestrator.db import backup as backups
    from project_orchestrator.runtime import database_url_for_cli

    if not Path(file).is_file():
        typer.echo(f"{file} is not a file.", err=True)
        raise typer.Exit(1)
    with database_url_for_cli(settings) as url:
        try:
            tables = asyncio.run(backups.user_tables(url))
            backups.restore(url, Path(file), tables_there=tables, force=force)
        except backups.BackupError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(exc.exit_code) from None
    typer.echo(f"Restored {file}.")


@app.command()
def doctor() -> None:
    """Check configuration, database, migrations, AI, Telegram, GitHub and SCAR."""
    settings = _load_settings()
    from project_orchestrator.doctor import exit_code, render, run_checks
    from project_orchestrator.doctor_database import embedded_exists

    if embedded_exists(settings):
        # The embedded database, checked for real: attached to the server a running
        # `serve` holds, or started for the checks and stopped after them.
        from project_orchestrator.runtime import database_url_for_cli

        with database_url_for_cli(settings) as url:
            results = asyncio.run(run_checks(settings, url))
    else:
        results = asyncio.run(run_checks(settings))
    typer.echo(render(results))
    raise typer.Exit(exit_code(results))


@app.command()
def worker() -> None:
    """Run the job worker alone (several may run, on several machines)."""
    settings = _load_settings()
    _refuse_unstartable(settings)
    from project_orchestrator.runtime import run_worker_process

    run_worker_process(settings)


@app.command()
def report(
    since: Annotated[
        str, typer.Option(help="How far back: a number and a unit (m, h, d, w), such as 7d.")
    ] = "7d",
    output_format: Annotated[
        str, typer.Option("--format", help="markdown (to paste into a chat) or json.")
    ] = "markdown",
) -> None:
    """What the builds of a period came to: runs, time to merge, decisions, failures."""
    from project_orchestrator.workflow.report import parse_period, render_markdown, report_from

    if output_format not in ("markdown", "json"):
        typer.echo(f"--format must be markdown or json, not {output_format!r}.", err=True)
        raise typer.Exit(2)
    try:
        period = parse_period(since)
    except ValueError as exc:
        typer.echo(f"--since: {exc}.", err=True)
        raise typer.Exit(2) from None
    settings = _load_settings()
    from project_orchestrator.runtime import database_url_for_cli

    with database_url_for_cli(settings) as url:
        summary = asyncio.run(report_from(url, period))
    if output_format == "json":
        typer.echo(json.dumps(summary.as_json(), indent=2))
    else:
        typer.echo(render_markdown(summary), nl=False)


@events_app.command("list")
def events_list(
    failed: Annotated[bool, typer.Option("--failed", help="Only events that failed.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List recent inbound events (newest first)."""
    settings = _load_settings()
    from project_orchestrator.events.cli import list_events
    from project_orchestrator.runtime import database_url_for_cli

    with database_url_for_cli(settings) as url:
        lines = asyncio.run(list_events(url, failed_only=failed, limit=limit))
    typer.echo("\n".join(lines) if lines else "No events.")


@events_app.command("replay")
def events_replay(event_id: Annotated[int, typer.Argument(help="Event id")]) -> None:
    """Run an event's handling again (a failed one, or any other)."""
    settings = _load_settings()
    from project_orchestrator.audit import AuditAction, AuditLog
    from project_orchestrator.events.cli import replay
    from project_orchestrator.events.replay import UnknownEvent
    from project_orchestrator.runtime import database_url_for_cli

    with database_url_for_cli(settings) as url:
        try:
            message = asyncio.run(replay(url, event_id))
        except UnknownEvent as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    AuditLog(settings.audit_log_path, known_secrets=settings.secret_values()).record(
        AuditAction.EVENT_REPLAYED, details={"event_id": event_id, "via": "cli"}
    )
    typer.echo(message)


def _telegram(command: Callable[[Settings], Coroutine[Any, Any, list[str]]]) -> None:
    settings = _load_settings()
    from project_orchestrator.ingress.telegram.cli import TelegramCommandError

    try:
        lines = asyncio.run(command(settings))
    except TelegramCommandError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo("\n".join(lines))


@telegram_app.command("set-webhook")
def telegram_set_webhook(
    url: Annotated[str, typer.Argument(help="Public URL of this service's /webhooks/telegram")],
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow http:// (local testing only).")
    ] = False,
    drop_pending: Annotated[
        bool, typer.Option("--drop-pending", help="Discard updates Telegram holds.")
    ] = False,
) -> None:
    """Have Telegram deliver updates to URL, signed with TELEGRAM_WEBHOOK_SECRET."""
    from project_orchestrator.ingress.telegram.cli import set_webhook

    _telegram(lambda s: set_webhook(s, url, insecure=insecure, drop_pending=drop_pending))


@telegram_app.command("delete-webhook")
def telegram_delete_webhook(
    drop_pending: Annotated[
        bool, typer.Option("--drop-pending", help="Discard updates Telegram holds.")
    ] = False,
) -> None:
    """Stop webhook delivery (needed before TELEGRAM_MODE=polling can fetch updates)."""
    from project_orchestrator.ingress.telegram.cli import delete_webhook

    _telegram(lambda s: delete_webhook(s, drop_pending=drop_pending))


@telegram_app.command("webhook-info")
def telegram_webhook_info() -> None:
    """Show the webhook Telegram has: URL, pending updates, last delivery error."""
    from project_orchestrator.ingress.telegram.cli import webhook_info

    _telegram(webhook_info)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
