"""The process that serves a mount for :func:`ocikit.mount.api.mount` (``python -m ocikit.mount.daemon``).

It reads a length-prefixed pickled :class:`~ocikit.mount.serve.MountConfig` on stdin, prepares
the mount and serves it in its own process, so libfuse's signal handlers and threads never touch
the caller's. Its stdout is a one-line status channel: ``ready`` once the tree is mounted and
checked, or ``error`` with the pickled exception; then stdout is closed.

stdin stays open as the caller's lifeline: when it reaches end of file (the caller closed it,
or died and the kernel closed it) the daemon unmounts, so a caller killed without
``unmount()`` leaves no daemon serving. A detached mount (``detach=True``) has no lifeline.
"""

from __future__ import annotations

import base64
import os
import pickle
import signal
import struct
import sys
import threading

LENGTH = struct.Struct(">Q")


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


def send_config(pipe: object, config: object) -> None:
    """Write ``config`` the way :func:`main` reads it (``pipe`` is the daemon's stdin)."""
    payload = pickle.dumps(config)
    pipe.write(LENGTH.pack(len(payload)) + payload)  # type: ignore[attr-defined]
    pipe.flush()  # type: ignore[attr-defined]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("the caller closed the configuration pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _watch_lifeline(fd: int) -> None:
    """Unmount (SIGTERM, which libfuse turns into a clean unmount) once the caller's end closes."""

    def watch() -> None:
        while os.read(fd, 4096):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ocikit-mount-lifeline", daemon=True).start()


def main() -> int:
    from .serve import prepare, serve

    (size,) = LENGTH.unpack(_read_exactly(0, LENGTH.size))
    config = pickle.loads(_read_exactly(0, size))
    if not config.detach:
        _watch_lifeline(0)
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
