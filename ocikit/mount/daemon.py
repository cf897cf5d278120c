"""The process that serves a mount for :func:`ocikit.mount.api.mount` (``python -m ocikit.mount.daemon``).

It reads a pickled :class:`~ocikit.mount.serve.MountConfig` on stdin, prepares the mount and
serves it in its own process, so libfuse's signal handlers and threads never touch the
caller's. Its stdout is a one-line status channel: ``ready`` once the tree is mounted and
checked, or ``error`` with the pickled exception; then stdout is closed.
"""

from __future__ import annotations

import base64
import os
import pickle
import sys


def _report(line: str) -> None:
    os.write(1, (line + "\n").encode())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the status channel is closed: the parent stops waiting
    os.close(devnull)


def _error(exc: BaseException) -> str:
    """The exception as the parent rebuilds it: the same class (so the same exit code) and message."""
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
    except Exception:  # classes whose constructor takes several fields: class and text instead
        payload = pickle.dumps((type(exc).__module__, type(exc).__qualname__, str(exc)))
    return "error " + base64.b64encode(payload).decode()


def rebuild_error(line: str) -> BaseException:
    """The exception an ``error`` status line carries."""
    import importlib

    value = pickle.loads(base64.b64decode(line.split(" ", 1)[1]))
    if isinstance(value, BaseException):
        return value
    module, name, text = value
    cls = getattr(importlib.import_module(module), name, RuntimeError)
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    return error


def main() -> int:
    from .serve import prepare, serve

    config = pickle.load(sys.stdin.buffer)
    try:
        prepared = prepare(config)
    except BaseException as exc:
        _report(_error(exc))
        return 1
    reported = False

    def ready(problem: BaseException | None) -> None:
        nonlocal reported
        reported = True
        _report("ready" if problem is None else _error(problem))

    try:
        serve(prepared, ready)
    except BaseException as exc:
        if not reported:
            _report(_error(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
