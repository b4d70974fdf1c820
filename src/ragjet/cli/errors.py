"""How every command reports an error the user caused: one red line on stderr, exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from ragjet.config import ConfigError

err_console = Console(stderr=True, soft_wrap=True)  # one error, one line, however long


def user_errors() -> tuple[type[BaseException], ...]:
    """Bad names, options, paths, models or datasets, too long a prompt, overload, a deadline, a server that
    cannot be reached, a setting this CPU cannot run: not bugs."""
    import httpx

    from ragjet.hardware import CapabilityError
    from ragjet.llm.backends import BackendError
    from ragjet.llm.engine.errors import EngineOverloadedError
    from ragjet.models import ModelNotFoundError
    from ragjet.rag.deadline import DeadlineExceededError
    from ragjet.store import CollectionError

    return (ConfigError, CollectionError, ModelNotFoundError, EngineOverloadedError, DeadlineExceededError,
            BackendError, CapabilityError, httpx.HTTPError, ValueError)  # fmt: skip


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """A user error becomes one line and exit 2; anything else is a bug and keeps its traceback.

    An error of a request (a missing collection, a bad option, overload, a deadline) ends with the code REST and
    gRPC give the same error (serve/contract.py), e.g. ``[collection_not_found]``, so scripts can branch on it.
    """
    from ragjet.serve.contract import classify

    try:
        yield
    except user_errors() as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        error = classify(exc)
        code = f" [{error.kind.code}]" if error is not None else ""
        err_console.print(f"[red]error:[/] {escape(message)}{escape(code)}", highlight=False)
        raise typer.Exit(2) from None
