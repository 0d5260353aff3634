"""The deployment files stay coherent with the service and with each other.

Docker is not available where the suite runs, so docker-compose.yml, the Dockerfile,
.dockerignore, .env.example and the runbook are parsed and checked, not executed.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from project_orchestrator import SERVICE_NAME
from project_orchestrator.config import Settings
from tests.support.contract import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
RUNBOOK = ROOT / "docs" / "runbook.md"

APP_SERVICES = ("migrate", "app", "worker")
ALL_SERVICES = ("db", *APP_SERVICES)
# Variables whose names differ from their Settings field (validation aliases).
ALIASED_NAMES = {"TELEGRAM_MODE", "WEBHOOK_IP_FILTERING_ENABLED"}
PROBE_ROUTES = ("/health", "/health/db", "/health/ai", "/health/ready", "/metrics")
AUDIT_KEYS = ("timestamp", "action", "user_id", "project_id", "details", "result", "ip_address")
_ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


# --- helpers -----------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    """Every environment variable the service reads, as Settings spells it."""
    names = set(ALIASED_NAMES)
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names.add((alias or field.alias or field_name).upper())
    return names


def secret_env_names() -> set[str]:
    """Secret settings (SecretStr), the database URL (it holds a password) and compose's."""
    names = {"DATABASE_URL", "POSTGRES_PASSWORD"}
    for field_name, field in Settings.model_fields.items():
        if "SecretStr" in repr(field.annotation):
            alias = field.validation_alias if isinstance(field.validation_alias, str) else None
            names.add((alias or field_name).upper())
    return names


def env_example_entries() -> list[tuple[bool, str, str, str | None]]:
    """(active, NAME, value, comment line just above) for each assignment in .env.example."""
    entries: list[tuple[bool, str, str, str | None]] = []
    previous: str | None = None
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        match = _ASSIGNMENT.match(line)
        if match:
            comment = None
            if previous and previous.startswith("#") and not _ASSIGNMENT.match(previous):
                comment = previous.lstrip("# ").strip() or None
            entries.append((match.group(1) is None, match.group(2), match.group(3), comment))
        previous = line
    return entries


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def as_list(command: Any) -> list[str]:
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


def published_host_ips(ports: list[Any]) -> list[str]:
    ips: list[str] = []
    for port in ports:
        if isinstance(port, dict):
            ips.append(str(port.get("host_ip", "")))
        else:
            spec = str(port)
            # "HOST_IP:HOST_PORT:CONTAINER_PORT"; anything shorter binds every interface.
            ips.append(spec.split(":")[0] if spec.count(":") >= 2 else "")
    return ips


def depends_on_conditions(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def runbook() -> str:
    assert RUNBOOK.is_file(), "docs/runbook.md is missing"
    return RUNBOOK.read_text(encoding="utf-8")


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_defines_the_four_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(ALL_SERVICES) <= set(services)


def test_database_is_postgres_16_with_healthcheck_and_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    db = services["db"]
    assert str(db["image"]).startswith("postgres:16")
    check = " ".join(as_list(db["healthcheck"]["test"]))
    assert "pg_isready" in check
    assert "-U" in check
    assert "-d" in check
    sources = [str(v).split(":")[0] for v in db["volumes"]]
    named = [s for s in sources if not s.startswith((".", "/", "~"))]
    assert named, "the database must live in a named volume"
    assert set(named) <= set(compose.get("volumes") or {})
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert "${" + key in str(db["environment"][key])


def test_every_published_port_binds_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for ip in published_host_ips(service.get("ports") or []):
            assert ip == "127.0.0.1", f"{name} publishes a port on {ip or 'every interface'}"
    assert published_host_ips(services["app"]["ports"]) == ["127.0.0.1"]
    assert "ports" not in services["worker"], "workers serve nothing; scaling must not clash"


def _default(value: str) -> str:
    """`${VAR:-default}` as compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_no_two_services_share_a_host_port_and_the_database_stays_inside(
    services: dict[str, dict[str, Any]],
) -> None:
    assert "ports" not in services["db"], "a PostgreSQL on the host already has 5432"
    taken: dict[str, str] = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            host_port = _default(str(port)).split(":")[1]
            assert host_port not in taken, f"{name} and {taken.get(host_port)} on {host_port}"
            taken[host_port] = name
    # SCAR's adapter listens on 3000: nothing of ours takes that host port.
    assert "3000" not in taken


def test_scar_is_reached_by_service_name_not_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        url = _default(str(services[name]["environment"]["SCAR_BASE_URL"]))
        assert url == "http://scar:3000", name


def test_stopping_waits_longer_than_the_drains(services: dict[str, dict[str, Any]]) -> None:
    defaults = Settings(_env_file=None)
    for name in ("app", "worker"):
        grace = str(services[name]["stop_grace_period"])
        seconds = int(grace.removesuffix("s"))
        # The request drain (20 s) and then the jobs' (WORKER_DRAIN_TIMEOUT_SECONDS).
        assert seconds > 20 + defaults.worker_drain_timeout_seconds, name


def test_migrate_runs_once_after_the_database_is_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    migrate = services["migrate"]
    assert as_list(migrate["command"]) == ["orchestrator", "migrate"]
    assert depends_on_conditions(migrate).get("db") == "service_healthy"
    # Quoted in YAML, else `no` reads as False and compose rejects the file.
    assert migrate["restart"] == "no"


@pytest.mark.parametrize("name", ["app", "worker"])
def test_app_and_worker_wait_for_healthy_db_and_finished_migrations(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    conditions = depends_on_conditions(services[name])
    assert conditions.get("db") == "service_healthy"
    assert conditions.get("migrate") == "service_completed_successfully"


def test_app_serves_without_in_process_worker_and_probes_readiness(
    services: dict[str, dict[str, Any]],
) -> None:
    app = services["app"]
    assert as_list(app["command"]) == ["orchestrator", "serve", "--no-worker"]
    assert "/health/ready" in " ".join(as_list(app["healthcheck"]["test"]))
    assert not app["healthcheck"].get("disable", False)
    assert as_list(services["worker"]["command"]) == ["orchestrator", "worker"]


def test_app_image_services_share_one_build_and_reach_the_db_service(
    services: dict[str, dict[str, Any]],
) -> None:
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        service = services[name]
        assert service.get("build") in (".", {"context": "."})
        env = service["environment"]
        assert str(env["DATABASE_URL"]).startswith("postgresql")
        assert "@db:5432/" in str(env["DATABASE_URL"])
        # Inside a container the service must listen beyond loopback to be reachable.
        assert ipaddress.ip_address(env["HOST"]).is_unspecified
        env_files = service["env_file"]
        assert any(
            isinstance(entry, dict) and entry["path"] == ".env" and entry["required"] is False
            for entry in env_files
        )


def test_audit_log_lives_on_a_volume_shared_by_app_and_workers(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("app", "worker"):
        service = services[name]
        audit_path = str(service["environment"]["AUDIT_LOG_PATH"])
        mounts = [str(v).split(":")[1] for v in service["volumes"]]
        assert any(audit_path.startswith(mount.rstrip("/") + "/") for mount in mounts)


def test_every_service_restarts_logs_with_rotation_and_has_a_memory_limit(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ALL_SERVICES:
        service = services[name]
        expected = "no" if name == "migrate" else "unless-stopped"
        assert service.get("restart") == expected, name
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert {"max-size", "max-file"} <= set(logging["options"]), name
        assert service["deploy"]["resources"]["limits"]["memory"], name


# --- Dockerfile and .dockerignore --------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(bases) >= 2
    assert all(base == "python:3.11-slim" for base in bases)
    runs = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    assert "uv sync --locked --no-dev" in runs


def test_dockerfile_runs_as_an_unprivileged_user() -> None:
    stage = final_stage()
    users = [args.split(":")[0] for keyword, args in stage if keyword == "USER"]
    assert users, "the final stage has no USER line"
    assert users[-1] not in {"root", "0"}
    # Nothing after the last USER may switch back to root.
    last_user = max(i for i, (keyword, _) in enumerate(stage) if keyword == "USER")
    assert all(keyword != "USER" for keyword, _ in stage[last_user + 1 :])
    runs = " ".join(args for keyword, args in stage if keyword == "RUN")
    assert "10001" in runs or "10001" in users[-1]
    # The service may write only its logs and the embedded database files.
    assert re.search(r"chown (\S+) logs data", runs), "logs/ and data/ must belong to the user"


def test_dockerfile_ships_code_and_migrations_and_serves_on_8000() -> None:
    stage = final_stage()
    copies = " ".join(args for keyword, args in stage if keyword == "COPY")
    for needed in ("src/", "alembic/", "alembic.ini", "/app/.venv"):
        assert needed in copies
    env = " ".join(args for keyword, args in stage if keyword == "ENV")
    for needed in ("APP_ENV=production", "HOST=0.0.0.0", "PORT=8000", "/app/.venv/bin"):
        assert needed in env
    assert ("EXPOSE", "8000") in stage
    healthchecks = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/health/ready" in healthchecks[0]
    assert "urllib" in healthchecks[0]
    cmds = [args for keyword, args in stage if keyword == "CMD"]
    assert json.loads(cmds[-1]) == ["orchestrator", "serve"]


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".venv", ".git", "data", "logs/*", ".env", "tests", "bench"):
        assert needed in patterns, needed
    for suffix in ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
        assert any(p.endswith(suffix) for p in patterns), suffix
    # The build needs these; excluding them breaks `uv sync --locked` or the image.
    for needed in ("src", "alembic", "alembic.ini", "pyproject.toml", "uv.lock", "README.md"):
        assert needed not in patterns, needed


# --- .env.example ------------------------------------------------------------------------


def test_env_example_lists_every_setting_with_a_comment() -> None:
    expected = settings_env_names()
    assert {"DATABASE_URL", "API_KEY", "DATA_DIR", "AUDIT_LOG_PATH"} <= expected
    entries = env_example_entries()
    listed = [name for _, name, _, _ in entries]
    assert expected <= set(listed), f"missing: {sorted(expected - set(listed))}"
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    uncommented = [name for _, name, _, comment in entries if comment is None]
    assert not uncommented, f"no comment line above: {uncommented}"


def test_env_example_holds_no_secret_values() -> None:
    secrets = secret_env_names()
    assert {"API_KEY", "GITHUB_WEBHOOK_SECRET", "TELEGRAM_BOT_TOKEN"} <= secrets
    entries = {name: (active, value) for active, name, value, _ in env_example_entries()}
    for name in secrets:
        active, value = entries[name]
        # Active and empty: the operator sees at once what to fill in.
        assert active, f"{name} should be an active line"
        assert value == "", f"{name} must be left empty in .env.example"


def test_env_example_is_loadable_and_shows_the_real_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Copied as-is to .env, the example must start the service with its defaults.
    from_example = Settings(_env_file=ENV_EXAMPLE)
    defaults = Settings(_env_file=None)
    assert from_example == defaults
    # Each commented default, uncommented, must equal what the service uses anyway.
    known = settings_env_names()
    for active, name, value, _ in env_example_entries():
        if active or name not in known:
            continue
        monkeypatch.setenv(name, value)
        try:
            assert Settings(_env_file=None) == defaults, f"{name}={value} is not the default"
        finally:
            monkeypatch.delenv(name)


# --- docs/runbook.md ---------------------------------------------------------------------


def test_runbook_covers_probes_doctor_and_migrations(runbook: str) -> None:
    for route in PROBE_ROUTES:
        assert f"`GET {route}`" in runbook or f"{route}`" in runbook, route
        assert f"127.0.0.1:8000{route}" in runbook, f"no curl example for {route}"
    assert "orchestrator doctor" in runbook
    for command in ("orchestrator migrate", "alembic downgrade -1", "alembic current"):
        assert command in runbook, command
    assert "pg_dump" in runbook
    assert "pg_restore" in runbook


def test_runbook_quotes_the_exact_probe_responses(runbook: str) -> None:
    for body in (
        {"status": "healthy", "service": SERVICE_NAME},
        {"status": "healthy", "database": "connected"},
        {"status": "healthy", "ai_service": "reachable"},
        {"status": "ready", "database": "ok", "ai_service": "ok"},
    ):
        assert json.dumps(body) in runbook, body
    assert '"migrations": "pending"' in runbook


def test_runbook_documents_every_metric_and_the_audit_log(runbook: str) -> None:
    for metric in METRIC_NAMES:
        assert f"`{metric}`" in runbook, metric
    for key in AUDIT_KEYS:
        assert f"`{key}`" in runbook, key
    assert "AUDIT_LOG_PATH" in runbook
    assert "logs/audit.log" in runbook
    assert "jq " in runbook
    assert "X-Request-ID" in runbook
