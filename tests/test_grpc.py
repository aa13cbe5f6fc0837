"""KEDA external scaler over gRPC: generated code up to date, RPCs, auth via scalerMetadata."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient

from scaleahead.api.app import create_app
from scaleahead.api.externalscaler import externalscaler_pb2 as pb
from scaleahead.api.externalscaler import externalscaler_pb2_grpc as pb_grpc
from scaleahead.api.grpc_server import start_grpc_server
from scaleahead.api.keys import KeyStore
from scaleahead.config import Settings
from test_api_scaling import write_forecasts, write_marts

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src/scaleahead/api/externalscaler"


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    out = tmp_path / "src"
    (out / "scaleahead/api/externalscaler").mkdir(parents=True)
    shutil.copy(PKG / "externalscaler.proto", out / "scaleahead/api/externalscaler/")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}",
         f"--grpc_python_out={out}", "scaleahead/api/externalscaler/externalscaler.proto"],
        check=True, cwd=out,
    )  # fmt: skip
    for name in ("externalscaler_pb2.py", "externalscaler_pb2_grpc.py"):
        regenerated = (out / "scaleahead/api/externalscaler" / name).read_text()
        assert regenerated == (PKG / name).read_text(), f"{name} is stale: run `make proto`"


def test_proto_is_kedas_contract() -> None:
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    assert {m.name for m in service.methods} == {
        "IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics"
    }  # fmt: skip
    fields = {f.name: (f.number, f.type) for f in pb.MetricValue.DESCRIPTOR.fields}
    assert fields == {"metricName": (1, 9), "metricValue": (2, 3), "metricValueFloat": (3, 1)}


@pytest.fixture
def scaler(tmp_path: Path):
    # checkout pinned predictive; search and ledger have no guard decision: shadow.
    settings = Settings(
        home=tmp_path, scaling_clock="data", scaling_modes_pinned={"checkout": "predictive"}
    )
    write_forecasts(settings.warehouse_path)
    write_marts(settings.warehouse_path)
    app = create_app(settings, refresh_interval_s=3600)
    with TestClient(app):  # runs the lifespan: cache loaded
        server, port = start_grpc_server(app, "127.0.0.1:0", max_workers=4)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield pb_grpc.ExternalScalerStub(channel), settings
        finally:
            channel.close()
            server.stop(grace=None)


def ref(**meta: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="checkout", namespace="shop", scalerMetadata=meta)


def test_replicas_metric(scaler) -> None:
    stub, _ = scaler
    spec = stub.GetMetricSpec(ref(service="checkout")).metricSpecs[0]
    assert (spec.targetSize, spec.targetSizeFloat) == (1, 1.0)
    assert spec.metricName == "scaleahead-checkout-replicas"
    value = stub.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref(service="checkout"), metricName="s0-x")
    ).metricValues[0]
    assert (value.metricName, value.metricValue, value.metricValueFloat) == ("s0-x", 18, 18.0)
    assert stub.IsActive(ref(service="checkout")).result is True
    first = next(iter(stub.StreamIsActive(ref(service="checkout"), timeout=5)))
    assert first.result is True


def test_forecast_metric_and_quantile(scaler) -> None:
    stub, _ = scaler
    meta = {"service": "checkout", "value": "forecast", "quantile": "p95"}
    spec = stub.GetMetricSpec(ref(**meta)).metricSpecs[0]
    assert (spec.targetSize, spec.targetSizeFloat) == (10, 10.0)  # 20 x 0.5
    value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(**meta))).metricValues[0]
    assert (value.metricValue, value.metricValueFloat) == (210, 210.0)


def test_shadow_service_exposes_the_reactive_value(scaler) -> None:
    # search (actual 40, capacity 10, target 1.0) has no guard decision: shadow. KEDA gets the
    # reactive 4 replicas (predictive would be 8) and, as a forecast, the demand 4 replicas carry.
    stub, _ = scaler
    for value, expected in (("replicas", 4.0), ("forecast", 40.0)):
        meta = {"service": "search", "value": value}
        got = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(**meta))).metricValues[0]
        assert got.metricValueFloat == expected, value


@pytest.mark.parametrize(
    ("meta", "code"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"service": "nope"}, grpc.StatusCode.NOT_FOUND),
        ({"service": "checkout", "quantile": "p99"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"service": "checkout", "value": "cpu"}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_metadata(scaler, meta, code) -> None:
    stub, _ = scaler
    with pytest.raises(grpc.RpcError) as err:
        stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(**meta)))
    assert err.value.code() == code


def test_api_key_in_scaler_metadata(scaler) -> None:
    stub, settings = scaler
    _, key = KeyStore(settings.api_keys_path).create("keda", "read")
    import time

    time.sleep(1.1)  # the server re-reads the key file at most once a second
    with pytest.raises(grpc.RpcError) as err:
        stub.IsActive(ref(service="checkout"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.IsActive(ref(service="checkout", apiKey=key + "x"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stub.IsActive(ref(service="checkout", apiKey=key)).result is True
