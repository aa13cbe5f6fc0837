"""The ingest sources file (``settings.ingest_config``, default ``ml/ingest.yaml``).

```yaml
prometheus:                      # any number of Prometheus servers / query sets
  - name: node                   # stream prefix for watermarks and batch keys
    url: http://127.0.0.1:9090
    step_s: 15                   # query_range resolution
    overlap_s: 300               # re-read this much before the high-water mark (late samples)
    initial_lookback_s: 3600     # first pull (no watermark yet) starts this far back
    timeout_s: 30
    queries:
      - name: cpu
        query: sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m]))
        service: node
        metric: cpu_cores
nab:                             # NAB-style timestamp,value CSVs under the landing folder
  - glob: "nab/*/ec2_cpu_utilization_*.csv"   # relative to the landing folder
    service: "ec2-{stem}"                      # {stem} = file name without suffix
    metric: cpu_utilization
```

A missing file means: landing folder only, no NAB mappings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from scaleahead.config import Settings
from scaleahead.ingest.sources import NabMapping


class PromQuery(BaseModel):
    name: str
    query: str
    service: str
    metric: str


class PrometheusConfig(BaseModel):
    name: str = "prometheus"
    url: str
    step_s: float = 15.0
    overlap_s: float = 300.0
    initial_lookback_s: float = 3600.0
    timeout_s: float = 30.0
    queries: list[PromQuery] = Field(default_factory=list)


class NabRule(BaseModel):
    glob: str
    service: str
    metric: str


class IngestConfig(BaseModel):
    prometheus: list[PrometheusConfig] = Field(default_factory=list)
    nab_rules: list[NabRule] = Field(default_factory=list, alias="nab")

    @property
    def nab(self) -> list[NabMapping]:
        return [NabMapping(r.glob, r.service, r.metric) for r in self.nab_rules]


def parse_ingest_config(path: Path) -> IngestConfig:
    if not path.exists():
        return IngestConfig()
    # Imported here: most runs have no sources file, and importing yaml costs more than a
    # small batch's load (~0.07 s on a fresh interpreter).
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return IngestConfig.model_validate(data)


def load_ingest_config(settings: Settings) -> IngestConfig:
    return parse_ingest_config(settings.ingest_config)
