"""In-memory cache of the latest published forecast batch per metric.

Requests are served from an immutable snapshot; a background thread polls the warehouse with a
cheap ``max(created_at)`` query and reloads only when it changed. A DuckDB read-only connection
held open blocks writer processes, so every refresh opens its own connection and closes it
before returning. When the warehouse is missing, locked or failing, the last good snapshot keeps
being served and the failure is reported as staleness.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from scaleahead.api.context import ServingContext, context_fingerprint, load_context
from scaleahead.domain.scaling import DEFAULT_RECURRING_DAYS
from scaleahead.warehouse import connect

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL_S = 15.0
# Short on purpose: a writer holding the lock must not stall the refresher for long, the next
# tick retries anyway.
DEFAULT_OPEN_TIMEOUT_S = 1.0

_FINGERPRINT_SQL = "SELECT metric, max(created_at) FROM serving.forecasts GROUP BY metric"

# Latest batch per metric; ties on created_at are broken by batch_id so reloads are deterministic.
_LATEST_ROWS_SQL = """
WITH latest AS (
    SELECT metric, batch_id
    FROM (
        SELECT metric, batch_id, max(created_at) AS created_at
        FROM serving.forecasts
        GROUP BY metric, batch_id
    )
    QUALIFY row_number() OVER (PARTITION BY metric ORDER BY created_at DESC, batch_id DESC) = 1
)
SELECT f.service, f.metric, f.batch_id, f.ds, f.step, f.p50, f.p90, f.p95,
       f.model_name, f.model_version, f.created_at
FROM serving.forecasts AS f
JOIN latest USING (metric, batch_id)
ORDER BY f.service, f.metric, f.step, f.ds
"""

Fingerprint = Mapping[str, datetime]


def _utc(ts: datetime) -> datetime:
    """Warehouse timestamps are naive UTC; make that explicit for API clients."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    ds: datetime
    step: int
    p50: float
    p90: float
    p95: float


@dataclass(frozen=True, slots=True)
class SeriesForecast:
    """The forecast of one (service, metric) from the latest batch of that metric."""

    service: str
    metric: str
    batch_id: str
    model_name: str
    model_version: str
    created_at: datetime
    points: tuple[ForecastPoint, ...]

    @property
    def horizon(self) -> int:
        return len(self.points)

    @property
    def first_ds(self) -> datetime:
        return self.points[0].ds

    @property
    def last_ds(self) -> datetime:
        return self.points[-1].ds


@dataclass(frozen=True, slots=True)
class ForecastSnapshot:
    """An immutable view of everything servable; swapped atomically on reload."""

    series: Mapping[tuple[str, str], SeriesForecast] = field(default_factory=dict)
    fingerprint: Fingerprint = field(default_factory=dict)
    loaded_at: datetime | None = None
    # Indexes built once per snapshot: requests must not sort or scan all series.
    _services: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _by_service: Mapping[str, tuple[SeriesForecast, ...]] = field(
        init=False, repr=False, compare=False
    )
    _batches: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_service: dict[str, list[SeriesForecast]] = {}
        batches: dict[str, str] = {}
        for (service, metric), series in sorted(self.series.items()):
            by_service.setdefault(service, []).append(series)
            batches[metric] = series.batch_id
        object.__setattr__(self, "_services", tuple(by_service))
        object.__setattr__(self, "_by_service", {k: tuple(v) for k, v in by_service.items()})
        object.__setattr__(self, "_batches", batches)

    @property
    def loaded(self) -> bool:
        return bool(self.series)

    def services(self) -> list[str]:
        return list(self._services)

    def for_service(self, service: str) -> list[SeriesForecast]:
        return list(self._by_service.get(service, ()))

    def get(self, service: str, metric: str) -> SeriesForecast | None:
        return self.series.get((service, metric))

    def batches(self) -> dict[str, str]:
        """metric -> batch_id currently served."""
        return dict(self._batches)


@dataclass(frozen=True, slots=True)
class CacheStatus:
    loaded: bool
    stale: bool
    last_refresh_at: datetime | None
    last_success_at: datetime | None
    last_refresh_error: str | None
    loaded_at: datetime | None
    batches: dict[str, str]
    stale_reason: str | None = None


def _build_snapshot(rows: list[tuple], fingerprint: Fingerprint) -> ForecastSnapshot:
    grouped: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        grouped.setdefault((row[0], row[1]), []).append(row)
    series = {key: _build_series(group) for key, group in grouped.items()}
    return ForecastSnapshot(series=series, fingerprint=dict(fingerprint), loaded_at=_now())


def _build_series(rows: list[tuple]) -> SeriesForecast:
    service, metric, batch_id = rows[0][0], rows[0][1], rows[0][2]
    model_name, model_version, created_at = rows[0][8], rows[0][9], rows[0][10]
    points = tuple(
        ForecastPoint(ds=_utc(r[3]), step=int(r[4]), p50=r[5], p90=r[6], p95=r[7]) for r in rows
    )
    return SeriesForecast(
        service=service,
        metric=metric,
        batch_id=batch_id,
        model_name=model_name,
        model_version=str(model_version),
        created_at=_utc(created_at),
        points=points,
    )


class ForecastCache:
    """Thread-safe holder of the current :class:`ForecastSnapshot`."""

    def __init__(
        self,
        warehouse_path: Path,
        open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
        stale_after_s: float | None = None,
        clock: Callable[[], datetime] = _now,
        metric: str = "request_rate",
        quantile: str = "p90",
        history_days: int = DEFAULT_RECURRING_DAYS,
    ) -> None:
        self.warehouse_path = warehouse_path
        # The context (services, actuals, alerts, quality, accuracy) is reloaded whenever its
        # fingerprint or the forecast batch changes; see scaleahead.api.context.
        self.metric = metric
        self.quantile = quantile
        self.history_days = history_days  # demand history kept for the recurring peak
        self._context = ServingContext()
        self.open_timeout_s = open_timeout_s
        # Also flag staleness when refreshes silently stop succeeding (e.g. a wedged thread).
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._snapshot = ForecastSnapshot()
        self._refresh_lock = threading.Lock()
        self._last_refresh_at: datetime | None = None
        self._last_success_at: datetime | None = None
        self._last_error: str | None = None

    @property
    def snapshot(self) -> ForecastSnapshot:
        return self._snapshot

    @property
    def context(self) -> ServingContext:
        return self._context

    def refresh(self) -> bool:
        """Poll the warehouse; return True when a new snapshot was loaded. Never raises."""
        with self._refresh_lock:
            self._last_refresh_at = self._clock()
            try:
                changed = self._refresh_once()
            except Exception as exc:  # keep serving the last good batch whatever went wrong
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning("forecast cache refresh failed: %s", self._last_error)
                return False
            self._last_error = None
            self._last_success_at = self._last_refresh_at
            return changed

    def _refresh_once(self) -> bool:
        with connect(
            read_only=True, path=self.warehouse_path, timeout_s=self.open_timeout_s
        ) as con:
            fingerprint = self._fingerprint(con)
            unchanged = self._snapshot.loaded and fingerprint == self._snapshot.fingerprint
            rows = None
            if not unchanged and fingerprint:
                rows = con.execute(_LATEST_ROWS_SQL).fetchall()
            context_fp = (context_fingerprint(con), tuple(sorted(fingerprint.items())))
            if context_fp != self._context.fingerprint:
                services = {r[0] for r in rows} if rows is not None else None
                if services is None:
                    services = set(self._snapshot.services())
                self._context = load_context(
                    con, context_fp, self.metric, self.quantile, services, self.history_days
                )
            if unchanged:
                return False
            if not fingerprint:
                if self._snapshot.loaded:
                    # An emptied table is more likely an accident than a decision to serve
                    # nothing, so the previous forecasts stay up and the state is reported.
                    raise RuntimeError("serving.forecasts is empty; keeping the previous batch")
                return False
        assert rows is not None
        self._snapshot = _build_snapshot(rows, fingerprint)
        log.info("forecast cache loaded batches %s", self._snapshot.batches())
        return True

    @staticmethod
    def _fingerprint(con: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
        return dict(con.execute(_FINGERPRINT_SQL).fetchall())

    def status(self) -> CacheStatus:
        snapshot = self._snapshot
        return CacheStatus(
            loaded=snapshot.loaded,
            stale=self._is_stale(),
            last_refresh_at=self._last_refresh_at,
            last_success_at=self._last_success_at,
            last_refresh_error=self._last_error,
            loaded_at=snapshot.loaded_at,
            batches=snapshot.batches(),
            stale_reason=self.stale_reason(),
        )

    def is_stale(self) -> bool:
        """Whether the served batch is stale (cheap: for the request hot path)."""
        return self._is_stale()

    def stale_reason(self) -> str | None:
        """Why the served batch is stale: a failed refresh or a blocking quality gate."""
        if self._last_error is not None:
            return f"warehouse refresh failed: {self._last_error}"
        if self._context.quality.failed:
            return f"quality gate blocks new forecasts: {self._context.quality.reason}"
        if self._is_stale():
            return "no successful refresh recently"
        return None

    def _is_stale(self) -> bool:
        if self._last_error is not None:
            return True
        # The gate holds back new batches, so the one served is the last good one: stale.
        if self._context.quality.failed:
            return True
        if self.stale_after_s is None or self._last_success_at is None:
            return False
        return (self._clock() - self._last_success_at).total_seconds() > self.stale_after_s


class CacheRefresher:
    """Daemon thread calling :meth:`ForecastCache.refresh` every ``interval_s`` seconds."""

    def __init__(self, cache: ForecastCache, interval_s: float = DEFAULT_REFRESH_INTERVAL_S):
        if interval_s <= 0:
            raise ValueError(f"refresh interval must be positive, got {interval_s}")
        self.cache = cache
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="forecast-cache-refresher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        # wait() doubles as an interruptible sleep so shutdown is immediate.
        while not self._stop.wait(self.interval_s):
            self.cache.refresh()
