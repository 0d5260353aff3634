"""The monitoring stack: Prometheus config and alert rules, Alertmanager, Grafana, compose.

promtool (Debian's `prometheus` package, installed by .ci/run) checks the config and the
rules and runs the rules' unit tests (monitoring/alerts_test.yml). Every metric the rules
and the dashboard query must be one the service defines. Docker is not available where the
suite runs, so the compose `monitoring` profile is parsed and checked. Finally a real
Prometheus scrapes a real `orchestrator serve` and loads the real alert rules.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.cli import COMMAND, clean_environment
from tests.support.contract import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager.yml"
GRAFANA = MONITORING / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = GRAFANA / "dashboards" / "orchestrator.json"
COMPOSE = ROOT / "docker-compose.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package `prometheus`; .ci/run installs it)",
)

MONITORING_SERVICES = ("prometheus", "alertmanager", "grafana")
CORE_SERVICES = ("db", "migrate", "app", "worker")

# Metrics the rules may use before the service exports them (none today).
PROPOSED_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {}
# Series Prometheus makes itself, not the service.
PROMETHEUS_SERIES = {"up"}
# Labels every scraped series carries: the scrape job, its target and the config's labels.
TARGET_LABELS = {"job", "instance", "component"}

# The issue's alert list: each rule, and the metric its expression must use.
REQUIRED_ALERTS = {
    "OrchestratorServiceDown": "up",
    "OrchestratorNotReady": "http_requests_total",
    "OrchestratorWebhookSignatureFailures": "webhook_events_total",
    "OrchestratorWebhookRateLimited": "webhook_events_total",
    "OrchestratorJobFailures": "jobs_total",
    "OrchestratorQueueBacklog": "job_queue_depth",
    "OrchestratorScarCommandsSlow": "scar_command_duration_seconds_bucket",
    "OrchestratorAIDegraded": "ai_degraded",
    "OrchestratorRunsStuck": "workflow_runs_stuck",
    "OrchestratorPhasesFailing": "workflow_phase_duration_seconds_count",
    "OrchestratorDecisionsSlow": "approval_gate_wait_seconds_bucket",
}
# The unit tests must prove at least these fire (and a quiet input fires nothing).
MUST_FIRE_IN_UNIT_TESTS = (
    "OrchestratorServiceDown",
    "OrchestratorJobFailures",
    "OrchestratorWebhookSignatureFailures",
)
RUNBOOK_SECTIONS = (
    "Database down",
    "SCAR down, slow or failing",
    "AI not configured or unreachable",
    "Job queue and workers",
    "Webhooks",
    "Workflow health",
)

_PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(\s*\()?")
_SELECTOR = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"")


# --- helpers -----------------------------------------------------------------------------


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions and keywords left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def label_matchers(expr: str) -> list[tuple[str, str]]:
    """(metric, label) for every label matcher written after a metric name."""
    pairs: list[tuple[str, str]] = []
    for metric, matchers in _SELECTOR.findall(_RANGE.sub("", expr)):
        pairs.extend((metric, label) for label in _MATCHER.findall(matchers))
    return pairs


def defined_series() -> dict[str, tuple[str, ...]]:
    """Every series name the service exports, with the labels the service gives it."""
    from prometheus_client.metrics import MetricWrapperBase

    from project_orchestrator import metrics, metrics_gauges

    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
    }
    series: dict[str, tuple[str, ...]] = {}
    for module in (metrics, metrics_gauges):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                labels = tuple(value._labelnames)
                for suffix in suffixes[str(value._type)]:
                    extra = ("le",) if suffix == "_bucket" else ()
                    series[value._name + suffix] = labels + extra
    return series


def allowed_labels(metric: str, own: tuple[str, ...]) -> set[str]:
    labels = set(own) | TARGET_LABELS
    if "job" in own:
        # The service's own `job` label clashes with the scrape job's: Prometheus keeps
        # the target's and stores the service's as exported_job (honor_labels: false).
        labels.add("exported_job")
    return labels


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in dashboard_panels() for t in panel.get("targets", [])]


def as_grafana_free(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, so promtool can parse it."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
    )


def bind_mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) for the service's ./relative bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        parts = str(volume).split(":")
        if parts[0].startswith("./"):
            mounts[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "rw")
    return mounts


def published_host_ips(ports: list[Any]) -> list[str]:
    ips = []
    for port in ports:
        spec = str(port)
        ips.append(spec.split(":")[0] if spec.count(":") >= 2 else "")
    return ips


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], Any], what: str, processes: list[subprocess.Popen[bytes]], timeout: float
) -> Any:
    """Call check until it returns something truthy; fail early if a process died."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args!r} exited while waiting for {what}"
        try:
            result = check()
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error!r})")


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return config


# --- promtool ----------------------------------------------------------------------------


@needs_promtool
def test_prometheus_config_passes_promtool() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    result = promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses queries only inside rule files: each becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": as_grafana_free(expr)}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_prove_firing_and_a_quiet_input() -> None:
    spec = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert spec["rule_files"] == ["alerts.yml"]
    fired: set[str] = set()
    silent_everywhere: list[set[str]] = []
    for case in spec["tests"]:
        checks = case.get("alert_rule_test", [])
        fired |= {c["alertname"] for c in checks if c.get("exp_alerts")}
        silent = {c["alertname"] for c in checks if not c.get("exp_alerts")}
        if not any(c.get("exp_alerts") for c in checks):
            silent_everywhere.append(silent)
    assert set(MUST_FIRE_IN_UNIT_TESTS) <= fired
    assert set(REQUIRED_ALERTS) <= fired, "every required alert has a test where it fires"
    every_alert = {rule["alert"] for rule in alert_rules()}
    assert any(every_alert <= silent for silent in silent_everywhere), (
        "one quiet test must check that no alert at all fires"
    )


# --- the rules ---------------------------------------------------------------------------


def test_the_issues_alerts_exist_on_the_right_metrics() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name, metric in REQUIRED_ALERTS.items():
        assert name in rules, name
        assert metric in metric_names(rules[name]["expr"]), (name, rules[name]["expr"])
    assert rules["OrchestratorServiceDown"]["expr"].replace(" ", "") == "up==0"
    not_ready = rules["OrchestratorNotReady"]["expr"]
    assert 'route="/health/ready"' in not_ready
    assert 'status="503"' in not_ready
    signature = rules["OrchestratorWebhookSignatureFailures"]["expr"]
    assert "bad_signature" in signature
    assert "bad_secret" in signature
    assert 'outcome="rate_limited"' in rules["OrchestratorWebhookRateLimited"]["expr"]
    assert 'outcome="failed"' in rules["OrchestratorJobFailures"]["expr"]
    assert "histogram_quantile(0.95" in rules["OrchestratorScarCommandsSlow"]["expr"]


def test_the_outcomes_the_rules_match_are_ones_the_service_records() -> None:
    # The outcome values are literals in src: a renamed one would silence its alert.
    source = "\n".join(
        path.read_text(encoding="utf-8")
        for path in (ROOT / "src" / "project_orchestrator").rglob("*.py")
    )
    for outcome in ("bad_signature", "bad_secret", "rate_limited", "unavailable", "failed"):
        assert f'"{outcome}"' in source, outcome
    assert 'not_configured"' in source


def test_every_rule_has_for_severity_and_operator_guidance() -> None:
    runbook_headings = {
        line.lstrip("#").strip()
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    named_sections: set[str] = set()
    for rule in alert_rules():
        name = rule["alert"]
        assert name.startswith("Orchestrator"), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for`"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        sections = re.findall(r'Runbook: ((?:"[^"]+",? ?)+)', annotations["description"])
        assert sections, f"{name}: the description names no runbook section"
        for section in re.findall(r'"([^"]+)"', sections[0]):
            assert section in runbook_headings, f"{name}: no runbook section {section!r}"
            named_sections.add(section)
        anchor = annotations["runbook"].partition("#")[2]
        slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in runbook_headings}
        assert anchor in slugs, f"{name}: runbook anchor #{anchor} matches no heading"
    assert set(RUNBOOK_SECTIONS) <= named_sections


def test_rules_and_dashboard_use_only_metrics_the_service_defines() -> None:
    series = defined_series()
    for name in METRIC_NAMES:  # the parser sees every metric CONTRACT.md names
        assert name in series or f"{name}_bucket" in series, name
    known = set(series) | PROMETHEUS_SERIES | set(PROPOSED_METRICS)
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used, "no metric found: the expression parser is broken"
    assert used <= known, f"unknown metrics: {sorted(used - known)}"
    # Histograms are read through their series, never by their bare name.
    assert "scar_command_duration_seconds_bucket" in used
    assert "http_request_duration_seconds_bucket" in used


def test_label_matchers_name_labels_the_metrics_have() -> None:
    series = defined_series()
    own_labels = {**series, **{name: labels for name, (_, labels) in PROPOSED_METRICS.items()}}
    own_labels["up"] = ()
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
    for expr in exprs:
        for metric, label in label_matchers(expr):
            allowed = allowed_labels(metric, own_labels[metric])
            assert label in allowed, f"{metric} has no label {label!r}: {expr}"
    # jobs_total{job=...} would match the scrape job, not the job name.
    for expr in exprs:
        assert not re.search(r'jobs_total\{[^}]*\bjob=~?"(handle_event|run_step)', expr), expr


def test_proposed_metrics_are_marked_in_the_rules() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    defined = defined_series()
    for name in PROPOSED_METRICS:
        if name in defined:
            continue  # the service exports it now; the marker may go
        marker = text.find("PROPOSED METRIC")
        assert marker != -1, f"{name} is not marked PROPOSED METRIC in alerts.yml"
        assert f"`{name}`" in text[marker : marker + 300], name


def test_self_made_metric_parser_reads_promql_as_prometheus_does() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, command) (rate(scar_command_duration_seconds_bucket"
        '{job="x", command=~"a|b"}[$__rate_interval] offset 5m))) > 1e3 and on (job) up == bool 1'
    )
    assert metric_names(expr) == {"scar_command_duration_seconds_bucket", "up"}
    assert label_matchers(expr) == [
        ("scar_command_duration_seconds_bucket", "job"),
        ("scar_command_duration_seconds_bucket", "command"),
    ]


# --- Prometheus, Alertmanager and Grafana files ------------------------------------------


def test_prometheus_scrapes_the_app_and_sends_to_alertmanager(
    prometheus_config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    app_job = jobs["orchestrator"]
    assert app_job.get("metrics_path", "/metrics") == "/metrics"
    assert not app_job.get("honor_labels", False)
    targets = [t for sc in app_job["static_configs"] for t in sc["targets"]]
    port = services["app"]["environment"]["PORT"]
    assert targets == [f"app:{port}"]
    # Every worker replica serves /metrics on the port compose gives it.
    worker_job = jobs["orchestrator-worker"]
    [dns] = worker_job["dns_sd_configs"]
    assert dns["names"] == ["worker"]
    assert str(dns["port"]) == str(services["worker"]["environment"]["WORKER_METRICS_PORT"])
    assert "worker" in PROMETHEUS_CONFIG.read_text(encoding="utf-8")  # the note says why
    assert prometheus_config["rule_files"] == ["alerts.yml"]
    managers = prometheus_config["alerting"]["alertmanagers"]
    manager_targets = [t for m in managers for sc in m["static_configs"] for t in sc["targets"]]
    assert manager_targets == ["alertmanager:9093"]
    assert "alertmanager" in services


def test_alertmanager_routes_to_a_defined_receiver_and_holds_no_secret() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    receivers = {receiver["name"] for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    for route in config["route"].get("routes", []):
        assert route["receiver"] in receivers
    text = json.dumps(config)
    for secret_field in ('"url"', "password", "api_key", "token", "routing_key"):
        assert secret_field not in text, secret_field
    raw = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
    assert "webhook_configs" in raw, "the webhook receiver placeholder is missing"
    assert "url_file" in raw


def test_grafana_provisions_the_datasource_and_the_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert len(datasources) == 1
    source = datasources[0]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text(encoding="utf-8"))["providers"]
    mounts = bind_mounts(services["grafana"])
    assert mounts["/etc/grafana/provisioning"] == ("./monitoring/grafana/provisioning", "ro")
    dashboards_target = next(
        target for target, (src, _) in mounts.items() if src == "./monitoring/grafana/dashboards"
    )
    assert [p["options"]["path"] for p in providers] == [dashboards_target]
    # Every panel queries the provisioned datasource.
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"]
    panels = [p for p in dashboard_panels() if p["type"] != "row"]
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
    exprs = " ".join(dashboard_exprs())
    for metric in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "webhook_events_total",
        "job_queue_depth",
        "jobs_total",
        "approval_gates_pending",
        "orchestrator_active_projects",
        "scar_command_duration_seconds_bucket",
        "ai_tokens_total",
        "workflow_phase_duration_seconds_bucket",
        "approval_gate_wait_seconds_bucket",
        "workflow_runs_stuck",
    ):
        assert metric in exprs, metric
    for quantile, metric, by in (
        ("0.50", "http_request_duration_seconds_bucket", "route"),
        ("0.99", "http_request_duration_seconds_bucket", "route"),
        ("0.50", "scar_command_duration_seconds_bucket", "command"),
        ("0.95", "scar_command_duration_seconds_bucket", "command"),
    ):
        pattern = rf"histogram_quantile\({quantile}, sum by \(le, {by}\) \(rate\({metric}"
        assert re.search(pattern, exprs), (quantile, metric)
    assert re.search(r"sum by \(source, outcome\) \(rate\(webhook_events_total", exprs)
    assert re.search(r"sum by \(direction\) \(rate\(ai_tokens_total", exprs)
    assert 'jobs_total{outcome="failed"}' in exprs


# --- docker-compose.yml ------------------------------------------------------------------


def test_monitoring_services_exist_only_under_the_monitoring_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in MONITORING_SERVICES:
        assert services[name].get("profiles") == ["monitoring"], name
    for name, service in services.items():
        if name not in MONITORING_SERVICES:
            # Everything else starts with a plain `docker compose up`.
            assert "profiles" not in service, name


def test_monitoring_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name in MONITORING_SERVICES:
        image = str(services[name]["image"])
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image}"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_every_service_has_limits_restart_policy_and_rotated_logs(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(CORE_SERVICES + MONITORING_SERVICES) <= set(services)
    shared_logging = services["db"]["logging"]
    for name, service in services.items():
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0, name
        assert re.fullmatch(r"\d+[MG]", str(limits["memory"])), name
        expected = "no" if name == "migrate" else "unless-stopped"
        assert service.get("restart") == expected, name
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert {"max-size", "max-file"} <= set(logging["options"]), name
        # One YAML anchor: PyYAML hands every alias the very same object.
        assert logging is shared_logging, f"{name} does not use the shared logging anchor"


def test_every_published_port_is_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for ip in published_host_ips(service.get("ports") or []):
            assert ip == "127.0.0.1", f"{name} publishes a port on {ip or 'every interface'}"
    for name in MONITORING_SERVICES:
        assert published_host_ips(services[name]["ports"]) == ["127.0.0.1"], name


def test_the_worker_stays_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "replicas" not in worker.get("deploy", {}), "`--scale worker=N` decides"
    for name, service in services.items():
        assert "container_name" not in service, name


def test_monitoring_files_are_mounted_read_only_and_data_kept_in_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared_volumes = set(compose["volumes"])
    for name in MONITORING_SERVICES:
        service = services[name]
        for _target, (source, mode) in bind_mounts(service).items():
            assert mode == "ro", f"{name} mounts {source} writable"
            assert (ROOT / source).exists(), source
        named = [
            str(v).split(":")[0]
            for v in service["volumes"]
            if not str(v).startswith((".", "/", "~"))
        ]
        assert len(named) == 1, f"{name} keeps its data in one named volume"
        assert named[0] in declared_volumes, name
    prometheus = services["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = config_flag.partition("=")[2]
    mounts = bind_mounts(prometheus)
    assert mounts[config_path][0] == "./monitoring/prometheus.yml"
    # rule_files are relative to the config: alerts.yml must sit next to it.
    assert mounts[str(Path(config_path).parent / "alerts.yml")][0] == "./monitoring/alerts.yml"
    alertmanager = services["alertmanager"]
    am_flag = next(a for a in alertmanager["command"] if a.startswith("--config.file="))
    assert bind_mounts(alertmanager)[am_flag.partition("=")[2]][0] == (
        "./monitoring/alertmanager.yml"
    )


def test_grafana_password_comes_from_the_environment_with_no_default(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    password = str(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"])
    # Empty when unset (no default secret); the entrypoint then refuses to start.
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD(:?-)?\}", password), password
    guard = " ".join(grafana["entrypoint"])
    assert "GF_SECURITY_ADMIN_PASSWORD" in guard
    assert "exit 1" in guard
    assert "GRAFANA_ADMIN_PASSWORD" in guard
    # `${VAR:?}` is checked even when the profile is off: it would break `docker compose up`.
    for name in MONITORING_SERVICES:
        assert ":?" not in json.dumps(services[name]), name
    text = COMPOSE.read_text(encoding="utf-8").lower()
    assert "admin_password: admin" not in text


# --- a real Prometheus scraping a real `orchestrator serve` ------------------------------


@pytest.fixture
def orchestrator(tmp_path: Path, database_url: str) -> Iterator[str]:
    """`orchestrator serve` on a free port; yields its base URL."""
    port = free_port()
    env = clean_environment(
        DATABASE_URL=database_url,
        HOST="127.0.0.1",
        PORT=str(port),
        AUDIT_LOG_PATH=str(tmp_path / "audit.log"),
        DATA_DIR=str(tmp_path / "data"),
        TELEGRAM_MODE="off",
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*COMMAND, "serve", "--no-worker"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: httpx.get(f"{base}/health/ready", timeout=2).status_code == 200,
            "the app to be ready",
            [process],
            timeout=60,
        )
        yield base
        assert stop(process) == 0, log_path.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is not installed (Debian package `prometheus`; .ci/run installs it)",
)
def test_real_prometheus_scrapes_the_app_and_loads_the_alert_rules(
    tmp_path: Path, orchestrator: str
) -> None:
    assert PROMETHEUS is not None
    app_address = orchestrator.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "orchestrator", "static_configs": [{"targets": [app_address]}]}
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def get(path: str, **params: str) -> Any:
        response = httpx.get(f"{api}/{path}", params=params, timeout=2)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = get("query", query=expr)["result"]
        return result

    try:
        # Traffic for the request counter (the probes count like any route).
        httpx.get(f"{orchestrator}/health", timeout=5)

        def target_up() -> bool:
            targets = get("targets")["activeTargets"]
            return len(targets) == 1 and targets[0]["health"] == "up"

        wait_for(target_up, "the app target to be up", [prometheus], timeout=30)
        up = wait_for(lambda: query('up{job="orchestrator"}'), "up", [prometheus], timeout=10)
        assert up[0]["value"][1] == "1"

        requests = wait_for(
            lambda: query('http_requests_total{route="/health"}'),
            "http_requests_total",
            [prometheus],
            timeout=10,
        )
        assert requests[0]["metric"]["job"] == "orchestrator"
        assert requests[0]["metric"]["method"] == "GET"
        assert float(requests[0]["value"][1]) >= 1
        # A gauge the app reads from the database when scraped.
        depth = wait_for(lambda: query("job_queue_depth"), "job_queue_depth", [prometheus], 10)
        assert float(depth[0]["value"][1]) >= 0

        expected_groups = [g["name"] for g in yaml.safe_load(ALERTS.read_text())["groups"]]
        expected_alerts = {rule["alert"] for rule in alert_rules()}

        def rules_evaluated() -> list[dict[str, Any]] | None:
            groups: list[dict[str, Any]] = get("rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if any(rule.get("lastEvaluation", "").startswith("0001") for rule in rules):
                return None  # not evaluated yet
            return groups

        groups = wait_for(rules_evaluated, "the rules to be evaluated", [prometheus], 15)
        assert sorted(g["name"] for g in groups) == sorted(expected_groups)
        assert all(g["file"] == str(ALERTS) for g in groups)
        rules = [rule for group in groups for rule in group["rules"]]
        assert {rule["name"] for rule in rules} == expected_alerts
        for rule in rules:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        # Right after start the only alert is the true one: this app has no AI configured,
        # so ai_degraded is 1 and the AI alert waits out its `for` (pending, not firing).
        alerts = get("alerts")["alerts"]
        assert [(a["labels"]["alertname"], a["state"]) for a in alerts] in (
            [],
            [("OrchestratorAIDegraded", "pending")],
        )
        degraded = wait_for(lambda: query("ai_degraded"), "ai_degraded", [prometheus], 10)
        assert float(degraded[0]["value"][1]) == 1
    finally:
        code = stop(prometheus, timeout=15)
    assert code == 0, log_path.read_text(errors="replace")
