"""Key store and rate limiter on their own: keys hashed at rest, token buckets per caller."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ragjet.serve.auth import AuthError, Gatekeeper, KeyStore, allowed_path
from ragjet.serve.limits import RateLimitedError, RateLimiter


def test_keys_are_stored_hashed_and_resolve_to_their_tenant(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    info, key = store.create("acme", "ci")
    assert store.tenant_of(key) == "acme" and info.tenant == "acme"
    raw = sqlite3.connect(tmp_path / "keys.db").execute("SELECT * FROM api_keys").fetchall()
    assert key not in repr(raw) and key.split("_", 2)[2] not in repr(raw)  # the secret never hits the disk
    assert store.tenant_of(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.revoke(info.id) and store.tenant_of(key) is None and not store.revoke(info.id)
    with pytest.raises(ValueError, match="tenant"):
        store.create("../etc")


def test_gatekeeper_with_and_without_auth(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    _, key = store.create("acme")
    on = Gatekeeper(store, RateLimiter(100, 100), auth_enabled=True)
    assert on.tenant_for(key, "1.2.3.4") == "acme"
    with pytest.raises(AuthError, match="required"):
        on.tenant_for(None, "1.2.3.4")
    with pytest.raises(AuthError, match="invalid"):
        on.tenant_for("rj_bad", "1.2.3.4")
    assert Gatekeeper(store, RateLimiter(100, 100), auth_enabled=False).tenant_for(None, "x") == "default"


def test_rate_limiter_allows_a_burst_then_refuses_with_a_retry_time() -> None:
    limiter = RateLimiter(rate_per_s=0.5, burst=3)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("a")
    assert 0 < refused.value.retry_after_s <= 2.0
    limiter.check("b")  # other callers have their own bucket


def test_server_side_paths_stay_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.md").write_text("# x")
    (tmp_path / "secret.md").write_text("no")
    (root / "link.md").symlink_to(tmp_path / "secret.md")
    assert allowed_path(str(root / "a" / "x.md"), [root]) == (root / "a" / "x.md").resolve()
    for escape in (root / ".." / "secret.md", root / "link.md", Path("/etc/hostname")):
        with pytest.raises(PermissionError, match="ingest"):
            allowed_path(str(escape), [root])
    with pytest.raises(PermissionError, match="empty"):
        allowed_path(str(root / "a" / "x.md"), [])
