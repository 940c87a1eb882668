"""docker-compose.yml and the Dockerfile say what the README promises (no Docker engine runs in CI, so
the file itself is checked: services, health checks, Redis durability, Flower kept internal)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_image_installs_smq_with_its_celery_configuration() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY pyproject.toml README.md celeryconfig.py ./" in dockerfile
    assert "pip install '.[flower]'" in dockerfile


def test_the_scheduler_runs_the_dispatcher_and_proves_it_is_alive() -> None:
    scheduler = compose()["services"]["scheduler"]
    assert scheduler["command"][:2] == ["smq", "scheduler"]
    health_file = scheduler["command"][scheduler["command"].index("--health-file") + 1]
    assert health_file in " ".join(scheduler["healthcheck"]["test"])


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
