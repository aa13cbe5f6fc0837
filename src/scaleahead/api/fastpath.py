"""A pure-ASGI fast path for ``GET /v1/services/{service}/recommendation``.

KEDA's metrics-api scaler polls this endpoint for every ScaledObject, so it is the API's hot
path. Through FastAPI, dependency resolution and query validation cost more than the policy
itself. This middleware answers the plain, valid, authorised request directly with the same
body and the same checks (API key, read scope, rate limit); anything else (a parameter it does
not recognise or that fails validation, a missing or bad key, an unknown service, the rate
limit hit) passes through untouched to the FastAPI route, which owns every error response and
the OpenAPI contract. ``tests/test_api_scaling.py`` checks both paths return the same body.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from scaleahead.api.keys import ApiKey, Authenticator, RateLimiter
from scaleahead.api.recommender import Recommender, UnknownService

PATH = "/v1/services/{service}/recommendation"
_PATH_RE = re.compile(r"^/v1/services/([^/]+)/recommendation$")
_QUANTILES = frozenset({"p50", "p90", "p95"})
_MAX_REPLICAS_PARAM = 100_000


def parse_query(query_string: bytes) -> dict[str, Any] | None:
    """The recognised parameters, or None when the request needs full validation."""
    try:
        pairs = parse_qsl(query_string.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    params: dict[str, Any] = {}
    for name, value in pairs:
        if name in params:
            return None
        if name == "metric" and value or name == "quantile" and value in _QUANTILES:
            params[name] = value
        elif name == "current_replicas" and value.isdigit() and len(value) <= 6:
            replicas = int(value)
            if replicas > _MAX_REPLICAS_PARAM:
                return None
            params[name] = replicas
        else:
            return None
    return params


def _credential(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The single API key presented, or None when there is none or the case is not simple."""
    found: list[str] = []
    for name, value in headers:
        if name == b"x-api-key":
            found.append(value.decode("latin-1"))
        elif name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            found.append(token)
    return found[0] if len(found) == 1 else None


class RecommendationFastPath:
    def __init__(self, app, state) -> None:
        self.app = app
        self.state = state
        self._route = None

    def _route_for_metrics(self, scope) -> object | None:
        if self._route is None:
            router = scope.get("app").router if scope.get("app") is not None else None
            for route in getattr(router, "routes", ()):
                if getattr(route, "path", None) == PATH:
                    self._route = route
                    break
        return self._route

    def _authorised(self, scope) -> ApiKey | None | bool:
        """The key (None when auth is off) or False when the full path must decide."""
        auth: Authenticator = self.state.authenticator
        if not auth.required:
            return None
        presented = _credential(scope["headers"])
        key = auth.store.verify(presented) if presented else None
        if key is None or not key.allows("read"):
            return False
        return key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        match = _PATH_RE.match(scope["path"])
        params = parse_query(scope["query_string"]) if match else None
        key = self._authorised(scope) if params is not None else False
        if match is None or params is None or key is False:
            await self.app(scope, receive, send)
            return
        recommender: Recommender = self.state.recommender
        try:
            body = recommender.recommendation(
                match.group(1),
                params.get("metric"),
                params.get("quantile"),
                params.get("current_replicas"),
            )
        except UnknownService:
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = self.state.rate_limiter
        client = scope.get("client")
        identity = f"key:{key.id}" if key else f"ip:{client[0] if client else '-'}"
        if limiter.acquire(identity) > 0:
            await self.app(scope, receive, send)  # answers 429 with Retry-After
            return
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        scope["route"] = self._route_for_metrics(scope)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(payload)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
