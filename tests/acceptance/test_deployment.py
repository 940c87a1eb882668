"""docker-compose.yml and the Dockerfile say what the README promises (no Docker engine runs in CI, so
the file itself is checked: services, builds, health checks, signals, no required variable, Redis
durability, Flower kept internal; and the handler mechanism is run as the containers run it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SMQ_SERVICES = ("migrate", "worker", "scheduler", "flower", "leader", "cli")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_every_long_running_service_has_a_health_check() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "worker", "scheduler", "flower", "leader"} <= set(services)
    for name in ("postgres", "redis", "worker", "scheduler", "flower", "leader"):
        assert "healthcheck" in services[name], name


def test_workers_consume_the_three_queues_and_wait_for_the_schema() -> None:
    worker = compose()["services"]["worker"]
    assert worker["command"][:3] == ["celery", "-A", "smq"]
    assert "critical,default,low" in worker["command"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "deploy" not in worker or "replicas" not in worker["deploy"], "scaling is left to --scale"


def test_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_flower_has_basic_auth_and_is_published_on_loopback_only() -> None:
    flower = compose()["services"]["flower"]
    command = " ".join(flower["command"])
    assert "--basic-auth" in command
    # What Flower must show (issue 18): the execution (args) and the failure (exception) in its list,
    # and its task history kept across restarts on a volume.
    assert "--tasks_columns=" in command and "args" in command and "exception" in command
    assert "--persistent=True" in command and any(v.endswith(":/data") for v in flower["volumes"])
    assert all(str(port).startswith("127.0.0.1:") for port in flower.get("ports", []))
    assert flower["networks"] == ["internal"]


def test_the_image_caches_its_dependencies_before_the_source() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    copies = [line for line in lines if line.startswith("COPY ")]
    assert copies[0] == "COPY pyproject.toml constraints.txt ./", "the dependency layer comes first"
    deps = next(i for i, line in enumerate(lines) if "-r /tmp/requirements.txt" in line)
    source = lines.index("COPY smq ./smq")
    assert deps < source, "dependencies are installed before the source is copied"
    assert "pip install -c constraints.txt -r /tmp/requirements.txt" in lines[deps]
    assert "RUN pip install --no-deps ." in lines[source:]  # smq itself, the dependencies untouched
    assert "COPY README.md celeryconfig.py ./" in lines
    # Flower is one of smq's own dependencies now: the image has it without an extra.
    dependencies = " ".join(tomllib_project()["dependencies"])
    assert "flower" in dependencies


def tomllib_project() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_smq_service_builds_the_one_image() -> None:
    services = compose()["services"]
    for name in SMQ_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == "smq:local", name
    assert tomllib_project()["optional-dependencies"]["flower"] == []  # kept, empty, for old commands


def test_no_variable_must_be_set() -> None:
    """`docker compose config` and `up -d` work with an empty environment: every ${VAR} has a default
    (`${VAR:-...}`), none is required (`${VAR:?...}`). `$$` is the containers' own shell."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    references = re.findall(r"(?<!\$)\$\{([^}]*)\}", body)
    assert references, "the file reads variables"
    for reference in references:
        assert re.fullmatch(r"[A-Z_]+:-[^}]*", reference), reference
    assert ":?" not in body


def test_sigterm_reaches_every_process() -> None:
    """A command run through `sh -c` must `exec` its program, or SIGTERM stops at the shell."""
    services = compose()["services"]
    for name in SMQ_SERVICES:
        command = services[name]["command"]
        if command[0] == "sh":
            assert command[1] == "-c" and re.search(r"(^|;\s*)exec (celery|smq) ", command[2]), name
        else:
            assert command[0] in ("celery", "smq"), name


def test_health_checks_check_the_real_thing() -> None:
    services = compose()["services"]
    worker = " ".join(services["worker"]["healthcheck"]["test"])
    assert "inspect ping -d celery@$$HOSTNAME" in worker
    assert services["leader"]["healthcheck"]["test"] == ["CMD", "smq", "stats", "--json"]
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])


def test_flower_without_a_password_generates_one_instead_of_failing() -> None:
    flower = compose()["services"]["flower"]
    assert flower["environment"]["FLOWER_PASSWORD"] == "${FLOWER_PASSWORD:-}"
    script = flower["command"][2]
    assert "secrets.token_urlsafe" in script and "generated password" in script


def test_own_handlers_load_from_a_mounted_directory(tmp_path: Path) -> None:
    """As the containers do it: the directory mounted at /handlers (here a copy elsewhere), SMQ_HANDLERS
    naming the file; run from another working directory."""
    services = compose()["services"]
    for name in ("worker", "scheduler", "leader", "cli"):
        assert services[name]["volumes"] == ["${SMQ_HANDLERS_DIR:-./examples}:/handlers:ro"], name
    assert services["worker"]["environment"]["SMQ_HANDLERS"] == "${SMQ_HANDLERS:-/handlers/handlers.py}"
    assert (ROOT / "examples" / "handlers.py").is_file()  # what the default mount and path name
    mounted = tmp_path / "handlers"
    shutil.copytree(ROOT / "examples" / "own_handlers", mounted)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SMQ_")}
    env.update(
        SMQ_HANDLERS=str(mounted / "greetings.py"), SMQ_DATABASE_URL=f"sqlite:///{tmp_path / 'smq.db'}"
    )
    done = subprocess.run(
        [sys.executable, "-m", "smq.cli", "run", str(mounted / "greeting.json"), "--input", '{"name": "Ada"}']
        + ["--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == {"greeting": "Hello, Ada!"}
    env["SMQ_HANDLERS"] = str(mounted / "missing.py")
    broken = subprocess.run(
        [sys.executable, "-m", "smq.cli", "run", str(mounted / "greeting.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 2 and "missing.py" in broken.stderr


def test_the_scheduler_runs_the_dispatcher_and_proves_it_is_alive() -> None:
    scheduler = compose()["services"]["scheduler"]
    assert scheduler["command"][:2] == ["smq", "scheduler"]
    health_file = scheduler["command"][scheduler["command"].index("--health-file") + 1]
    assert health_file in " ".join(scheduler["healthcheck"]["test"])


def test_the_console_is_a_web_service_on_8080_published_on_loopback_only() -> None:
    web = compose()["services"]["web"]
    assert "healthcheck" in web
    assert web["command"][:2] == ["smq", "web"] and "8080" in web["command"]
    assert web["ports"] == ["127.0.0.1:8080:8080"]
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def _metric_names_smq_serves() -> set[str]:
    """Every sample name a scrape of smq can hold: the families of smq.observability.metrics (with the
    suffixes prometheus-client adds) and the scheduler's gauges."""
    from prometheus_client import CollectorRegistry

    from smq.observability.collectors import FAMILIES
    from smq.observability.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}
    return names | set(FAMILIES)


def test_prometheus_scrapes_every_smq_process_on_the_metrics_port() -> None:
    from smq.settings import Settings

    services = compose()["services"]
    env = services["worker"]["environment"]
    port = int(env["SMQ_METRICS_PORT"])
    assert port == Settings().metrics_port and env["SMQ_METRICS"].endswith("on}")
    prometheus = services["prometheus"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert all(str(p).startswith("127.0.0.1:") for p in prometheus["ports"]) and "healthcheck" in prometheus
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    scraped = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = sd["port"]
    # Each smq service that works is scraped on its port: every container of a scaled service.
    assert scraped == {"worker": port, "scheduler": port, "leader": port}
    assert set(scraped) <= set(services)
    for name in scraped:
        assert services[name]["networks"] == services["prometheus"]["networks"] == ["internal"]


def test_grafana_is_optional_and_its_dashboard_asks_only_for_metrics_smq_serves() -> None:
    import json
    import re

    grafana = compose()["services"]["grafana"]
    assert grafana["profiles"] == ["grafana"]
    assert all(str(p).startswith("127.0.0.1:") for p in grafana["ports"])
    for volume in grafana["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    uid = datasources["datasources"][0]["uid"]
    dashboard = json.loads((ROOT / "deploy/grafana/smq.json").read_text(encoding="utf-8"))
    targets = [target for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(targets) >= 15
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel} == {uid}
    served = _metric_names_smq_serves()
    asked = {name for target in targets for name in re.findall(r"\bsmq_[a-z_]+", target["expr"])}
    assert asked - served == set(), f"the dashboard queries metrics smq does not serve: {asked - served}"
    # Every metric smq serves is on the dashboard, save the sums and counts its quantiles do not need.
    unused = {name for name in served - asked if not name.endswith(("_sum", "_count"))}
    assert unused == set(), f"not on the dashboard: {unused}"
