"""``scan(path)``: walk a view once, read each file's first bytes, parse only the ELF files.

Cost model (50k files, 230 ELF, warm page cache): listing the tree is cheap (directory
entries carry the file type, no ``stat``); opening and reading 2 KiB of each file plus
classifying it costs ~15 µs of Python per file; pyelftools costs ~3 ms per ELF file. So
this process only lists directories, and hands the files out in batches to worker
processes that read, classify and — for ELF files — parse them. No file is opened
twice except ELF files (header, then pyelftools). A tree smaller than one batch never
starts a pool. Symlinks are never followed: a view's absolute links point at its
original location.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from ..errors import NotFoundError
from ..progress import NULL_PROGRESS, Progress
from ..spack.specfile import SPEC_FILE_NAME, is_spec_file
from .analysis import analyse
from .elf import ElfInfo, read_elf
from .filetype import HEADER_SIZE, classify
from .report import ScanReport
from .spack import read_spack_metadata

_BATCH = 512  # files per worker task: ~100 tasks on the corpus, enough to balance ELF-heavy directories
_TASK = "compat-scan"
# O_NONBLOCK: should a FIFO replace a file between listing and opening, do not hang on it.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def scan(
    path: str, progress: Progress | None = None, workers: int | None = None, use_libmagic: bool = True
) -> ScanReport:
    """Scan the directory ``path`` (a view, a pulled view, any tree) for compatibility facts.

    ``workers``: processes reading and parsing files (default: the CPUs this process may
    use; 1 = everything in this process). ``use_libmagic``: ask libmagic about binary
    files no magic number recognises.
    """
    progress = progress or NULL_PROGRESS
    root = os.path.abspath(path)
    if not os.path.isdir(root):
        raise NotFoundError(f"{path}: not a directory")
    started = time.perf_counter()
    report = ScanReport(root=root)
    progress.start(_TASK, f"scan {path}", None, unit="files")
    with _FileWorkers(root, _worker_count(workers), use_libmagic, progress) as files:
        spec_files = _walk(root, report, files)
        for batch in files.results():
            batch.merge_into(report)
    report.elf_files.sort(key=lambda info: info.path)
    report.spack = read_spack_metadata(root, spec_files)
    analyse(report)
    report.seconds = time.perf_counter() - started
    progress.finish(_TASK)
    return report


def _walk(root: str, report: ScanReport, files: "_FileWorkers") -> list[str]:
    """List the tree; count directories and symlinks here, send regular files to the workers."""
    spec_files: list[str] = []
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
                report.unreadable.append(f"{entry.path[prefix:]}: {exc.strerror or exc}")
                continue
            relative = entry.path[prefix:]
            report.regular_files += 1
            if in_bin:
                report.program_names.add(entry.name)
            if entry.name == SPEC_FILE_NAME and is_spec_file(relative):
                spec_files.append(relative)
            files.add(relative)
    return spec_files


@dataclass
class _Batch:
    """What a worker learned from one batch of files (small and picklable)."""

    kinds: dict[str, int] = field(default_factory=dict)
    libmagic_files: int = 0
    interpreters: dict[str, list[str]] = field(default_factory=dict)
    elf_files: list[ElfInfo] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def merge_into(self, report: ScanReport) -> None:
        for kind, count in self.kinds.items():
            report.kinds[kind] = report.kinds.get(kind, 0) + count
        report.libmagic_files += self.libmagic_files
        for interpreter, users in self.interpreters.items():
            report.interpreters.setdefault(interpreter, []).extend(users)
        report.elf_files.extend(self.elf_files)
        report.unreadable.extend(self.unreadable)


def _process_batch(root: str, relatives: list[str], use_libmagic: bool) -> _Batch:
    batch = _Batch()
    kinds = batch.kinds
    for relative in relatives:
        path = os.path.join(root, relative)
        header = _read_header(path, relative, batch)
        if header is None:
            continue
        kind = classify(header, relative.rsplit("/", 1)[-1], use_libmagic)
        kinds[kind.kind] = kinds.get(kind.kind, 0) + 1
        if kind.via_libmagic:
            batch.libmagic_files += 1
        if kind.kind == "elf":
            batch.elf_files.append(read_elf(path, relative))
        elif kind.kind == "script" and kind.interpreter:
            batch.interpreters.setdefault(kind.interpreter, []).append(relative)
    return batch


def _read_header(path: str, relative: str, batch: _Batch) -> bytes | None:
    try:
        try:
            fd = os.open(path, _OPEN_FLAGS | getattr(os, "O_NOATIME", 0))
        except PermissionError:  # O_NOATIME is refused for files we do not own
            fd = os.open(path, _OPEN_FLAGS)
        try:
            return os.read(fd, HEADER_SIZE)
        finally:
            os.close(fd)
    except OSError as exc:
        batch.unreadable.append(f"{relative}: {exc.strerror or exc}")
        return None


def _worker_count(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _FileWorkers:
    """Collects file paths during the walk; processes them in batches, in processes when worthwhile."""

    def __init__(self, root: str, workers: int, use_libmagic: bool, progress: Progress) -> None:
        self._root = root
        self._workers = workers
        self._use_libmagic = use_libmagic
        self._progress = progress
        self._batch: list[str] = []
        self._futures: list[Future[_Batch]] = []
        self._done: list[_Batch] = []
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _FileWorkers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, relative: str) -> None:
        self._batch.append(relative)
        if len(self._batch) >= _BATCH:
            self._submit()

    def _submit(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self._workers <= 1:
            self._done.append(_process_batch(self._root, batch, self._use_libmagic))
            self._progress.advance(_TASK, len(batch))
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._workers, mp_context=_process_context())
        future = self._pool.submit(_process_batch, self._root, batch, self._use_libmagic)
        count = len(batch)
        future.add_done_callback(lambda _: self._progress.advance(_TASK, count))
        self._futures.append(future)

    def results(self) -> list[_Batch]:
        if self._pool is None:  # a small tree: the last partial batch is done here
            self._workers = 1
        self._submit()
        self._done.extend(future.result() for future in self._futures)
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
