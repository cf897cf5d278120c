"""Progress reporting through callbacks (the library never prints).

Long operations accept a ``progress: Progress`` argument and call ``start`` / ``advance`` /
``finish`` on it, from several threads at once. The CLI renders a bar on a TTY and
nothing in a pipe; notebooks and CSI drivers pass their own implementation or nothing.
"""

from __future__ import annotations

import threading


class Progress:
    """No-op progress sink; subclass and override what you need. Methods must be thread-safe."""

    def start(self, task: str, label: str, total: int | None = None, unit: str = "B") -> None:
        """A unit of work (a blob, a layer, a phase) begins.

        ``total`` is in ``unit``: ``"B"`` for bytes (the default), or a noun such as
        ``"files"`` or ``"manifests"`` for counted items.
        """

    def advance(self, task: str, amount: int) -> None:
        """``amount`` more bytes/items of ``task`` are done."""

    def finish(self, task: str, skipped: bool = False) -> None:
        """``task`` is complete (``skipped``: nothing had to be done, e.g. the blob existed)."""

    def message(self, text: str) -> None:
        """A one-line status note (phase changes); quiet by default."""


NULL_PROGRESS = Progress()


class CountingProgress(Progress):
    """Records totals; used by tests and by ``--json`` summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: dict[str, tuple[str, int | None]] = {}
        self.done: dict[str, int] = {}
        self.skipped: set[str] = set()
        self.messages: list[str] = []

    def start(self, task: str, label: str, total: int | None = None, unit: str = "B") -> None:
        with self._lock:
            self.started[task] = (label, total)
            self.done.setdefault(task, 0)

    def advance(self, task: str, amount: int) -> None:
        with self._lock:
            self.done[task] = self.done.get(task, 0) + amount

    def finish(self, task: str, skipped: bool = False) -> None:
        if skipped:
            with self._lock:
                self.skipped.add(task)

    def message(self, text: str) -> None:
        with self._lock:
            self.messages.append(text)

    @property
    def total_advanced(self) -> int:
        return sum(self.done.values())
