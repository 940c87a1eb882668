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


def test_the_console_is_a_web_service_on_8080_published_on_loopback_only() -> None:
    web = compose()["services"]["web"]
    assert "healthcheck" in web
    assert web["command"][:2] == ["smq", "web"] and "8080" in web["command"]
    assert web["ports"] == ["127.0.0.1:8080:8080"]
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
