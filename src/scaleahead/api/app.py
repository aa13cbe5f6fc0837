"""The forecast-serving HTTP API.

Routes read only from the in-memory :class:`~scaleahead.api.cache.ForecastCache`; the warehouse
is touched by the background refresher alone. Versioned routes hang off one ``/v1`` router so
that later additions (recommendations, API-key dependencies, ``/metrics``) attach to the router
or the app without changing the handlers here.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import anyio
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scaleahead.api.cache import (
    DEFAULT_OPEN_TIMEOUT_S,
    CacheRefresher,
    ForecastCache,
)
from scaleahead.api.models import (
    ForecastOut,
    HealthOut,
    MetricForecastInfo,
    Problem,
    ReadinessOut,
    ServiceOut,
    ServicesOut,
)
from scaleahead.config import Settings, get_settings

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

API_DESCRIPTION = """\
Serves the latest published demand forecasts (p50/p90/p95 per step) per service and metric.

Forecasts are read from an in-memory cache refreshed from the warehouse table
`serving.forecasts` in the background; when the warehouse cannot be read, the last good batch
keeps being served and responses carry `stale: true`. Timestamps are UTC. Errors are RFC 7807
problem details (`application/problem+json`).
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
        self, status: int, title: str, detail: str | None = None, type_: str = "about:blank"
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_


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
    return problem_response(request, exc.status, exc.title, exc.detail, exc.type)


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


def get_cache(request: Request) -> ForecastCache:
    return request.app.state.forecast_cache


def loaded_cache(cache: ForecastCache = Depends(get_cache)) -> ForecastCache:
    """The cache, or 503 while no forecast batch has been loaded yet."""
    if not cache.snapshot.loaded:
        status = cache.status()
        detail = "No forecast batch has been loaded from the warehouse yet."
        if status.last_refresh_error:
            detail += f" Last refresh error: {status.last_refresh_error}"
        raise ProblemError(503, "No forecasts available", detail, _problem_type("no-forecasts"))
    return cache


# --- routes ----------------------------------------------------------------------------------


def _build_v1_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["forecasts"])

    @router.get(
        "/services",
        response_model=ServicesOut,
        summary="List services with forecasts",
        description="Every service in the latest batches, with the forecast window per metric.",
        responses=_problem_responses(503),
    )
    def list_services(cache: ForecastCache = Depends(loaded_cache)) -> ServicesOut:
        snapshot, status = cache.snapshot, cache.status()
        services = [
            ServiceOut(
                service=service,
                metrics=[MetricForecastInfo.from_series(s) for s in snapshot.for_service(service)],
            )
            for service in snapshot.services()
        ]
        return ServicesOut(
            stale=status.stale, last_refresh_error=status.last_refresh_error, services=services
        )

    @router.get(
        "/forecasts/{service}",
        response_model=ForecastOut,
        summary="Latest forecast of one service",
        description="Forecast points of the latest batch, ordered by step.",
        responses=_problem_responses(404, 422, 503),
    )
    def get_forecast(
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

    return router


# --- app -------------------------------------------------------------------------------------


def resolve_refresh_interval(settings: Settings, explicit: float | None = None) -> float:
    """The explicit argument, else settings (env `SCALEAHEAD_API_REFRESH_INTERVAL_S`)."""
    return explicit if explicit is not None else settings.api_refresh_interval_s


def create_app(
    settings: Settings | None = None, refresh_interval_s: float | None = None
) -> FastAPI:
    """Build the API; its lifespan loads the latest batch and runs the background refresher."""
    settings = settings or get_settings()
    interval = resolve_refresh_interval(settings, refresh_interval_s)
    cache = ForecastCache(
        settings.warehouse_path,
        open_timeout_s=DEFAULT_OPEN_TIMEOUT_S,
        stale_after_s=3 * interval + DEFAULT_OPEN_TIMEOUT_S,
    )
    refresher = CacheRefresher(cache, interval)

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
    _install_problem_handlers(app)
    _problem_only_openapi(app)
    app.include_router(_build_ops_router())
    app.include_router(_build_v1_router(settings))
    return app


def serve(
    settings: Settings | None = None, host: str | None = None, port: int | None = None
) -> None:
    """Run the API with uvicorn until interrupted."""
    settings = settings or get_settings()
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    # IPv6 literals need brackets to form a usable URL.
    url_host = f"[{host}]" if ":" in host else host
    print(f"http://{url_host}:{port}", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
