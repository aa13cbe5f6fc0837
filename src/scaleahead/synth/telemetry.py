"""Deterministic multi-service telemetry written into the landing folder.

Every call writes a new run folder ``<landing>/<run_id>/`` (never overwriting) holding
per-day files in three formats plus a late-arrivals file and a re-delivery file per format.
The ground truth (labelled incidents, a service dimension with capacities) goes outside the
landing folder, to ``<warehouse>/labels/<run_id>/``, so ingest never picks it up; the service
dimension is also written to the service catalog (``<catalog_dir>/<run_id>-services.csv``),
which ingest loads into ``raw.service_catalog``.

The whole series is computed as ``(services, minutes)`` numpy matrices; Python loops only
run over events (bursts, incidents, gaps), never over rows.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from scaleahead.config import Settings, get_settings

log = logging.getLogger("scaleahead.synth")

# A Monday, so day 0..4 are weekdays and weekly seasonality is easy to eyeball.
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
METRICS: tuple[str, ...] = ("request_rate", "cpu_cores", "latency_ms")
FORMATS: tuple[str, ...] = ("csv", "ndjson", "parquet")
_DECIMALS = (4, 4, 2)  # per metric, so files stay small but low rates keep precision
MINUTES_PER_DAY = 1440
MALFORMED_FRACTION = 1e-4
LATE_BLOCK_MINUTES = 60
REDELIVERY_FRACTION = 2e-3
ROW_DROP_FRACTION = 2e-4

_WORDS = (
    "checkout", "payments", "search", "catalog", "auth", "cart", "inventory", "shipping",
    "pricing", "reviews", "recommend", "notify", "media", "profile", "orders", "ledger",
    "gateway", "geo", "fraud", "reports",
)  # fmt: skip
_REGIONS = ("eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1")
_TIERS = ("critical", "standard", "batch")


@dataclass(frozen=True)
class Incident:
    service: int
    metric: str
    kind: str
    start: int  # minute index, inclusive
    end: int  # minute index, exclusive
    factor: float


@dataclass
class GenerationResult:
    run_id: str
    run_dir: Path
    labels_dir: Path
    files: list[Path] = field(default_factory=list)
    rows_written: int = 0
    services: int = 0
    incidents: int = 0
    catalog_file: Path | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["catalog_file"] = str(self.catalog_file) if self.catalog_file else None
        out["labels_dir"] = str(self.labels_dir)
        out["files"] = [str(p) for p in self.files]
        return out


@dataclass(frozen=True)
class _Profiles:
    names: list[str]
    tiers: list[str]
    regions: list[str]
    base_rate: np.ndarray
    daily_amp: np.ndarray
    peak_hour: np.ndarray
    weekend_factor: np.ndarray
    growth_per_day: np.ndarray
    noise_sigma: np.ndarray
    cores_at_capacity: np.ndarray
    latency_base: np.ndarray
    target_replicas: np.ndarray


def _service_names(n: int) -> list[str]:
    return [
        _WORDS[i % len(_WORDS)] + (f"-{i // len(_WORDS)}" if i >= len(_WORDS) else "")
        for i in range(n)
    ]


def _draw_profiles(rng: np.random.Generator, n: int) -> _Profiles:
    tiers = [_TIERS[i] for i in rng.integers(0, len(_TIERS), n)]
    is_batch = np.array([t == "batch" for t in tiers])
    return _Profiles(
        names=_service_names(n),
        tiers=tiers,
        regions=[_REGIONS[i] for i in rng.integers(0, len(_REGIONS), n)],
        # Log-uniform so scales span four orders of magnitude, like a real fleet.
        base_rate=np.exp(rng.uniform(math.log(0.5), math.log(5000.0), n)),
        daily_amp=rng.uniform(0.35, 0.7, n),
        peak_hour=rng.uniform(12.0, 20.0, n),
        weekend_factor=np.where(is_batch, rng.uniform(0.9, 1.1, n), rng.uniform(0.45, 0.85, n)),
        growth_per_day=rng.uniform(-0.003, 0.02, n),
        noise_sigma=rng.uniform(0.02, 0.06, n),
        cores_at_capacity=rng.uniform(0.5, 2.0, n),
        latency_base=np.exp(rng.uniform(math.log(15.0), math.log(300.0), n)),
        target_replicas=rng.uniform(10.0, 20.0, n),
    )


def _calendar(start: datetime, minutes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour of day, weekend flag and elapsed days for each minute (all UTC)."""
    offset = start.hour * 60 + start.minute
    absolute = offset + np.arange(minutes)
    hour = (absolute % MINUTES_PER_DAY) / 60.0
    weekday = (start.weekday() + absolute // MINUTES_PER_DAY) % 7
    return hour, weekday >= 5, np.arange(minutes) / MINUTES_PER_DAY


def _baseline(p: _Profiles, start: datetime, minutes: int) -> np.ndarray:
    """Expected request rate without noise, bursts or incidents: (services, minutes)."""
    hour, weekend, day = _calendar(start, minutes)
    phase = 2 * np.pi * (hour[None, :] - p.peak_hour[:, None]) / 24.0
    amp = p.daily_amp[:, None]
    daily = 1 + amp * np.cos(phase) + 0.15 * amp * np.cos(2 * phase - 1.0)
    weekly = np.where(weekend[None, :], p.weekend_factor[:, None], 1.0)
    trend = np.exp(np.log1p(p.growth_per_day)[:, None] * day[None, :])
    return p.base_rate[:, None] * daily * weekly * trend


def _slow_wobble(rng: np.random.Generator, services: int, minutes: int) -> np.ndarray:
    """Hour-scale multiplicative drift, interpolated from hourly knots (vectorised)."""
    knots = np.arange(0, minutes + 60, 60)
    values = rng.normal(0.0, 0.06, (services, knots.size))
    grid = np.arange(minutes)
    # np.interp is 1-D; linear interpolation between hourly knots done by hand instead.
    left = grid // 60
    w = (grid % 60) / 60.0
    return np.exp(values[:, left] * (1 - w) + values[:, left + 1] * w)


def _bursts(rng: np.random.Generator, services: int, minutes: int) -> np.ndarray:
    """Short unlabelled surges (a few per service-day) that make the series bursty."""
    factor = np.ones((services, minutes))
    days = minutes / MINUTES_PER_DAY
    for s in range(services):
        for _ in range(rng.poisson(3.0 * days)):
            t0 = int(rng.integers(0, minutes))
            factor[s, t0 : t0 + int(rng.integers(2, 16))] *= rng.uniform(1.15, 1.8)
    return factor


def _draw_incidents(rng: np.random.Generator, services: int, minutes: int) -> list[Incident]:
    kinds = ("spike", "level_shift", "outage", "latency_shift")
    probs = (0.4, 0.25, 0.2, 0.15)
    days = minutes / MINUTES_PER_DAY
    out: list[Incident] = []
    for s in range(services):
        for _ in range(rng.poisson(days / 3.5)):
            kind = kinds[int(rng.choice(len(kinds), p=probs))]
            t0 = int(rng.integers(0, minutes))
            if kind == "spike":
                dur, factor, metric = int(rng.integers(5, 31)), rng.uniform(3.0, 8.0), METRICS[0]
            elif kind == "level_shift":
                dur = int(rng.integers(6 * 60, 3 * MINUTES_PER_DAY))
                factor = rng.uniform(0.5, 0.7) if rng.random() < 0.4 else rng.uniform(1.4, 2.0)
                metric = METRICS[0]
            elif kind == "outage":
                dur, factor, metric = int(rng.integers(5, 46)), 0.02, METRICS[0]
            else:  # a latency regression: labelled as a level shift of latency_ms
                dur, factor, metric = (
                    int(rng.integers(120, 24 * 60)),
                    rng.uniform(1.5, 3.0),
                    METRICS[2],
                )
                kind = "level_shift"
            out.append(Incident(s, metric, kind, t0, min(t0 + dur, minutes), float(factor)))
    return out


def _incident_factors(
    incidents: list[Incident], services: int, minutes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Multipliers on request rate and on latency implied by the incidents."""
    rate = np.ones((services, minutes))
    latency = np.ones((services, minutes))
    for inc in incidents:
        window = (inc.service, slice(inc.start, inc.end))
        if inc.metric == METRICS[2]:
            latency[window] *= inc.factor
        else:
            rate[window] *= inc.factor
            if inc.kind == "outage":
                latency[window] *= 6.0  # the few requests that get through time out
    return rate, latency


def _capacity(p: _Profiles, baseline: np.ndarray) -> dict[str, np.ndarray]:
    """Replica capacity so that the baseline peak needs ~10-20 replicas."""
    peak = np.percentile(baseline, 99, axis=1)
    trough = np.percentile(baseline, 1, axis=1)
    raw = peak / p.target_replicas
    digits = 2 - np.floor(np.log10(raw)).astype(int)
    cap = np.array([round(float(c), int(d)) for c, d in zip(raw, digits, strict=True)])
    return {
        "capacity": cap,
        "min_replicas": np.maximum(2, np.ceil(trough / cap)).astype(int),
        "max_replicas": np.ceil(peak * 2.0 / cap).astype(int),
        # What is actually running today: static, sized for peak plus headroom.
        "provisioned": np.ceil(peak * 1.2 / cap),
    }


def _metric_values(
    rng: np.random.Generator,
    p: _Profiles,
    rate: np.ndarray,
    latency_factor: np.ndarray,
    capacity: dict[str, np.ndarray],
) -> np.ndarray:
    """Values as (services, metrics, minutes): cpu follows requests, latency follows load."""
    services, minutes = rate.shape
    # Counting noise: a 0.5 req/s service sees ~30 requests a minute, so it is visibly noisy.
    observed = rng.poisson(rate * 60.0) / 60.0
    prov = capacity["provisioned"][:, None]
    cap = capacity["capacity"][:, None]
    util = observed / (prov * cap)
    cores_per_rps = p.cores_at_capacity[:, None] / cap
    cpu = 0.05 * prov + observed * cores_per_rps * rng.lognormal(0.0, 0.04, rate.shape)
    cpu = np.minimum(cpu, prov * p.cores_at_capacity[:, None] * 1.05)  # saturation
    u = np.minimum(util, 0.98)
    queueing = 1 + 0.25 * u / (1 - u) + np.maximum(util - 1.0, 0.0) * 5.0
    latency = p.latency_base[:, None] * queueing * latency_factor
    latency = latency * rng.lognormal(0.0, 0.06, rate.shape)
    values = np.stack([observed, cpu, latency], axis=1)
    for m, decimals in enumerate(_DECIMALS):
        values[:, m, :] = np.round(values[:, m, :], decimals)
    return values


def _keep_mask(rng: np.random.Generator, services: int, minutes: int) -> np.ndarray:
    """False where a sample is missing: collector gaps (all metrics) plus sporadic drops."""
    keep = rng.random((services, len(METRICS), minutes)) >= ROW_DROP_FRACTION
    days = minutes / MINUTES_PER_DAY
    for s in range(services):
        for _ in range(rng.poisson(0.7 * days)):
            t0 = int(rng.integers(0, minutes))
            keep[s, :, t0 : t0 + int(rng.integers(1, 91))] = False
    return keep


def _late_mask(rng: np.random.Generator, services: int, minutes: int) -> np.ndarray:
    """(services, minutes) blocks whose records arrive late, in a separate file."""
    late = np.zeros((services, minutes), dtype=bool)
    blocks = max(minutes // LATE_BLOCK_MINUTES, 1)
    for s in range(services):
        for _ in range(rng.poisson(0.3 * minutes / MINUTES_PER_DAY)):
            b = int(rng.integers(0, blocks)) * LATE_BLOCK_MINUTES
            late[s, b : b + LATE_BLOCK_MINUTES] = True
    return late


def _timestamp_strings(start: datetime, minutes: int) -> pl.Series:
    base = np.datetime64(start.replace(tzinfo=None), "m")
    stamps = np.datetime_as_string(base + np.arange(minutes), unit="s")
    return pl.Series("timestamp", np.char.add(stamps, "Z"))


def _frame(
    rows: np.ndarray,
    cols: dict[str, np.ndarray],
    lookups: dict[str, pl.Series],
) -> pl.DataFrame:
    s, m, t = cols["s"][rows], cols["m"][rows], cols["t"][rows]
    return pl.DataFrame(
        {
            "service": lookups["service"].gather(s),
            "metric": lookups["metric"].gather(m),
            "timestamp": lookups["timestamp"].gather(t),
            "value": cols["value"][rows],
            "labels": lookups["labels"].gather(s),
        }
    )


def _corrupt(df: pl.DataFrame, kinds: np.ndarray) -> pl.DataFrame:
    """Break a few CSV rows the way real exporters do, so quarantine has work to do."""
    kind = pl.Series("_kind", kinds)
    return df.with_columns(
        service=pl.when(kind == 1).then(pl.lit("")).otherwise(pl.col("service")),
        value=pl.when(kind == 2).then(pl.lit("n/a")).otherwise(pl.col("value").cast(pl.Utf8)),
        timestamp=pl.when(kind == 3)
        .then(pl.lit("2026-13-45T25:61:00Z"))
        .otherwise(pl.col("timestamp")),
    )


def _write(df: pl.DataFrame, path: Path) -> None:
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        df.write_csv(path)
    elif fmt == "ndjson":
        df.write_ndjson(path)
    else:
        df.write_parquet(path, compression="zstd", statistics=True)


def _next_run_id(settings: Settings, seed: int) -> tuple[str, Path]:
    """First free ``gen-s<seed>-<n>`` whose landing folder we manage to create ourselves."""
    labels_root = settings.warehouse_dir / "labels"
    n = 0
    while True:
        run_id = f"gen-s{seed}-{n:04d}"
        run_dir = settings.landing_dir / run_id
        if not (labels_root / run_id).exists():
            try:
                run_dir.mkdir(parents=True, exist_ok=False)
                return run_id, run_dir
            except FileExistsError:
                pass
        n += 1


def _iso(start: datetime, minute: int) -> str:
    return (start + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_labels(
    labels_dir: Path,
    p: _Profiles,
    capacity: dict[str, np.ndarray],
    incidents: list[Incident],
    start: datetime,
) -> None:
    labels_dir.mkdir(parents=True, exist_ok=True)
    with (labels_dir / "incidents.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["service", "metric", "kind", "start", "end"])
        for inc in sorted(incidents, key=lambda i: (i.service, i.start, i.metric)):
            w.writerow(
                [p.names[inc.service], inc.metric, inc.kind, _iso(start, inc.start),
                 _iso(start, inc.end)]
            )  # fmt: skip
    with (labels_dir / "services.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["service", "tier", "capacity_per_replica", "min_replicas", "max_replicas"])
        for i, name in enumerate(p.names):
            w.writerow(
                [name, p.tiers[i], float(capacity["capacity"][i]),
                 int(capacity["min_replicas"][i]), int(capacity["max_replicas"][i])]
            )  # fmt: skip


def _normalise_start(start: datetime | None) -> datetime:
    start = start or DEFAULT_START
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    return start.replace(second=0, microsecond=0)


def generate(
    services: int,
    days: int,
    seed: int,
    settings: Settings | None = None,
    start: datetime | None = None,
) -> GenerationResult:
    """Write ``services`` x ``days`` of 1-minute telemetry into a fresh landing run folder."""
    if services < 1 or days < 1:
        raise ValueError("services and days must be >= 1")
    settings = settings or get_settings()
    start = _normalise_start(start)
    minutes = days * MINUTES_PER_DAY
    rng = np.random.default_rng(seed)

    p = _draw_profiles(rng, services)
    baseline = _baseline(p, start, minutes)
    capacity = _capacity(p, baseline)
    noise = rng.lognormal(0.0, 1.0, baseline.shape) ** p.noise_sigma[:, None]
    incidents = _draw_incidents(rng, services, minutes)
    rate_factor, latency_factor = _incident_factors(incidents, services, minutes)
    rate = baseline * _slow_wobble(rng, services, minutes) * noise
    rate = rate * _bursts(rng, services, minutes) * rate_factor
    values = _metric_values(rng, p, rate, latency_factor, capacity)

    # Long format ordered by (minute, service, metric), the way a collector would flush.
    keep = _keep_mask(rng, services, minutes)
    t, s, m = np.nonzero(keep.transpose(2, 0, 1))
    cols = {"s": s, "m": m, "t": t, "value": values[s, m, t]}
    late = _late_mask(rng, services, minutes)[s, t]
    redelivered = rng.random(t.size) < REDELIVERY_FRACTION
    fmt_of_service = np.arange(services) % len(FORMATS)
    fmt = fmt_of_service[s]
    day = t // MINUTES_PER_DAY

    lookups = {
        "service": pl.Series(p.names),
        "metric": pl.Series(list(METRICS)),
        "timestamp": _timestamp_strings(start, minutes),
        "labels": pl.Series(
            [
                json.dumps({"region": r, "tier": tr}, sort_keys=True, separators=(",", ":"))
                for r, tr in zip(p.regions, p.tiers, strict=True)
            ]
        ),  # fmt: skip
    }
    corrupt = np.zeros(t.size, dtype=np.int8)
    csv_rows = np.flatnonzero((fmt == 0) & ~late)
    if csv_rows.size >= 3:
        n_bad = max(3, round(csv_rows.size * MALFORMED_FRACTION))
        picked = np.sort(rng.choice(csv_rows, size=min(n_bad, csv_rows.size), replace=False))
        corrupt[picked] = np.arange(picked.size) % 3 + 1

    run_id, run_dir = _next_run_id(settings, seed)
    labels_dir = settings.warehouse_dir / "labels" / run_id
    result = GenerationResult(run_id, run_dir, labels_dir, services=services)
    for f, ext in enumerate(FORMATS):
        if not (fmt_of_service == f).any():
            continue
        in_fmt = fmt == f
        parts = [(f"part-{d:04d}", in_fmt & (day == d) & ~late, True) for d in range(days)]
        # Named after the last day so they sort (and arrive) after the regular files.
        parts += [
            (f"part-{days:04d}-late", in_fmt & late, False),
            (f"part-{days:04d}-redelivery", in_fmt & redelivered, False),
        ]
        for stem, mask, corruptible in parts:
            rows = np.flatnonzero(mask)
            if rows.size == 0:
                continue
            df = _frame(rows, cols, lookups)
            if ext == "csv":
                df = _corrupt(df, corrupt[rows] if corruptible else np.zeros(rows.size, np.int8))
            path = run_dir / f"{stem}.{ext}"
            _write(df, path)
            result.files.append(path)
            result.rows_written += rows.size

    _write_labels(labels_dir, p, capacity, incidents, start)
    # The service catalog copy ingest loads into raw.service_catalog (contracts.md).
    settings.catalog_dir.mkdir(parents=True, exist_ok=True)
    catalog = settings.catalog_dir / f"{run_id}-services.csv"
    catalog.write_bytes((labels_dir / "services.csv").read_bytes())
    result.catalog_file = catalog
    result.incidents = len(incidents)
    log.info(
        "generated %s: %d services x %d days, %d rows in %d files, %d incidents",
        run_id, services, days, result.rows_written, len(result.files), len(incidents),
    )  # fmt: skip
    return result
