"""Rendering: ``--json`` documents on stdout, text for people, a progress bar on stderr."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from ocikit.progress import Progress

json_option = click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout.")


# Mappings whose keys are data (user annotations and labels, values written by others), not
# ocikit's field names: their contents are printed exactly as they are.
VERBATIM_KEYS = frozenset({"annotations", "labels"})
_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def camel_case(name: str) -> str:
    """``uploaded_bytes`` → ``uploadedBytes``; any other key (``org.opencontainers.x``, ``GLIBCXX``) unchanged."""
    if not _SNAKE.fullmatch(name):
        return name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def json_document(value: Any) -> Any:
    """THE JSON style of every ``--json`` output: camelCase keys, like the OCI documents and ready.json.

    Library results keep their Python names (``to_dict()`` may say ``start_span``); this is
    where they become ``startSpan``, so no command has to remember. Tuples become lists.
    """
    if isinstance(value, dict):
        return {
            camel_case(str(key)): (item if key in VERBATIM_KEYS else json_document(item)) for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [json_document(item) for item in value]
    return value


def dumps(document: Any, verbatim: bool = False) -> str:
    """``document`` as ``--json`` prints it (camelCase keys, sorted, indented); ``verbatim``: its
    keys are data (``ocikit label REF`` prints a reference's labels), printed as they are."""
    return json.dumps(document if verbatim else json_document(document), indent=2, sort_keys=True, default=str)


def emit(
    json_output: bool, document: Any, render_text: Callable[[Any], str] | None = None, verbatim: bool = False
) -> None:
    """Print ``document`` as JSON (through :func:`dumps`), or as text through ``render_text``
    (nothing if it returns ''). ``render_text`` sees the library's own key names."""
    if json_output or render_text is None:
        click.echo(dumps(document, verbatim))
        return
    text = render_text(document)
    if text:
        click.echo(text)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


class TerminalProgress(Progress):
    """One aggregated line on stderr, redrawn at most 10 times a second.

    Byte tasks are summed and shown with a rate; counted tasks (files, manifests) are
    shown as ``done/total unit``. Finished tasks are counted as ``[finished/started]``; tasks
    may run side by side (push-view scans for compatibility metadata while layers upload), so
    only the last line, drawn when everything has finished, has ``finished == started``.
    """

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._units: dict[str, str] = {}
        self._finished = 0
        self._label = ""
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def start(self, task: str, label: str, total: int | None = None, unit: str = "B") -> None:
        with self._lock:
            self._totals[task] = total or 0
            self._done.setdefault(task, 0)
            self._units[task] = unit
            self._label = label
        self._draw()

    def advance(self, task: str, amount: int) -> None:
        with self._lock:
            self._done[task] = self._done.get(task, 0) + amount
        self._draw()

    def finish(self, task: str, skipped: bool = False) -> None:
        with self._lock:
            self._finished += 1
            if self._totals.get(task):
                self._done[task] = max(self._done.get(task, 0), self._totals[task])
        self._draw(force=True)

    def message(self, text: str) -> None:
        with self._lock:
            self._label = text
        self._draw(force=True)

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def _line(self, now: float) -> str:
        if not self._totals:  # only a phase message so far (e.g. "scanning view"): no counts to show
            return f"\r{self._label[:80]}"
        byte_tasks = [t for t, u in self._units.items() if u == "B"]
        if byte_tasks:
            done = sum(self._done.get(t, 0) for t in byte_tasks)
            total = sum(self._totals.get(t, 0) for t in byte_tasks)
            rate = done / max(now - self._start, 1e-6)
            percent = f"{100 * done / total:5.1f}% " if total else ""
            amount = f"{percent}{human_bytes(done)}/{human_bytes(total)} {human_bytes(rate)}/s"
        else:
            unit = next(iter(self._units.values()), "")
            done = sum(self._done.values())
            total = sum(self._totals.values())
            amount = f"{done}/{total} {unit}" if total else f"{done} {unit}"
        return f"\r{amount} [{self._finished}/{len(self._totals)}] {self._label[:40]}"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            self._stream.write(self._line(now).ljust(100)[:100])
            self._stream.flush()
            self._drawn = True
