"""Where a pull's time goes: sort the samples of a ``py-spy record -t -f raw`` profile into stages.

Record one pull (``--gil`` as well to see who holds the GIL), then summarise it::

    py-spy record -r 500 -t -f raw -o zstd.raw -- .venv/bin/python -m ocikit_cli.main -q pull REF DEST
    python benchmarks/profiles/summarize.py zstd.raw 500

Each sample is charged to the first stage whose test matches its stack (imports first: a
module body that runs at import time is start-up, whatever it calls). Samples are per thread,
so on 2 cores the stage seconds add up to more than the wall time. py-spy counts a thread
blocked in a lock or queue as active, which is the "hand-off wait" line.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable

Rule = Callable[[list[str], str], bool]
STAGES: list[tuple[str, Rule]] = [
    ("start-up/imports", lambda fs, leaf: any("_find_and_load" in f for f in fs)),
    ("hand-off wait (Condition/Queue)", lambda fs, leaf: "threading.py" in leaf or "queue.py" in leaf),
    ("zstd decompress", lambda fs, leaf: "_zstd_chunks" in leaf),
    ("gzip inflate", lambda fs, leaf: "compression.py" in leaf),
    ("hash uncompressed (hash thread)", lambda fs, leaf: "_BackgroundHasher._work" in leaf),
    ("hash compressed (VerifyingReader)", lambda fs, leaf: "digest.py" in leaf),
    ("network read", lambda fs, leaf: any(m in leaf for m in ("socket.py", "urllib3", "http/client", "ssl.py"))),
    ("file create/write (system calls)", lambda fs, leaf: "writer.py" in leaf),
    ("tar parse", lambda fs, leaf: "formats/tar" in leaf),
    ("safety rules/paths", lambda fs, leaf: any(m in leaf for m in ("safe_tar.py", "rules.py", "whiteout"))),
    ("finish tree", lambda fs, leaf: any("finish_tree" in f for f in fs)),
    ("manifest/config/plan", lambda fs, leaf: any(m in f for f in fs for m in ("registry/", "plan_pull", "resolve_manifest"))),
    ("compat check", lambda fs, leaf: any("check_compatibility" in f for f in fs)),
]


def thread_of(first: str) -> str:
    """``thread (123): ocikit-decompress-layer x`` -> ``ocikit-decompress-layer``; py-spy leaves the
    main thread's name out of some samples, so unnamed and ``MainThread`` are both ``main``."""
    name = first.split(":", 1)[1].strip() if ":" in first else "main"
    return name.split(" ")[0] if name.startswith("ocikit") else "main" if name == "MainThread" else name


def summarize(path: str, rate: int) -> None:
    stages: collections.Counter[str] = collections.Counter()
    threads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in open(path):
        if not line.strip():
            continue
        stack, count = line.rstrip("\n").rsplit(" ", 1)
        frames = stack.split(";")
        stage = next((name for name, test in STAGES if test(frames, frames[-1])), "other")
        stages[stage] += int(count)
        threads[thread_of(frames[0])][stage] += int(count)
    total = sum(stages.values())
    print(f"{path}: {total} samples = {total / rate:.2f} thread-seconds at {rate} Hz")
    for stage, n in stages.most_common():
        print(f"  {n / rate:5.2f} s {100 * n / total:5.1f} %  {stage}")
    for thread, counts in threads.items():
        top = ", ".join(f"{stage} {n / rate:.2f}" for stage, n in counts.most_common(4))
        print(f"  thread {thread}: {sum(counts.values()) / rate:.2f} s ({top})")


if __name__ == "__main__":
    summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100)
