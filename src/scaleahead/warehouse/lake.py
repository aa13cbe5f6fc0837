"""Where the DuckLake warehouse lives and how a DuckDB session attaches it.

The warehouse is a DuckLake: a SQL catalog (SQLite file under ``warehouse/`` by default,
PostgreSQL for multi-host deployments) plus Parquet data files. Every process — ingest, dbt,
the quality gate, forecasting, the API, analysts — opens an in-memory DuckDB session and
``ATTACH``es the same catalog as ``lake``, then ``USE``s it, so ``raw.telemetry`` or
``marts.service_demand_5m`` resolve unqualified. DuckLake gives every transaction a snapshot:
readers never block writers and never see a half-committed write.

DuckDB extensions are never downloaded: ``ducklake`` and the ``sqlite``/``postgres`` scanners
are installed from the ``duckdb-extension-*`` wheels pinned in ``uv.lock`` into a project-local
extension directory (``settings.duckdb_extension_dir``), which sessions (and dbt, through
``config_options``) point ``extension_directory`` at with auto-install off.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import duckdb

from scaleahead.config import Settings, get_settings

ALIAS = "lake"
# Extension name as INSTALLed -> the wheel (module) that ships its binary.
_WHEELS = {
    "ducklake": "duckdb_extension_ducklake",
    "sqlite_scanner": "duckdb_extension_sqlite",
    "postgres_scanner": "duckdb_extension_postgres",
}
_INSTALLED: set[tuple[str, str]] = set()


class LakeConfigError(RuntimeError):
    """The lake cannot be located or its extensions cannot be installed."""


@dataclass(frozen=True)
class Lake:
    """One DuckLake warehouse: its catalog, data folder and extension directory."""

    backend: str  # 'sqlite' | 'postgres'
    catalog: str  # DuckLake metadata connection, after 'ducklake:'
    data_path: Path
    extension_dir: Path
    catalog_file: Path | None = None  # the SQLite catalog file (None for PostgreSQL)

    @property
    def extensions(self) -> tuple[str, ...]:
        scanner = "sqlite_scanner" if self.backend == "sqlite" else "postgres_scanner"
        return ("ducklake", scanner)

    @property
    def uri(self) -> str:
        return f"ducklake:{self.catalog}"

    def attach_sql(self, alias: str = ALIAS, read_only: bool = False) -> str:
        options = [f"DATA_PATH '{_quote(str(self.data_path) + os.sep)}'"]
        if read_only:
            options.append("READ_ONLY")
        return f"ATTACH '{_quote(self.uri)}' AS {alias} ({', '.join(options)})"

    def duckdb_config(self) -> dict[str, str | bool]:
        """``duckdb.connect(config=...)`` (and dbt-duckdb ``config_options``) for this lake."""
        return {
            "extension_directory": str(self.extension_dir),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": True,
        }

    def exists(self) -> bool:
        """False when the SQLite catalog was never created (PostgreSQL: assumed to exist)."""
        return self.catalog_file is None or self.catalog_file.exists()

    def describe(self) -> str:
        return str(self.catalog_file) if self.catalog_file else self.catalog


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _postgres_catalog(url: str) -> str:
    """``postgres:<libpq connection string>``; URIs are passed to libpq as they are."""
    for prefix in ("ducklake:", "postgres:", "postgresql:"):
        if url.startswith(prefix) and not url.startswith(prefix + "//"):
            url = url[len(prefix) :]
            break
    return f"postgres:{url}"


def lake_for(settings: Settings | None = None, path: Path | None = None) -> Lake:
    """The lake of ``settings`` (default: the process settings).

    ``path`` is the warehouse locator callers pass around (``settings.warehouse_path``); when it
    names another catalog than the settings' one, that SQLite catalog is used instead.
    """
    settings = settings or get_settings()
    extension_dir = settings.duckdb_extension_dir or settings.warehouse_dir / "duckdb_extensions"
    if path is not None and Path(path).resolve() != settings.warehouse_path:
        # Laid out like the default: <warehouse>/lake/catalog.sqlite, <warehouse>/lake/data/,
        # <warehouse>/duckdb_extensions/.
        catalog_file = Path(path).resolve()
        home = catalog_file.parent.parent if catalog_file.parent.name == "lake" else None
        extension_dir = (home or catalog_file.parent) / "duckdb_extensions"
        return Lake("sqlite", f"sqlite:{catalog_file}", catalog_file.parent / "data",
                    extension_dir, catalog_file)  # fmt: skip
    data = settings.lake_data_dir
    if data is not None and not data.is_absolute():
        data = (settings.home / data).resolve()
    if settings.catalog_url:
        data = data or settings.warehouse_dir / "lake" / "data"
        return Lake("postgres", _postgres_catalog(settings.catalog_url), data, extension_dir)
    catalog_file = settings.warehouse_path
    data = data or catalog_file.parent / "data"
    return Lake("sqlite", f"sqlite:{catalog_file}", data, extension_dir, catalog_file)


_WAL: set[tuple[str, int]] = set()


def ensure_wal(lake: Lake) -> None:
    """Put a SQLite catalog in WAL mode (persistent in the file), once per process.

    In SQLite's default rollback-journal mode a reader's open read transaction makes a writer's
    COMMIT fail with "database is locked"; in WAL mode readers and the writer never block
    each other, which is what lets analysts and the API read while the pipeline writes.
    """
    if lake.catalog_file is None:
        return
    key = (str(lake.catalog_file), os.getpid())
    if key in _WAL:
        return
    lake.catalog_file.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(lake.catalog_file, timeout=30)
    try:
        (mode,) = con.execute("PRAGMA journal_mode=WAL").fetchone()
    finally:
        con.close()
    if str(mode).lower() == "wal":
        _WAL.add(key)


def dbt_env(lake: Lake) -> dict[str, str]:
    """The environment dbt/profiles.yml reads to attach this lake."""
    return {
        "SCALEAHEAD_DUCKLAKE_CATALOG": lake.catalog,
        "SCALEAHEAD_DUCKLAKE_DATA_PATH": str(lake.data_path) + os.sep,
        "SCALEAHEAD_DUCKDB_EXTENSION_DIR": str(lake.extension_dir),
    }


def _wheel_binary(name: str) -> Path:
    module = _WHEELS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LakeConfigError(f"package {module} is not installed (it ships the {name} extension)")
    root = Path(next(iter(spec.submodule_search_locations)))
    short = name.removesuffix("_scanner")
    found = sorted(root.glob(f"extensions/v{duckdb.__version__}/{short}.duckdb_extension"))
    if not found:
        raise LakeConfigError(f"{module} has no extension binary for duckdb {duckdb.__version__}")
    return found[0]


def _platform_dir(extension_dir: Path) -> Path:
    con = duckdb.connect()
    try:
        (platform,) = con.execute("PRAGMA platform").fetchone()
    finally:
        con.close()
    return extension_dir / f"v{duckdb.__version__}" / platform


def install_extensions(lake: Lake) -> None:
    """Install the lake's extensions from the wheels into its extension directory, once."""
    todo = [n for n in lake.extensions if (str(lake.extension_dir), n) not in _INSTALLED]
    if not todo:
        return
    target = _platform_dir(lake.extension_dir)
    missing = [n for n in todo if not (target / f"{n}.duckdb_extension").exists()]
    if missing:
        lake.extension_dir.mkdir(parents=True, exist_ok=True)
        # Several processes may start at once: install under an exclusive file lock.
        with open(lake.extension_dir / ".install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            con = duckdb.connect(config={"extension_directory": str(lake.extension_dir)})
            try:
                for name in missing:
                    if not (target / f"{name}.duckdb_extension").exists():
                        con.execute(f"INSTALL '{_quote(str(_wheel_binary(name)))}'")
            finally:
                con.close()
    _INSTALLED.update((str(lake.extension_dir), n) for n in todo)
