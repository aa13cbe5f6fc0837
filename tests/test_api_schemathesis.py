"""Property-based contract test: schemathesis drives every operation of the served OpenAPI
document against the ASGI app (loaded cache, marts, an alert) and validates each response
(status documented, body matches the schema, no 5xx, and requests without the key are
refused since the document declares the security schemes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from scaleahead.api.app import create_app
from scaleahead.api.keys import KeyStore
from scaleahead.config import Settings
from test_api_scaling import add_alert, write_forecasts, write_marts


@pytest.fixture
def api_schema(tmp_path: Path):
    cfg = Settings(
        home=tmp_path,
        scaling_clock="data",
        scaling_dry_run_services=["ledger"],
        scaling_modes_pinned={"*": "predictive", "search": "reactive"},
        api_rate_limit_rps=1e6,
        api_rate_limit_burst=1_000_000,
    )
    write_forecasts(cfg.warehouse_path)
    write_marts(cfg.warehouse_path)
    add_alert(cfg.warehouse_path, "search")
    _, key = KeyStore(cfg.api_keys_path).create("schemathesis", "admin")  # auth on
    app = create_app(cfg, refresh_interval_s=3600)
    with TestClient(app):  # lifespan: the cache is loaded before schemathesis calls the app
        yield schemathesis.openapi.from_asgi("/openapi.json", app), key


def test_api_conforms_to_contract(api_schema) -> None:
    api_schema, key = api_schema
    # Plain hypothesis over each operation's strategy (schemathesis' pytest plugin does not
    # support this pytest version's node API).
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate(headers={"X-API-Key": key})

        check()
