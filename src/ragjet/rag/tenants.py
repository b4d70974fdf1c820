"""Tenants: the unit of isolation. Each tenant's collections live in their own folder."""

from __future__ import annotations

import re

DEFAULT_TENANT = "default"  # the only tenant when auth is off; its collections sit in settings.collections_dir
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate_tenant(tenant: str) -> str:
    """The name itself, when it is safe as a folder name; ValueError otherwise."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(f"tenant {tenant!r} must be 1-64 letters, digits, '_' or '-'")
    return tenant
