"""Run a function in a fresh Python process: its echo lines relayed, its result or error returned.

A long process keeps every module it ever imported and the holes its heap was left with, so a
late step's peak memory sits on top of everything before it. A fresh process (multiprocessing's
`spawn`: no copy of this one's memory) starts from the imports its own work needs. The caller
sees the same thing as a call in this process: the function's return value, its echo lines, or
its exception (with the fresh process's traceback as the cause, which `--debug` shows).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from app.errors import AppError

Echo = Callable[[str], None]

# After a Ctrl-C here, how long the fresh process gets to roll back its open transaction and
# stop its helpers before it is terminated.
STOP_GRACE_S = 30.0


class RemoteTraceback(Exception):
    """The traceback of an error raised in the fresh process, kept as the re-raised error's cause."""

    def __str__(self) -> str:
        return str(self.args[0])


def in_fresh_process(function: Callable[..., Any], args: tuple[Any, ...], *, echo: Echo) -> Any:
    """`function(*args, echo=...)` in a fresh process; `function` must be importable by name,
    and its arguments and result picklable."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    # Not a daemon: the function may start processes of its own (the MLflow helper).
    process = context.Process(target=_child, args=(function, args, sender), name="headlens-stage")
    process.start()
    sender.close()  # the child holds the only sending end: EOF here once it has exited
    outcome: tuple[str, Any] | None = None
    try:
        while True:
            try:
                kind, payload = receiver.recv()
            except EOFError:
                break
            if kind == "echo":
                echo(payload)
            else:
                outcome = (kind, payload)
    except BaseException:
        _stop(process)
        raise
    finally:
        process.join()
        receiver.close()
    if outcome is None:
        raise AppError(
            f"a fresh process ({getattr(function, '__name__', function)}) ended without finishing "
            f"(exit code {process.exitcode}): rerun the same command to resume"
        )
    kind, payload = outcome
    if kind == "failed":
        error, remote = payload
        raise error from RemoteTraceback(remote)
    return payload


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    """Ctrl-C (or an error) here: the child gets a Ctrl-C of its own, then time to clean up.

    From a terminal the child has had the same Ctrl-C already (one process group): a second
    one is ignored while it is exiting."""
    if process.pid is not None and process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)
        process.join(STOP_GRACE_S)
        if process.is_alive():
            process.terminate()


def _child(function: Callable[..., Any], args: tuple[Any, ...], sender: Connection) -> None:
    from app.heap import short_lived_process

    short_lived_process()

    def echo(text: str) -> None:
        sender.send(("echo", text))

    try:
        result = function(*args, echo=echo)
    except BaseException as error:  # noqa: BLE001 - every error goes back to the caller
        sender.send(("failed", (_picklable(error), traceback.format_exc())))
    else:
        sender.send(("done", result))
    finally:
        sender.close()


def _picklable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling; else one of the same kind with its message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any failure to round-trip
        text = f"{type(error).__name__}: {error}"
        return AppError(str(error)) if isinstance(error, AppError) else RuntimeError(text)
    return error
