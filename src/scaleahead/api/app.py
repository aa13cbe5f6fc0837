"""The forecast-serving HTTP API.

Routes read only from the in-memory :class:`~scaleahead.api.cache.ForecastCache`; the warehouse
is touched by the background refresher alone. Versioned routes hang off one ``/v1`` router so
that later additions (recommendations, API-key dependencies, ``/metrics``) attach to the router
or the app without changing the handlers here.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from http import HTTPStatus
from typing import Any

import anyio
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from scaleahead.api.cache import (
    DEFAULT_OPEN_TIMEOUT_S,
    CacheRefresher,
    ForecastCache,
)
from scaleahead.api.fastpath import RecommendationFastPath
from scaleahead.api.keys import ApiKey, Authenticator, KeyStore, RateLimiter
from scaleahead.api.metrics import MetricsMiddleware, build_registry, exposition
from scaleahead.api.models import (
    AlertOut,
    AlertsOut,
    ForecastOut,
    HealthOut,
    MetricForecastInfo,
    Problem,
    ReadinessOut,
    RecommendationOut,
    RefreshOut,
    ServiceOut,
    ServicesOut,
)
from scaleahead.api.recommender import Recommender, UnknownService
from scaleahead.config import Settings, get_settings
from scaleahead.domain.modes import ScalingMode

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

API_DESCRIPTION = """\
Serves the latest published demand forecasts (p50/p90/p95 per step) per service and metric.

Forecasts are read from an in-memory cache refreshed from the warehouse table
`serving.forecasts` in the background; when the warehouse cannot be read, the last good batch
keeps being served and responses carry `stale: true`. Timestamps are UTC.

**Recommendations** (`/v1/services/{service}/recommendation`) apply the scaling policy:
`max(predictive, reactive)` bounded by the service's min/max replicas, with scale-in
stabilization (predictive plans for the forecast peak or the latest actual demand, whichever is
higher, or for the window's recurring daily peak where that is more than twice as high; with
`current_replicas` given it scales in only with a tenth of a replica to spare); when the
forecast is missing, stale, failed its quality gate or is flagged by an active anomaly the
reactive (HPA rule) value is returned with `mode: reactive` and the reasons.
Every service has a **scaling mode** (`scaling_mode`): `shadow` (new services; the reactive
value is served, `mode: dry_run`, the predictive one is still computed and reported),
`predictive` (the policy above) or `reactive` (forced). The scaling guard moves services
between shadow and predictive from a replay of their own history (`scaling_evidence`); a pin in
settings (`SCALEAHEAD_SCALING_MODES_PINNED`) wins.
The same body is the KEDA `metrics-api` payload (`valueLocation: replicas` or `forecast.p90`).

**Authentication**: `Authorization: Bearer <key>` or `X-API-Key: <key>` (keys from
`scaleahead apikey create`; scopes `read` and `admin`). Required as soon as one key exists
(setting `api_auth`, default `auto`). `/healthz`, `/readyz` and the OpenAPI document are open.

**Errors** are RFC 7807 problem details (`application/problem+json`) with `type`
`urn:scaleahead:problem:<slug>`: `validation-error` (422), `unauthorized` (401),
`forbidden` (403), `unknown-service` / `unknown-metric` (404), `rate-limited` (429, with
`Retry-After`), `no-forecasts` (503).
"""


def _version() -> str:
    try:
        return importlib.metadata.version("scaleahead")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


# --- problem details -------------------------------------------------------------------------


class ProblemError(Exception):
    """Raise from a handler to answer with an RFC 7807 problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers


def _problem_type(slug: str) -> str:
    # URNs name the problem types without promising a dereferenceable documentation URL.
    return f"urn:scaleahead:problem:{slug}"


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = Problem(
        type=type_,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        **extensions,
    )
    return JSONResponse(
        jsonable_encoder(body, exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        request, exc.status, exc.title, exc.detail, exc.type, headers=exc.headers
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = str(exc.detail) if exc.detail else title
    if exc.status_code == 404 and detail == title:
        detail = f"No route matches {request.method} {request.url.path}."
    return problem_response(request, exc.status_code, title, detail, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
    detail = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in errors
    )
    return problem_response(
        request,
        422,
        "Request validation failed",
        detail,
        _problem_type("validation-error"),
        errors=errors,
    )


def _install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def _problem_only_openapi(app: FastAPI) -> None:
    """Document error responses as problem+json only (FastAPI also adds application/json)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    if PROBLEM_JSON in content:
                        content.pop("application/json", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# --- dependencies ----------------------------------------------------------------------------


async def get_cache(request: Request) -> ForecastCache:
    return request.app.state.forecast_cache


async def loaded_cache(cache: ForecastCache = Depends(get_cache)) -> ForecastCache:
    """The cache, or 503 while no forecast batch has been loaded yet."""
    if not cache.snapshot.loaded:
        status = cache.status()
        detail = "No forecast batch has been loaded from the warehouse yet."
        if status.last_refresh_error:
            detail += f" Last refresh error: {status.last_refresh_error}"
        raise ProblemError(503, "No forecasts available", detail, _problem_type("no-forecasts"))
    return cache


_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token.")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key (header KEDA can send)."
)


def require(scope: str):
    """Dependency: authenticate (when auth is required), check ``scope``, rate-limit."""

    async def check(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
        header_key: str | None = Security(_api_key_header),
    ) -> ApiKey | None:
        auth: Authenticator = request.app.state.authenticator
        key: ApiKey | None = None
        if auth.required:
            authorization = request.headers.get("authorization")
            if authorization is not None and bearer is None:
                authorization = "not-a-bearer-key"  # e.g. Basic: present but never valid
            else:
                authorization = bearer.credentials if bearer else None
            candidates = [c for c in (header_key, authorization) if c]
            presented = candidates[0] if candidates else None
            key = auth.store.verify(presented)
            # Every credential sent must be valid: a bad one beside a good one is refused.
            if key is not None and any(auth.store.verify(c) != key for c in candidates[1:]):
                key = None
            if key is None:
                raise ProblemError(
                    401,
                    "Unauthorized",
                    "A valid API key is required (Authorization: Bearer <key> or X-API-Key)."
                    if presented is None
                    else "The API key is invalid or revoked.",
                    _problem_type("unauthorized"),
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not key.allows(scope):
                raise ProblemError(
                    403,
                    "Forbidden",
                    f"This API key has scope {key.scope!r}; {scope!r} is required.",
                    _problem_type("forbidden"),
                )
        identity = (
            f"key:{key.id}" if key else f"ip:{request.client.host if request.client else '-'}"
        )
        wait = request.app.state.rate_limiter.acquire(identity)
        if wait > 0:
            raise ProblemError(
                429,
                "Too many requests",
                f"Rate limit exceeded; retry in {wait:.2f} s.",
                _problem_type("rate-limited"),
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return key

    return check


require_read = require("read")
require_admin = require("admin")


async def get_recommender(request: Request) -> Recommender:
    return request.app.state.recommender


# --- routes ----------------------------------------------------------------------------------


_AUTH_PROBLEMS = (401, 403, 429)


def _build_v1_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_read)])

    @router.get(
        "/services",
        response_model=ServicesOut,
        tags=["forecasts"],
        summary="List services",
        description="Every service in the latest forecast batches (with the forecast window "
        "per metric) and every service with actual demand or a row in marts.services, with "
        "its scaling mode.",
        responses=_problem_responses(*_AUTH_PROBLEMS, 503),
    )
    async def list_services(
        cache: ForecastCache = Depends(loaded_cache),
        recommender: Recommender = Depends(get_recommender),
    ) -> ServicesOut:
        snapshot, status = cache.snapshot, cache.status()
        services = []
        for service in recommender.services():
            mode, reason, _ = recommender.scaling_mode(service)
            services.append(
                ServiceOut(
                    service=service,
                    metrics=[
                        MetricForecastInfo.from_series(s) for s in snapshot.for_service(service)
                    ],
                    dry_run=mode is ScalingMode.SHADOW,
                    scaling_mode=mode.value,
                    scaling_mode_reason=reason.value,
                )
            )
        return ServicesOut(
            stale=status.stale, last_refresh_error=status.last_refresh_error, services=services
        )

    async def forecast(
        service: str = Path(description="Service name as listed by /v1/services."),
        metric: str = Query(settings.demand_metric, description="Forecast metric."),
        horizon: int | None = Query(
            None,
            ge=1,
            description="Return only the first N steps (1..available horizon); default all.",
        ),
        cache: ForecastCache = Depends(loaded_cache),
    ) -> ForecastOut:
        snapshot = cache.snapshot
        series = snapshot.get(service, metric)
        if series is None:
            raise _not_found(snapshot.services(), service, metric)
        if horizon is not None and horizon > series.horizon:
            raise _horizon_too_long(horizon, series.horizon)
        return ForecastOut.from_series(series, stale=cache.status().stale, horizon=horizon)

    router.add_api_route(
        "/services/{service}/forecast",
        forecast,
        methods=["GET"],
        response_model=ForecastOut,
        tags=["forecasts"],
        summary="Latest forecast of one service",
        description="Forecast points (p50/p90/p95 per 5-minute step) of the latest batch.",
        responses=_problem_responses(*_AUTH_PROBLEMS, 404, 422, 503),
        operation_id="get_service_forecast",
    )
    router.add_api_route(
        "/forecasts/{service}",
        forecast,
        methods=["GET"],
        response_model=ForecastOut,
        tags=["forecasts"],
        summary="Latest forecast of one service (alias)",
        description="Alias of /v1/services/{service}/forecast, kept for existing clients.",
        responses=_problem_responses(*_AUTH_PROBLEMS, 404, 422, 503),
        deprecated=True,
        operation_id="get_forecast",
    )

    @router.get(
        "/services/{service}/recommendation",
        response_model=RecommendationOut,
        tags=["scaling"],
        summary="Replica recommendation (also the KEDA metrics-api endpoint)",
        description="The scaling policy applied now: `replicas` is what to run. Never zero and "
        "never an error for a known service: without a usable forecast the reactive value is "
        "returned with `mode: reactive` and the reasons.",
        responses=_problem_responses(*_AUTH_PROBLEMS, 404, 422, 503),
    )
    async def recommendation(
        service: str = Path(description="Service name as listed by /v1/services."),
        metric: str = Query(settings.demand_metric, description="Forecast metric."),
        quantile: str = Query(
            settings.scaling_quantile,
            pattern="^p(50|90|95)$",
            description="Forecast quantile for the predictive rule: p50, p90 or p95.",
        ),
        current_replicas: int | None = Query(
            None,
            ge=0,
            le=100_000,
            description="Replicas running now; enables the HPA tolerance (0.1) in the "
            "reactive rule. Without it the steady-state form ceil(actual / target) is used.",
        ),
        recommender: Recommender = Depends(get_recommender),
    ) -> Response:
        try:
            body = recommender.recommendation(service, metric, quantile, current_replicas)
        except UnknownService:
            cache = recommender.cache
            if not cache.snapshot.loaded and not cache.context.known_services:
                raise ProblemError(
                    503,
                    "No data available",
                    "Neither forecasts nor service data have been loaded yet.",
                    _problem_type("no-forecasts"),
                ) from None
            raise ProblemError(
                404,
                "Unknown service",
                f"No forecasts, actuals or service record for {service!r}.",
                _problem_type("unknown-service"),
            ) from None
        # Built by hand (validated by tests against RecommendationOut): the hot path of KEDA.
        return Response(
            json.dumps(body, separators=(",", ":"), allow_nan=False).encode(),
            media_type="application/json",
        )

    @router.get(
        "/alerts",
        response_model=AlertsOut,
        tags=["scaling"],
        summary="Anomaly alerts",
        description="Alerts from serving.alerts (latest state per alert). A firing alert marks "
        "its service's forecast low-confidence, so recommendations fall back to reactive.",
        responses=_problem_responses(*_AUTH_PROBLEMS, 422),
    )
    async def alerts(
        status: str = Query(
            "firing", pattern="^(firing|resolved|all)$", description="firing, resolved or all."
        ),
        service: str | None = Query(None, description="Only this service's alerts."),
        cache: ForecastCache = Depends(get_cache),
    ) -> AlertsOut:
        selected = [
            AlertOut(**a.as_dict())
            for a in cache.context.alerts
            if (status == "all" or a.status == status) and (service is None or a.service == service)
        ]
        return AlertsOut(stale=cache.status().stale, alerts=selected)

    @router.post(
        "/admin/refresh",
        response_model=RefreshOut,
        tags=["operations"],
        summary="Reload from the warehouse now (admin scope)",
        responses=_problem_responses(*_AUTH_PROBLEMS),
        dependencies=[Depends(require_admin)],
    )
    def refresh(cache: ForecastCache = Depends(get_cache)) -> RefreshOut:
        changed = cache.refresh()
        return RefreshOut(changed=changed, last_refresh_error=cache.status().last_refresh_error)

    return router


def _not_found(services: list[str], service: str, metric: str) -> ProblemError:
    if service not in services:
        return ProblemError(
            404,
            "Unknown service",
            f"No forecasts for service {service!r}.",
            _problem_type("unknown-service"),
        )
    return ProblemError(
        404,
        "Unknown metric",
        f"No {metric!r} forecasts for service {service!r}.",
        _problem_type("unknown-metric"),
    )


def _horizon_too_long(horizon: int, available: int) -> RequestValidationError:
    # Same shape as FastAPI's own validation errors so clients parse one format.
    return RequestValidationError(
        [
            {
                "type": "less_than_equal",
                "loc": ("query", "horizon"),
                "msg": f"Input should be less than or equal to {available}",
                "input": horizon,
            }
        ]
    )


def _build_ops_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=HealthOut, summary="Liveness")
    def healthz() -> HealthOut:
        return HealthOut()

    @router.get(
        "/readyz",
        response_model=ReadinessOut,
        summary="Readiness",
        description="200 once a forecast batch is loaded, 503 before; reports staleness.",
        responses={503: {"model": ReadinessOut, "description": "No forecast batch loaded yet"}},
    )
    def readyz(cache: ForecastCache = Depends(get_cache)) -> JSONResponse:
        status = cache.status()
        body = jsonable_encoder(ReadinessOut.from_status(status))
        return JSONResponse(body, status_code=200 if status.loaded else 503)

    @router.get(
        "/metrics",
        summary="Prometheus exposition",
        description="Forecast and recommendation gauges per service and the API's own request "
        "metrics (text format 0.0.4). Needs a read key when auth is on.",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **_problem_responses(*_AUTH_PROBLEMS),
        },
        dependencies=[Depends(require_read)],
    )
    def metrics(request: Request) -> Response:
        body, content_type = exposition(request.app.state.metrics_registry)
        return Response(body, media_type=content_type)

    return router


# --- app -------------------------------------------------------------------------------------


def resolve_refresh_interval(settings: Settings, explicit: float | None = None) -> float:
    """The explicit argument, else settings (env `SCALEAHEAD_API_REFRESH_INTERVAL_S`)."""
    return explicit if explicit is not None else settings.api_refresh_interval_s


def create_app(
    settings: Settings | None = None,
    refresh_interval_s: float | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """Build the API; its lifespan loads the latest batch and runs the background refresher.

    ``clock`` (UTC-aware) replaces the wall clock of the scaling policy (tests, replays).
    """
    settings = settings or get_settings()
    interval = resolve_refresh_interval(settings, refresh_interval_s)
    cache = ForecastCache(
        settings.warehouse_path,
        open_timeout_s=DEFAULT_OPEN_TIMEOUT_S,
        stale_after_s=3 * interval + DEFAULT_OPEN_TIMEOUT_S,
        metric=settings.demand_metric,
        quantile=settings.scaling_quantile,
        history_days=settings.scaling_recurring_days,
    )
    refresher = CacheRefresher(cache, interval)
    recommender = Recommender(cache, settings, clock) if clock else Recommender(cache, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # DuckDB I/O off the event loop; a failed first load still lets the app start (503s).
        await anyio.to_thread.run_sync(cache.refresh)
        refresher.start()
        try:
            yield
        finally:
            refresher.stop()

    app = FastAPI(
        title="scaleahead forecast API",
        version=_version(),
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.forecast_cache = cache
    app.state.refresher = refresher
    app.state.recommender = recommender
    app.state.authenticator = Authenticator(KeyStore(settings.api_keys_path), settings.api_auth)
    app.state.rate_limiter = RateLimiter(settings.api_rate_limit_rps, settings.api_rate_limit_burst)
    app.state.metrics_registry = build_registry(recommender)
    _install_problem_handlers(app)
    _problem_only_openapi(app)
    app.include_router(_build_ops_router())
    app.include_router(_build_v1_router(settings))
    # Inner to the metrics middleware so fast-path requests are counted like the others.
    app.add_middleware(RecommendationFastPath, state=app.state)
    app.add_middleware(MetricsMiddleware, registry=app.state.metrics_registry)
    return app


def auth_warning(app: FastAPI) -> str | None:
    auth: Authenticator = app.state.authenticator
    if auth.required:
        return None
    if auth.mode == "off":
        return "WARNING: API authentication is off (SCALEAHEAD_API_AUTH=off)."
    return (
        "WARNING: no API key exists, so the API is open to anyone who can reach it. "
        "Create one with `scaleahead apikey create --name <consumer> --scope read` "
        "(auth turns on at once) or set SCALEAHEAD_API_AUTH=on."
    )


def serve(
    settings: Settings | None = None,
    host: str | None = None,
    port: int | None = None,
    grpc_port: int | None = None,
) -> None:
    """Run REST (uvicorn) and the KEDA external scaler (gRPC) until interrupted.

    Prints the REST URL on the first line and the gRPC address on the second.
    ``grpc_port=0`` picks a free port; a negative port disables gRPC.
    """
    from scaleahead.api.grpc_server import start_grpc_server

    settings = settings or get_settings()
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    grpc_port = settings.api_grpc_port if grpc_port is None else grpc_port
    # IPv6 literals need brackets to form a usable URL.
    url_host = f"[{host}]" if ":" in host else host
    app = create_app(settings)
    print(f"http://{url_host}:{port}", flush=True)
    grpc_server = None
    if grpc_port >= 0:
        grpc_server, bound = start_grpc_server(app, f"{url_host}:{grpc_port}")
        print(f"grpc://{url_host}:{bound} (KEDA external scaler)", flush=True)
    warning = auth_warning(app)
    if warning:
        log.warning(warning)
        print(warning, flush=True)
    try:
        # No access log: /metrics counts requests by route, and a log line per request would
        # cost more than the request itself under autoscaler polling.
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=1)
