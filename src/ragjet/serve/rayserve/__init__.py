"""ragjet as a Ray Serve application: an ingress deployment (the ordinary FastAPI app, retrieval included) in front
of generation replicas that each host the native engine, reached through an LLM backend (`remote_backend.py`) and
routed by the prompt's first source (`affinity.py`). See docs/scaling.md.

Ray is optional (`pip install 'ragjet[ray]'`): `require_ray` turns its absence into one clear message.
"""

from __future__ import annotations

RAY_MISSING = "Ray Serve is not installed: pip install 'ragjet[ray]' (ray[serve]) to serve with --ray"


def require_ray() -> None:
    """ImportError with the install line when `ray.serve` cannot be imported."""
    try:
        import ray.serve  # noqa: F401
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc
