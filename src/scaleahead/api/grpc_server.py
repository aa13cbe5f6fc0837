"""KEDA external scaler (gRPC ``externalscaler.ExternalScaler``) over the same cache as REST.

``scalerMetadata`` of the ScaledObject trigger:

- ``service`` (required): the service to scale.
- ``metric`` (default ``request_rate``): the forecast metric.
- ``quantile`` (``p50`` | ``p90`` | ``p95``, default from settings): the predictive quantile.
- ``value``: ``replicas`` (default) exposes the recommended replicas with target size 1, so
  the HPA's ``ceil(value / target)`` is exactly the recommendation (min/max, fallbacks and
  stabilization included); ``forecast`` exposes the peak forecast with the usable capacity per
  replica as target size (the HPA then does the division; forecast-only, no reactive floor).
  Both follow the service's scaling mode: in ``shadow`` and ``reactive`` the value is the
  reactive one (``forecast``: the demand the reactive replicas carry), so a service the guard
  has not promoted is scaled as the HPA would. The proto has no field for the mode: the server
  logs each service's mode when it first serves it and whenever it changes (REST and
  ``/metrics`` report it).
- ``apiKey``: the API key (KEDA fills it from a TriggerAuthentication secret), required when
  auth is on; KEDA sends no custom gRPC metadata.

``IsActive`` is true for every known service: a recommendation is never zero, so the scaler
never asks KEDA to scale a service to nothing.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from concurrent import futures
from typing import TYPE_CHECKING

import grpc

from scaleahead.api.externalscaler import externalscaler_pb2 as pb
from scaleahead.api.externalscaler import externalscaler_pb2_grpc as pb_grpc
from scaleahead.api.recommender import UnknownService
from scaleahead.domain.modes import ScalingMode

if TYPE_CHECKING:
    from fastapi import FastAPI

    from scaleahead.api.keys import Authenticator, RateLimiter
    from scaleahead.api.recommender import Recommender

log = logging.getLogger(__name__)

VALUES = ("replicas", "forecast")
STREAM_INTERVAL_S = 5.0
_NAME_RE = re.compile(r"[^a-z0-9-]+")


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    def __init__(
        self,
        recommender: Recommender,
        authenticator: Authenticator,
        rate_limiter: RateLimiter,
        stream_interval_s: float = STREAM_INTERVAL_S,
    ) -> None:
        self.recommender = recommender
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.stream_interval_s = stream_interval_s
        self._stopping = threading.Event()
        self._modes: dict[str, str] = {}  # service -> the scaling mode last served (logged)

    # --- helpers ------------------------------------------------------------------------------

    def _check(self, ref: pb.ScaledObjectRef, peer: str) -> dict[str, str]:
        meta = dict(ref.scalerMetadata)
        identity = f"grpc:{peer}"
        if self.authenticator.required:
            key = self.authenticator.store.verify(meta.get("apiKey"))
            if key is None:
                raise _Abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "scalerMetadata.apiKey is missing, invalid or revoked",
                )
            if not key.allows("read"):
                raise _Abort(grpc.StatusCode.PERMISSION_DENIED, "the key lacks scope 'read'")
            identity = f"key:{key.id}"
        wait = self.rate_limiter.acquire(identity)
        if wait > 0:
            raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"rate limited; retry in {wait:.2f} s")
        service = meta.get("service", "").strip()
        if not service:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "scalerMetadata.service is required")
        quantile = meta.get("quantile", self.recommender.settings.scaling_quantile)
        if quantile not in ("p50", "p90", "p95"):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "quantile must be p50, p90 or p95")
        value = meta.get("value", "replicas")
        if value not in VALUES:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "value must be replicas or forecast")
        return {
            "service": service,
            "metric": meta.get("metric", self.recommender.settings.demand_metric),
            "quantile": quantile,
            "value": value,
        }

    @staticmethod
    def metric_name(params: dict[str, str]) -> str:
        return _NAME_RE.sub("-", f"scaleahead-{params['service']}-{params['value']}".lower())

    def _decide(self, params: dict[str, str]):
        try:
            result = self.recommender.decide(
                params["service"], params["metric"], params["quantile"]
            )
        except UnknownService:
            raise _Abort(
                grpc.StatusCode.NOT_FOUND, f"unknown service {params['service']!r}"
            ) from None
        mode, reason, _ = result[2]["scaling_mode"]
        service = params["service"]
        if self._modes.get(service) != mode.value:
            log.info(
                "external scaler: %s in scaling mode %s (%s)", service, mode.value, reason.value
            )
            self._modes[service] = mode.value
        return result

    def _run(self, context: grpc.ServicerContext, fn):
        try:
            return fn()
        except _Abort as exc:
            context.abort(exc.code, exc.detail)

    # --- rpcs ---------------------------------------------------------------------------------

    def IsActive(self, request, context):  # noqa: N802 - names fixed by the proto
        def run():
            self._decide(self._check(request, context.peer()))
            return pb.IsActiveResponse(result=True)

        return self._run(context, run)

    def StreamIsActive(self, request, context):  # noqa: N802
        def first():
            return self._check(request, context.peer())

        params = self._run(context, first)
        while context.is_active() and not self._stopping.is_set():
            try:
                self._decide(params)
                yield pb.IsActiveResponse(result=True)
            except _Abort as exc:
                context.abort(exc.code, exc.detail)
            self._stopping.wait(self.stream_interval_s)

    def GetMetricSpec(self, request, context):  # noqa: N802
        def run():
            params = self._check(request, context.peer())
            name = self.metric_name(params)
            if params["value"] == "replicas":
                spec = pb.MetricSpec(metricName=name, targetSize=1, targetSizeFloat=1.0)
            else:
                self._decide(params)  # unknown services fail here
                usable = self.recommender.service_info(params["service"]).spec.usable_capacity
                spec = pb.MetricSpec(
                    metricName=name,
                    targetSize=max(1, round(usable)),
                    targetSizeFloat=usable,
                )
            return pb.GetMetricSpecResponse(metricSpecs=[spec])

        return self._run(context, run)

    def GetMetrics(self, request, context):  # noqa: N802
        def run():
            params = self._check(request.scaledObjectRef, context.peer())
            decision, stable, inputs = self._decide(params)
            name = request.metricName or self.metric_name(params)
            if params["value"] == "replicas":
                value = float(stable)
            else:
                peak = None
                if inputs["scaling_mode"][0] is ScalingMode.PREDICTIVE:
                    peak = self.recommender.peaks(inputs["series"], inputs["now"])
                    peak = peak[params["quantile"]]
                if peak is None:
                    # No usable forecast, or shadow / reactive mode: expose what the reactive
                    # rule needs (the demand the reactive replicas carry), never zero.
                    usable = inputs["info"].spec.usable_capacity
                    peak = decision.reactive_replicas * usable
                value = max(peak, 0.0)
            return pb.GetMetricsResponse(
                metricValues=[
                    pb.MetricValue(
                        metricName=name,
                        metricValue=math.ceil(value),
                        metricValueFloat=value,
                    )
                ]
            )

        return self._run(context, run)

    def stop(self) -> None:
        self._stopping.set()


def start_grpc_server(app: FastAPI, address: str, max_workers: int = 32) -> tuple[grpc.Server, int]:
    """Start the external scaler on ``address`` (host:port, port 0 = any); returns the port."""
    servicer = ExternalScaler(
        app.state.recommender, app.state.authenticator, app.state.rate_limiter
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_ExternalScalerServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC server to {address}")
    server.start()
    original_stop = server.stop

    def stop(grace=None):
        servicer.stop()
        return original_stop(grace)

    server.stop = stop  # type: ignore[method-assign]
    log.info("KEDA external scaler listening on %s", address)
    return server, port
