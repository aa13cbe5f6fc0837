"""API keys: hashed at rest, scoped (read | admin), checked in constant time; per-key rate limits.

A key looks like ``sa_<id>_<secret>``: ``id`` (8 hex chars) names the record, ``secret`` (32
random bytes, URL-safe base64) is never stored, only ``sha256(id ":" secret)``. Secrets are
random and long, so a fast hash is the right tool (no password stretching needed); the digest
of the presented key is compared with :func:`hmac.compare_digest`. The store is one JSON file
(``settings.api_keys_path``, mode 0600) that the CLI writes and the server re-reads when it
changes, so ``scaleahead apikey create`` / ``revoke`` take effect on a running server.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

SCOPES = ("read", "admin")
_KEY_RE = re.compile(r"^sa_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")
# How often a running server looks at the key file's mtime.
_RELOAD_CHECK_S = 1.0


class KeyStoreError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scope: str
    hash: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return self.scope == "admin" or self.scope == scope

    def public(self) -> dict[str, str | None]:
        """Everything but the hash (for `apikey list`)."""
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def _digest(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


class KeyStore:
    """The key file plus an in-memory copy that follows the file's changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._mtime: float | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._load()

    # --- file ---------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._keys, self._mtime = {}, None
            return
        if stat.st_mtime_ns == self._mtime:
            return
        data = json.loads(self.path.read_text() or "{}")
        self._keys = {k["id"]: ApiKey(**k) for k in data.get("keys", [])}
        self._mtime = stat.st_mtime_ns

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < _RELOAD_CHECK_S:
            return
        with self._lock:
            self._checked_at = now
            # A half-written or broken file: keep the keys we have.
            with contextlib.suppress(OSError, ValueError, TypeError):
                self._load()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        payload = {"keys": [asdict(k) for k in self._keys.values()]}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, self.path)
        self._mtime = self.path.stat().st_mtime_ns

    # --- admin --------------------------------------------------------------------------------

    def create(self, name: str, scope: str = "read") -> tuple[ApiKey, str]:
        """Add a key; returns the record and the plaintext key (shown once, never stored)."""
        if scope not in SCOPES:
            raise KeyStoreError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if not name.strip():
            raise KeyStoreError("name must not be empty")
        with self._lock:
            self._load()
            key_id = secrets.token_hex(4)
            while key_id in self._keys:
                key_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            record = ApiKey(
                id=key_id,
                name=name.strip(),
                scope=scope,
                hash=_digest(key_id, secret),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self._keys[key_id] = record
            self._save()
        return record, f"sa_{key_id}_{secret}"

    def revoke(self, key_id_or_name: str) -> list[ApiKey]:
        """Revoke the key with this id, or every active key with this name."""
        with self._lock:
            self._load()
            targets = [
                k for k in self._keys.values() if k.active and key_id_or_name in (k.id, k.name)
            ]
            if not targets:
                raise KeyStoreError(f"no active key with id or name {key_id_or_name!r}")
            now = datetime.now(UTC).isoformat(timespec="seconds")
            for key in targets:
                self._keys[key.id] = ApiKey(**{**asdict(key), "revoked_at": now})
            self._save()
            return [self._keys[k.id] for k in targets]

    def list(self) -> list[ApiKey]:
        with self._lock:
            self._load()
            return sorted(self._keys.values(), key=lambda k: k.created_at)

    # --- checks -------------------------------------------------------------------------------

    def has_active_keys(self) -> bool:
        self._maybe_reload()
        return any(k.active for k in self._keys.values())

    def verify(self, presented: str | None) -> ApiKey | None:
        """The active key matching ``presented``, else None (digest compared in constant time)."""
        if not presented:
            return None
        self._maybe_reload()
        match = _KEY_RE.match(presented.strip())
        if match is None:
            return None
        key_id, secret = match.groups()
        record = self._keys.get(key_id)
        # Compare against a dummy digest for unknown ids so timing does not reveal them.
        expected = record.hash if record is not None else "0" * 64
        ok = hmac.compare_digest(_digest(key_id, secret), expected)
        if not ok or record is None or not record.active:
            return None
        return record


class Authenticator:
    """Decides whether auth is required (``settings.api_auth``) and checks keys."""

    def __init__(self, store: KeyStore, mode: str = "auto") -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"api_auth must be auto, on or off; got {mode!r}")
        self.store = store
        self.mode = mode

    @property
    def required(self) -> bool:
        if self.mode == "off":
            return False
        return self.mode == "on" or self.store.has_active_keys()


class RateLimiter:
    """Token bucket per client identity: ``rate`` tokens/s, at most ``burst`` banked."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, identity: str) -> float:
        """0.0 when allowed (a token is taken), else the seconds until a token is available."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(identity)
            if bucket is None:
                if len(self._buckets) > 100_000:  # bound memory under identity churn
                    self._buckets.clear()
                bucket = self._buckets[identity] = [self.burst, now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate
