"""API keys and tenants: who is calling, and which tenant's collections they may see.

A key is shown once when it is created (`rj_<id>_<secret>`); only the SHA-256 of its secret is stored,
so a stolen keys.db does not grant access. Keys are high-entropy random tokens, so an unsalted hash is
enough (a password would need a slow, salted one). Every key belongs to one tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ragjet.rag.tenants import DEFAULT_TENANT, validate_tenant
from ragjet.serve.limits import RateLimiter

_KEY = re.compile(r"^rj_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant: str
    name: str
    created_at: float
    revoked: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def create(self, tenant: str, name: str = "") -> tuple[KeyInfo, str]:
        """A new key for `tenant`: its info and the plaintext key, which is never available again."""
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        created = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, tenant, name, secret_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, validate_tenant(tenant), name, _digest(secret), created),
            )
        return KeyInfo(key_id, tenant, name, created, False), f"rj_{key_id}_{secret}"

    def tenant_of(self, key: str) -> str | None:
        """The tenant a presented key belongs to; None for a malformed, unknown or revoked key."""
        match = _KEY.match(key.strip())
        if match is None:
            return None
        key_id, secret = match.groups()
        with self._lock:
            row = self._db.execute(
                "SELECT tenant, secret_sha256 FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[1], _digest(secret)):
            return None
        return str(row[0])

    def list(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, tenant, name, created_at, revoked_at FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [KeyInfo(r[0], r[1], r[2], r[3], r[4] is not None) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
            )
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


class AuthError(Exception):
    """No key, or one that is unknown or revoked."""


class Gatekeeper:
    """The one admission check every transport makes: who is calling (tenant), and not too often."""

    def __init__(self, keys: KeyStore, limiter: RateLimiter, auth_enabled: bool):
        self.keys, self.limiter, self.auth_enabled = keys, limiter, auth_enabled

    def tenant_for(self, key: str | None, client: str) -> str:
        """The caller's tenant; AuthError without a valid key (when auth is on), RateLimitedError when too fast."""
        if not self.auth_enabled:
            self.limiter.check(f"client:{client}")
            return DEFAULT_TENANT
        tenant = self.keys.tenant_of(key) if key else None
        if tenant is None:
            raise AuthError("invalid API key" if key else "an API key is required (Authorization: Bearer <key>)")
        self.limiter.check(f"key:{key}")
        return tenant


def bearer_key(authorization: str | None, api_key: str | None) -> str | None:
    """`Authorization: Bearer <key>` (what OpenAI clients send) or `X-API-Key: <key>`."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return api_key


def allowed_path(path: str, roots: list[Path]) -> Path:
    """`path` resolved (symlinks and '..' included) when it lies inside one of `roots`; PermissionError otherwise."""
    resolved = Path(path).expanduser().resolve()
    if not any(resolved.is_relative_to(root.expanduser().resolve()) for root in roots):
        where = ", ".join(str(r) for r in roots) or "nowhere (serve.ingest_roots is empty)"
        raise PermissionError(f"{path}: server-side ingestion may only read under {where}")
    return resolved
