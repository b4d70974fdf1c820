"""Joining the Ray cluster `ragjet serve --ray` runs on, within a bounded time.

`ray.init(address=...)` retries an unreachable cluster forever (it waits for the GCS and logs every 30 s), so a
wrong address would hang the command. It runs here in a daemon thread that the caller stops waiting for after
`ray.connect_timeout_s`; the process then exits, and the thread with it.
"""

from __future__ import annotations

import signal
import sys
import threading


class ClusterUnreachableError(RuntimeError):
    """No Ray cluster answered at the address in time, or joining it failed."""


def join_cluster(address: str | None, timeout_s: float) -> None:
    """Join the cluster at `address`, or start a local Ray instance when it is None (not time-bounded: nothing
    remote is waited for). ClusterUnreachableError after `timeout_s` or on a failed join."""
    import ray

    if address is None:
        ray.init()
        return
    joined = threading.Event()
    errors: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(address=address)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
        finally:
            joined.set()

    threading.Thread(target=init, name="ray-join", daemon=True).start()
    if not joined.wait(timeout_s):
        raise ClusterUnreachableError(
            f"no Ray cluster answered at {address} within {timeout_s:g} s (ray.connect_timeout_s)"
        )
    if errors:
        raise ClusterUnreachableError(f"could not join the Ray cluster at {address}: {errors[0]}") from errors[0]
    # ray.init sets its SIGTERM handler (exit, so Serve's shutdown runs) only from the main thread.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
