"""Production mode on one host: `scaleahead up` / `scaleahead down` (`make up` / `make down`).

Starts the platform as long-lived processes on loopback ports: Airflow 3 (api-server,
scheduler, dag-processor, triggerer; LocalExecutor) running the repo's DAGs on their schedules,
the MLflow tracking server, the forecast API (REST + gRPC + /metrics), Prometheus scraping the
API and Alertmanager. The Airflow metadata, the MLflow backend store and the DuckLake catalog
live in PostgreSQL databases (created if missing).

Every process is started in a session of its own; its pid file (pid + start time, so a reused
pid is never mistaken for it) and its log live under ``settings.platform_dir``. `down` sends
SIGTERM to each leader's process group, waits, then SIGTERMs and finally SIGKILLs whatever is
left in the session (Airflow task processes move to groups of their own, not sessions). `up`
is idempotent: components still running are kept, with the ports recorded at first start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scaleahead.airflow_runner import AirflowError, airflow_env
from scaleahead.config import Settings, get_settings
from scaleahead.demo import pick_port

log = logging.getLogger("scaleahead.platform")

# Set in every platform process's environment: a second way for `down` to find stragglers
# (one that left its session) where the environment block is still readable.
MARKER = "SCALEAHEAD_PLATFORM_RUN"
STATE_FILE = "platform.json"
SCRAPE_KEY_NAME = "platform-prometheus"
# Start order; `down` stops in reverse (Airflow first, so no task starts while others stop).
COMPONENTS = (
    "alertmanager",
    "mlflow",
    "api",
    "prometheus",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
AIRFLOW_JOBS = {
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag_processor",
    "airflow-triggerer": "triggerer",
}


class PlatformError(RuntimeError):
    """A platform component could not be started or did not become healthy."""


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    # Returns None while not healthy yet, else a short status text.
    health: Callable[[], str | None]
    url: str | None = None


@dataclass
class UpReport:
    urls: dict[str, str]
    started: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    api_ready: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "urls": self.urls,
            "started": self.started,
            "kept": self.kept,
            "api_ready": self.api_ready,
            "seconds": self.seconds,
        }


# --- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    state: str
    pgid: int
    sid: int
    start_ticks: int


def _stat(pid: int) -> _Proc | None:
    """State, process group, session and start time of a pid; None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return _Proc(fields[0], int(fields[2]), int(fields[3]), int(fields[19]))


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    stat = _stat(pid)
    return stat is not None and stat.state != "Z"


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _has_marker(pid: int, marker: str) -> bool:
    # Best effort: setproctitle (Airflow, gunicorn) overwrites the environment block.
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return f"{MARKER}={marker}".encode() in env.split(b"\0")


def _session_members(sids: set[int]) -> list[int]:
    me = os.getpid()
    found = []
    for pid in _all_pids():
        stat = _stat(pid)
        if pid != me and stat is not None and stat.state != "Z" and stat.sid in sids:
            found.append(pid)
    return found


def leftover_processes(settings: Settings | None = None) -> list[int]:
    """Live processes of this installation: in a session `up` created (task processes change
    their group, not their session), or carrying the environment marker."""
    settings = settings or get_settings()
    sids = {int(s) for s in _load_state(settings).get("sessions", {}).values()}
    marker = str(settings.platform_dir)
    me = os.getpid()
    found = set(_session_members(sids))
    found.update(p for p in _all_pids() if p != me and alive(p) and _has_marker(p, marker))
    return sorted(found)


def _reap(pid: int) -> None:
    # Only when this process is the parent (`up` called in-process, e.g. from Python).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop_session(leader: int, timeout_s: float) -> bool:
    """SIGTERM the leader's group (it stops its own children), wait; then SIGTERM and at the
    deadline SIGKILL whatever is left in its session. True if all ended without SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    termed_rest = False
    while time.monotonic() < deadline:
        _reap(leader)
        members = _session_members({leader})
        if not members:
            return True
        if not alive(leader) and not termed_rest:
            _signal(members, signal.SIGTERM)
            termed_rest = True
        time.sleep(0.2)
    _signal(_session_members({leader}), signal.SIGKILL)
    for _ in range(50):
        _reap(leader)
        if not _session_members({leader}):
            break
        time.sleep(0.1)
    return False


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.platform_dir / "pids" / f"{name}.pid"


def _running_pid(settings: Settings, name: str) -> int | None:
    """The component's pid if that very process still runs (pid and start time match)."""
    try:
        pid_text, ticks_text = _pid_file(settings, name).read_text().split()
        pid, ticks = int(pid_text), int(ticks_text)
    except (FileNotFoundError, ValueError):
        return None
    stat = _stat(pid)
    if stat is None or stat.state == "Z" or stat.start_ticks != ticks:
        return None
    return pid


def _spawn(settings: Settings, component: Component, state: dict[str, Any]) -> int:
    logs = settings.platform_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{component.name}.log").open("ab") as out:
        proc = subprocess.Popen(
            component.argv,
            env={**component.env, MARKER: str(settings.platform_dir)},
            cwd=settings.home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    path = _pid_file(settings, component.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    stat = _stat(proc.pid)
    path.write_text(f"{proc.pid} {stat.start_ticks if stat else 0}\n")
    # Recorded at once: `down` finds the session's processes even if `up` dies right after.
    state.setdefault("sessions", {})[component.name] = proc.pid
    _save_state(settings, state)
    log.info("started %s pid=%d", component.name, proc.pid)
    return proc.pid


# --- configuration -----------------------------------------------------------------------------


def _db_url(settings: Settings, database: str, driver: str = "postgresql") -> str:
    base = settings.postgres_url.rstrip("/")
    return f"{driver}://{base.split('://', 1)[1]}/{database}"


def catalog_url(settings: Settings) -> str:
    """The DuckLake catalog the platform uses: the configured one, else the lake database."""
    return settings.catalog_url or _db_url(settings, settings.lake_db)


def ensure_databases(settings: Settings) -> list[str]:
    """Create the platform's PostgreSQL databases that do not exist yet; returns those made."""
    import psycopg2

    created = []
    wanted = [settings.airflow_db, settings.mlflow_db]
    if not settings.catalog_url:
        wanted.append(settings.lake_db)
    con = psycopg2.connect(_db_url(settings, "postgres"))
    try:
        con.autocommit = True
        with con.cursor() as cur:
            for name in wanted:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    # Identifiers cannot be bound as parameters; quote them instead.
                    cur.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
                    created.append(name)
    finally:
        con.close()
    return created


def drop_databases(settings: Settings) -> None:
    """Drop the platform's databases (tests; a user drops them by hand if ever)."""
    import psycopg2

    con = psycopg2.connect(_db_url(settings, "postgres"))
    try:
        con.autocommit = True
        with con.cursor() as cur:
            for name in (settings.airflow_db, settings.mlflow_db, settings.lake_db):
                quoted = name.replace('"', '""')
                cur.execute(f'DROP DATABASE IF EXISTS "{quoted}" WITH (FORCE)')
    finally:
        con.close()


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise PlatformError(f"{names[0]} not found: run scripts/install-system-deps.sh")


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ports(settings: Settings, state: dict[str, Any]) -> dict[str, int]:
    """Ports recorded at first start while anything runs, else preferred (or free) ones."""
    if state.get("ports") and any(_running_pid(settings, n) for n in COMPONENTS):
        return {k: int(v) for k, v in state["ports"].items()}
    host = "127.0.0.1"
    chosen: dict[str, int] = {}
    for key, preferred in (
        ("airflow", settings.airflow_port),
        ("mlflow", settings.mlflow_port),
        ("api", settings.api_port),
        ("grpc", settings.api_grpc_port),
        ("prometheus", settings.prometheus_port),
        ("alertmanager", settings.alertmanager_port),
    ):
        # 0 = any free port (tests); a taken or already chosen port is replaced likewise.
        port = pick_port(host, preferred) if preferred else 0
        while port == 0 or port in chosen.values():
            port = _free_port(host)
        chosen[key] = port
    return chosen


def scrape_credentials(settings: Settings) -> Path:
    """The bearer token file Prometheus sends with its scrape of ``/metrics``: a read-scope API
    key of its own when the API requires keys (``api_auth`` on, or auto with keys issued), a
    placeholder the API ignores when it does not.

    Re-issued at every `up` (the secret is only ever stored in this 0600 file). Prometheus
    reads the file on every scrape, so after issuing the first keys, `up` again is enough.
    """
    from scaleahead.api.keys import Authenticator, KeyStore, KeyStoreError

    store = KeyStore(settings.api_keys_path)
    path = settings.platform_dir / "prometheus" / "api_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    if not Authenticator(store, settings.api_auth).required:
        path.write_text("no-key-required")
        return path
    with contextlib.suppress(KeyStoreError):  # none issued yet
        store.revoke(SCRAPE_KEY_NAME)
    _, secret = store.create(SCRAPE_KEY_NAME, "read")
    path.write_text(secret)
    return path


def _write_prometheus_config(settings: Settings, ports: dict[str, int], credentials: Path) -> Path:
    folder = settings.platform_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yml").write_text(
        "groups:\n"
        "  - name: scaleahead\n"
        "    rules:\n"
        "      - alert: ScaleaheadApiDown\n"
        '        expr: up{job="scaleahead-api"} == 0\n'
        "        for: 2m\n"
        "        labels: {severity: critical}\n"
        "        annotations: {summary: The forecast API does not answer scrapes}\n"
    )
    interval = f"{settings.prometheus_scrape_interval_s}s"
    config = folder / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\n"
        "alerting:\n"
        "  alertmanagers:\n"
        f"    - static_configs: [{{targets: ['127.0.0.1:{ports['alertmanager']}']}}]\n"
        f"rule_files: ['{folder / 'rules.yml'}']\n"
        "scrape_configs:\n"
        "  - job_name: scaleahead-api\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{ports['api']}']}}]\n"
        f"    authorization: {{credentials_file: '{credentials}'}}\n"
    )
    return config


def _write_alertmanager_config(settings: Settings) -> Path:
    folder = settings.platform_dir / "alertmanager"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "alertmanager.yml"
    if not config.exists():
        # A user adds receivers (e-mail, Slack, PagerDuty) here; kept across restarts.
        config.write_text(
            "route:\n"
            "  receiver: default\n"
            "  group_by: [alertname, service]\n"
            "receivers:\n"
            "  - name: default\n"
        )
    return config


def _secret(settings: Settings, state: dict[str, Any], key: str) -> str:
    value = state.get(key) or secrets.token_urlsafe(32)
    state[key] = value
    return value


def platform_env(
    settings: Settings, ports: dict[str, int], state: dict[str, Any]
) -> dict[str, str]:
    """The environment of every platform process (Airflow and scaleahead settings)."""
    env = airflow_env(settings)
    airflow_url = f"http://127.0.0.1:{ports['airflow']}"
    env.update(
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _db_url(
                settings, settings.airflow_db, "postgresql+psycopg2"
            ),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Tasks reach the Execution API through base_url: it must name the real port.
            "AIRFLOW__API__BASE_URL": f"{airflow_url}/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(ports["airflow"]),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
            # Shared by all Airflow components (task tokens are signed by one, checked by another).
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(settings, state, "jwt_secret"),
            "AIRFLOW__API__SECRET_KEY": _secret(settings, state, "api_secret_key"),
            # Loopback-only single-user install: no login in the UI.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # New or edited DAG files are picked up within a minute (default five).
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "SCALEAHEAD_CATALOG_URL": catalog_url(settings),
            "SCALEAHEAD_MLFLOW_SERVER_URL": f"http://127.0.0.1:{ports['mlflow']}",
            "SCALEAHEAD_ALERTMANAGER_URL": f"http://127.0.0.1:{ports['alertmanager']}",
            "SCALEAHEAD_PLATFORM_DIR": str(settings.platform_dir),
        }
    )
    env.pop("MLFLOW_ALLOW_FILE_STORE", None)
    return env


def _http_ok(url: str, predicate: Callable[[httpx.Response], bool] | None = None) -> bool:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and (predicate is None or predicate(response))


def _airflow_job_healthy(url: str, job: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            body = httpx.get(f"{url}/api/v2/monitor/health", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return None
        status = (body.get(job) or {}).get("status")
        return "healthy" if status == "healthy" else None

    return check


def components(settings: Settings, ports: dict[str, int], state: dict[str, Any]) -> list[Component]:
    env = platform_env(settings, ports, state)
    run = settings.platform_dir
    airflow = _venv_bin("airflow")
    urls = {name: f"http://127.0.0.1:{ports[name]}" for name in ports if name != "grpc"}
    am_config = _write_alertmanager_config(settings)
    prom_config = _write_prometheus_config(settings, ports, scrape_credentials(settings))
    artifacts = settings.mlflow_dir / "server-artifacts"
    mlflow_store = _db_url(settings, settings.mlflow_db, "postgresql+psycopg2")

    def ok(url: str, text: str = "ok") -> Callable[[], str | None]:
        return lambda: text if _http_ok(url) else None

    result = [
        Component(
            "alertmanager",
            [
                _binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={am_config}",
                f"--storage.path={run / 'alertmanager' / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
            env,
            ok(f"{urls['alertmanager']}/-/ready"),
            urls["alertmanager"],
        ),
        Component(
            "mlflow",
            [
                _venv_bin("mlflow"),
                "server",
                "--host=127.0.0.1",
                f"--port={ports['mlflow']}",
                "--workers=1",
                f"--backend-store-uri={mlflow_store}",
                "--serve-artifacts",
                f"--artifacts-destination={artifacts}",
            ],
            env,
            ok(f"{urls['mlflow']}/health"),
            urls["mlflow"],
        ),
        Component(
            "api",
            [
                sys.executable,
                "-m",
                "scaleahead.cli",
                "serve",
                "--host=127.0.0.1",
                f"--port={ports['api']}",
                f"--grpc-port={ports['grpc']}",
            ],
            env,
            # Live as soon as it answers; ready (a forecast batch loaded) is reported apart.
            ok(f"{urls['api']}/healthz"),
            urls["api"],
        ),
        Component(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={run / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
            env,
            ok(f"{urls['prometheus']}/-/ready"),
            urls["prometheus"],
        ),
        Component(
            "airflow-api-server",
            [airflow, "api-server", "-H", "127.0.0.1", "-p", str(ports["airflow"]), "-w", "1"],
            env,
            ok(f"{urls['airflow']}/api/v2/monitor/health"),
            urls["airflow"],
        ),
    ]
    for name, job in AIRFLOW_JOBS.items():
        command = name.removeprefix("airflow-")
        result.append(
            Component(name, [airflow, command], env, _airflow_job_healthy(urls["airflow"], job))
        )
    return result


def _load_state(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads((settings.platform_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _save_state(settings: Settings, state: dict[str, Any]) -> None:
    path = settings.platform_dir / STATE_FILE
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)  # holds the Airflow JWT secret


def _migrate_airflow(settings: Settings, env: dict[str, str]) -> None:
    log_path = settings.platform_dir / "logs" / "airflow-db-migrate.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.run(
            [_venv_bin("airflow"), "db", "migrate"],
            env={**env, MARKER: str(settings.platform_dir)},
            cwd=settings.home,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise AirflowError(f"`airflow db migrate` failed (exit {proc.returncode}); see {log_path}")


def _log_tail(settings: Settings, name: str, lines: int = 15) -> str:
    path = settings.platform_dir / "logs" / f"{name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def up(
    settings: Settings | None = None,
    timeout_s: float = 600.0,
    only: Collection[str] | None = None,
) -> UpReport:
    """Start every component (or those named in ``only``) that is not running, wait until all
    are healthy, return their URLs."""
    settings = settings or get_settings()
    started_at = time.monotonic()
    settings.ensure_dirs()
    settings.platform_dir.mkdir(parents=True, exist_ok=True)
    state = _load_state(settings)
    ports = _ports(settings, state)
    state["ports"] = ports
    created = ensure_databases(settings)
    if created:
        log.info("created databases %s", created)
    specs = [s for s in components(settings, ports, state) if only is None or s.name in only]
    unknown = set(only or ()) - set(COMPONENTS)
    if unknown:
        raise PlatformError(f"unknown components {sorted(unknown)}; known: {COMPONENTS}")
    _save_state(settings, state)

    report = UpReport(urls={_label(c.name): c.url for c in specs if c.url})
    if "api" in report.urls:
        report.urls["api-grpc"] = f"127.0.0.1:{ports['grpc']}"
    try:
        # Airflow's schema must exist before its components start; the others come up meanwhile.
        for spec in specs:
            if _running_pid(settings, spec.name):
                report.kept.append(spec.name)
            elif not spec.name.startswith("airflow-"):
                _spawn(settings, spec, state)
                report.started.append(spec.name)
        if any(s.name.startswith("airflow-") and s.name not in report.kept for s in specs):
            _migrate_airflow(settings, specs[0].env)
        for spec in specs:
            if spec.name.startswith("airflow-") and spec.name not in report.kept:
                _spawn(settings, spec, state)
                report.started.append(spec.name)
        _wait_healthy(settings, specs, started_at + timeout_s)
    except BaseException:
        down(settings)
        raise
    report.api_ready = "api" in report.urls and _http_ok(f"{report.urls['api']}/readyz")
    report.seconds = round(time.monotonic() - started_at, 1)
    state["urls"] = {**state.get("urls", {}), **report.urls}
    _save_state(settings, state)
    return report


def _label(name: str) -> str:
    return name.removesuffix("-api-server")


def _wait_healthy(settings: Settings, specs: list[Component], deadline: float) -> None:
    pending = {spec.name: spec for spec in specs}
    while pending:
        for name, spec in list(pending.items()):
            pid = _running_pid(settings, name)
            if pid is None:
                raise PlatformError(f"{name} exited during start:\n{_log_tail(settings, name)}")
            if spec.health() is not None:
                log.info("%s healthy", name)
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise PlatformError(f"not healthy in time: {', '.join(sorted(pending))}")
        time.sleep(1.0)


def down(settings: Settings | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
    """Stop every component (SIGTERM, wait, SIGKILL); safe to call when nothing runs."""
    settings = settings or get_settings()
    stopped: dict[str, str] = {}
    for name in reversed(COMPONENTS):
        path = _pid_file(settings, name)
        pid = _running_pid(settings, name)
        if pid is not None:
            clean = _stop_session(pid, timeout_s)
            stopped[name] = "stopped" if clean else "killed"
        path.unlink(missing_ok=True)
    # Whatever outlived its session leader (a task process in its own group, say).
    stragglers = leftover_processes(settings) if settings.platform_dir.exists() else []
    _signal(stragglers, signal.SIGKILL)
    for pid in stragglers:
        _reap(pid)
    if settings.platform_dir.exists():
        state = _load_state(settings)
        state["sessions"] = {}
        _save_state(settings, state)
    return {"stopped": stopped, "stragglers_killed": len(stragglers)}
