"""``scan(path)``: walk a view once, read each file's first bytes, parse only the ELF files.

Cost model (50k files, 230 ELF, warm page cache): the walk plus one 2 KiB read per file is
about a second of Python; pyelftools costs ~3 ms per ELF file. So the walk stays in this
process and classifies from magic bytes (no libmagic for anything a magic number or the
NUL rule settles), and ELF files are parsed in worker processes, in batches, while the
walk goes on. Small views (fewer than ``_BATCH`` ELF files) never start a pool.
Symlinks are never followed: a view's absolute links point at its original location.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

from ..errors import NotFoundError
from ..progress import NULL_PROGRESS, Progress
from .analysis import analyse
from .elf import ElfInfo, read_elf
from .filetype import HEADER_SIZE, classify
from .report import ScanReport
from .spack import is_spec_file, read_spack_metadata

_BATCH = 32  # ELF files per worker task: large enough to amortise pickling
_PROGRESS_EVERY = 512  # files between progress callbacks
_TASK = "compat-scan"


def scan(path: str, progress: Progress | None = None, workers: int | None = None,
         use_libmagic: bool = True) -> ScanReport:
    """Scan the directory ``path`` (a view, a pulled view, any tree) for compatibility facts.

    ``workers``: processes for ELF parsing (default: the CPUs this process may use; 1 = none).
    ``use_libmagic``: ask libmagic about binary files no magic number recognises.
    """
    progress = progress or NULL_PROGRESS
    root = os.path.abspath(path)
    if not os.path.isdir(root):
        raise NotFoundError(f"{path}: not a directory")
    started = time.perf_counter()
    report = ScanReport(root=root)
    progress.start(_TASK, f"scan {path}", None)
    with _ElfParser(root, _worker_count(workers)) as parser:
        spec_files = _walk(root, report, parser, progress, use_libmagic)
        report.elf_files = sorted(parser.results(), key=lambda info: info.path)
    report.spack = read_spack_metadata(root, spec_files)
    analyse(report)
    report.seconds = time.perf_counter() - started
    progress.finish(_TASK)
    return report


def _walk(root: str, report: ScanReport, parser: _ElfParser, progress: Progress, use_libmagic: bool) -> list[str]:
    spec_files: list[str] = []
    pending = 0
    stack = [root]
    prefix = len(root) + 1
    while stack:
        directory = stack.pop()
        in_bin = os.path.basename(directory) == "bin"
        try:
            with os.scandir(directory) as iterator:
                entries = list(iterator)
        except OSError as exc:
            report.unreadable.append(f"{directory[prefix:] or '.'}: {exc.strerror or exc}")
            continue
        for entry in entries:
            relative = entry.path[prefix:]
            # is_dir/is_symlink/is_file answer from the directory entry's d_type: no stat call.
            try:
                if entry.is_symlink():
                    report.symlinks += 1
                    report.symlink_names.add(entry.name)
                    if in_bin:
                        report.program_names.add(entry.name)
                    continue
                if entry.is_dir(follow_symlinks=False):
                    report.directories += 1
                    stack.append(entry.path)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # devices, sockets, fifos: nothing to run
            except OSError as exc:
                report.unreadable.append(f"{relative}: {exc.strerror or exc}")
                continue
            report.regular_files += 1
            if in_bin:
                report.program_names.add(entry.name)
            _classify_file(entry.path, entry.name, relative, report, parser, use_libmagic)
            if entry.name == "spec.json" and is_spec_file(relative):
                spec_files.append(relative)
            pending += 1
            if pending >= _PROGRESS_EVERY:
                progress.advance(_TASK, pending)
                pending = 0
    progress.advance(_TASK, pending)
    return spec_files


# O_NONBLOCK: should a FIFO replace a file between listing and opening, do not hang on it.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def _classify_file(path: str, name: str, relative: str, report: ScanReport, parser: _ElfParser,
                   use_libmagic: bool) -> None:
    try:
        fd = os.open(path, _OPEN_FLAGS | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        try:  # O_NOATIME is refused for files we do not own
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            report.unreadable.append(f"{relative}: {exc.strerror or exc}")
            return
    except OSError as exc:
        report.unreadable.append(f"{relative}: {exc.strerror or exc}")
        return
    try:
        header = os.read(fd, HEADER_SIZE)
    except OSError as exc:
        report.unreadable.append(f"{relative}: {exc.strerror or exc}")
        return
    finally:
        os.close(fd)
    kind = classify(header, name, use_libmagic)
    report.kinds[kind.kind] = report.kinds.get(kind.kind, 0) + 1
    if kind.via_libmagic:
        report.libmagic_files += 1
    if kind.kind == "elf":
        parser.add(relative)
    elif kind.kind == "script" and kind.interpreter:
        report.interpreters.setdefault(kind.interpreter, []).append(relative)


def _worker_count(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _parse_batch(root: str, relatives: list[str]) -> list[ElfInfo]:
    return [read_elf(os.path.join(root, relative), relative) for relative in relatives]


class _ElfParser:
    """Collects ELF paths during the walk; parses them in batches, in processes when worthwhile."""

    def __init__(self, root: str, workers: int) -> None:
        self._root = root
        self._workers = workers
        self._batch: list[str] = []
        self._futures: list[Future[list[ElfInfo]]] = []
        self._done: list[ElfInfo] = []
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _ElfParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, relative: str) -> None:
        self._batch.append(relative)
        if len(self._batch) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self._workers <= 1:
            self._done.extend(_parse_batch(self._root, batch))
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._workers, mp_context=_process_context())
        self._futures.append(self._pool.submit(_parse_batch, self._root, batch))

    def results(self) -> list[ElfInfo]:
        if self._pool is None:  # a small view: parse the last partial batch here
            self._done.extend(_parse_batch(self._root, self._batch))
            self._batch = []
        else:
            self._flush()
        for future in self._futures:
            self._done.extend(future.result())
        self._futures = []
        return self._done


def _process_context():  # type: ignore[no-untyped-def]
    # fork is cheapest (workers inherit pyelftools already imported), but forking a process
    # that runs other threads can deadlock the child on a lock held at fork time; pull and
    # push-view run thread pools, so use forkserver whenever another thread is alive.
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
