"""`scaleahead detect` and `scaleahead benchmark nab`: the detector over a folder of CSVs, and
the NAB score of its output for the three application profiles."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scaleahead.anomaly.detector import DetectorConfig, detect
from scaleahead.anomaly.nab import PROFILES, PUBLISHED_STANDARD, Corpus, score_results

# `scaleahead detect` runs the full detector, the contextual and discord parts included (the
# streaming pipeline keeps its own lighter configuration in stage.py).
DETECT_CONFIG = DetectorConfig(context=True, discord=True)


def detect_file(source: Path, target: Path, config: DetectorConfig | None = None) -> int:
    config = config or DETECT_CONFIG
    frame = pd.read_csv(source)
    if not {"timestamp", "value"} <= set(frame.columns):
        raise ValueError(f"{source}: expected columns timestamp,value")
    detection = detect(frame["value"].to_numpy(dtype=float), frame["timestamp"], config)
    out = frame[["timestamp", "value"]].copy()
    out["anomaly_score"] = np.round(detection.score, 6)
    target.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(target, index=False)
    return len(out)


def detect_dir(
    input_dir: Path, output_dir: Path, config: DetectorConfig | None = None
) -> dict[str, float | int]:
    """Score every *.csv under input_dir into output_dir/<same relative path>."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    started = time.perf_counter()
    files = rows = 0
    for source in sorted(input_dir.rglob("*.csv")):
        if output_dir in source.parents:
            continue
        rows += detect_file(source, output_dir / source.relative_to(input_dir), config)
        files += 1
    return {"files": files, "rows": rows, "seconds": round(time.perf_counter() - started, 2)}


def score_dir(data_dir: Path, results_dir: Path) -> dict[str, dict]:
    """NAB scores of the anomaly_score columns in results_dir against data_dir's windows."""
    corpus = Corpus.load(Path(data_dir))
    weights = corpus.weights()
    scores = {}
    for rel, frame in corpus.files.items():
        result = pd.read_csv(Path(results_dir) / rel)
        if len(result) != len(frame):
            raise ValueError(f"{rel}: {len(result)} result rows for {len(frame)} data rows")
        scores[rel] = result["anomaly_score"].to_numpy(dtype=float)
    return {name: s.as_dict() for name, s in score_results(weights, scores).items()}


def run_nab(data_dir: Path, work_dir: Path) -> dict:
    """detect + score; returns the figures written to benchmarks/results/nab.json."""
    run = detect_dir(Path(data_dir), Path(work_dir))
    profiles = score_dir(Path(data_dir), Path(work_dir))
    figures: dict = {name: round(profiles[name]["score"], 2) for name in PROFILES}
    figures.update(
        {
            "detect_seconds": run["seconds"],
            "files": run["files"],
            "rows": run["rows"],
            "detector_config": json.dumps(DETECT_CONFIG.as_dict()),
        }
    )
    for name, data in profiles.items():
        figures[f"{name}_threshold"] = round(data["threshold"], 6)
        figures[f"{name}_tp_windows"] = data["tp"]
        figures[f"{name}_fp"] = data["fp"]
        figures[f"{name}_fn_windows"] = data["fn"]
    for name, value in PUBLISHED_STANDARD.items():
        figures[f"published_standard_{name}"] = value
    return figures


def table(figures: dict) -> str:
    rows = [("scaleahead (this run)", figures["standard"])]
    rows += list(PUBLISHED_STANDARD.items())
    rows.sort(key=lambda r: -r[1])
    lines = [f"{'detector':<24} {'standard':>9}"]
    lines += [f"{name:<24} {value:>9.1f}" for name, value in rows]
    lines.append("")
    lines.append(
        "scaleahead profiles: "
        + ", ".join(f"{p} {figures[p]:.1f}" for p in PROFILES)
        + f"  (detect {figures['detect_seconds']} s for {figures['files']} files)"
    )
    return "\n".join(lines)
