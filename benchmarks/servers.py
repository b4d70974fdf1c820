"""Benchmarked servers as subprocesses on localhost: started, awaited until ready, stopped gracefully."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def ragjet_env(settings: dict[str, dict[str, object]], data_dir: Path) -> dict[str, str]:
    """RAGJET_* variables that configure `ragjet serve` from {section: {field: value}}, over `data_dir` and no
    config file."""
    env = {"RAGJET_DATA_DIR": str(data_dir), "RAGJET_CONFIG": str(data_dir / "none.toml")}
    for section, fields in settings.items():
        for name, value in fields.items():
            env[f"RAGJET_{section.upper()}__{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return env


# Benchmark clients drop idle pooled connections after this long, well inside uvicorn's 5 s keep-alive: a
# connection reused just as the server closes it fails with a ReadError that is the client's, not the server's.
CLIENT_KEEPALIVE_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(
    argv: list[str], url: str, log_path: Path, env: dict[str, str] | None = None, ready_timeout_s: float = 600
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` until the block ends; ready once GET {url}/readyz answers 200. Output goes to `log_path`."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        try:
            _wait_ready(proc, url, log_path, ready_timeout_s)
            yield proc
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"server at {url} not ready within {timeout_s:.0f} s (log: {log_path})")


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGINT (uvicorn drains), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
