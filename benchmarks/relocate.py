"""Relocation speed next to GNU grep, on the standard corpus (a copy of the Python prefix).

Run: ``.venv/bin/python benchmarks/relocate.py [--apply]``. Prints wall times and ratios:

- scan: ``relocate_tree(dry_run=True)`` over the whole tree (reads every file, classifies and
  plans the ones that mention the prefix) vs ``grep -rlF PREFIX`` (only finds them).
- listed: ``relocate_tree(files=..., dry_run=True)`` with the list grep found, as pull does with
  the list recorded at push — the work follows the files that embed the prefix.
- ``--apply``: a real relocation on a throwaway copy vs ``grep -rlIZF | xargs -0 sed -i`` on
  another copy (text files only: the naive relocator, which also gets binaries wrong).

Every timing runs once after a warm-up read of the tree (page cache), so ratios compare CPU
work, not disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import baked_prefix, corpus_path

from ocikit.relocate import relocate_tree

NEW = "/opt/relocated"  # 14 characters: shorter than the baked prefix by more than 7


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def grep_list(root: str, old: str) -> list[str]:
    out = subprocess.run(["grep", "-rlF", old, root], capture_output=True, check=False).stdout.decode()
    return [os.path.relpath(line, root) for line in out.splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="also time a real relocation (copies the corpus twice)")
    args = parser.parse_args()
    root, old = corpus_path(), baked_prefix()
    grep_list(root, old)  # warm the page cache

    t_grep, listed = timed(lambda: grep_list(root, old))
    t_scan, report = timed(lambda: relocate_tree(root, old, NEW, dry_run=True))
    t_listed, _ = timed(lambda: relocate_tree(root, old, NEW, files=listed, dry_run=True))
    print(f"corpus {root}: {report.files_examined} entries, {len(listed)} files mention {old}")
    print(f"  kinds {report.kinds}, would change {len(report.files_changed)} files")
    print(f"scan    ocikit {t_scan:7.2f}s  grep -rlF {t_grep:7.2f}s  ratio ocikit/grep {t_scan / t_grep:5.2f}")
    print(f"listed  ocikit {t_listed:7.2f}s  vs its own full scan  ratio listed/scan {t_listed / t_scan:5.2f}")
    if args.apply:
        apply_both(root, old)


def apply_both(root: str, old: str) -> None:
    with tempfile.TemporaryDirectory(dir=os.path.dirname(root)) as work:
        ours, naive = os.path.join(work, "ours"), os.path.join(work, "naive")
        subprocess.run(["cp", "-a", root, ours], check=True)
        subprocess.run(["cp", "-a", root, naive], check=True)
        t_ours, report = timed(lambda: relocate_tree(ours, old, NEW))
        script = f"grep -rlIZF '{old}' '{naive}' | xargs -0 -r sed -i 's|{old}|{NEW}|g'"
        t_naive, _ = timed(lambda: subprocess.run(["sh", "-c", script], check=True))
        print(
            f"apply   ocikit {t_ours:7.2f}s ({len(report.files_changed)} files)  grep|sed -i {t_naive:7.2f}s "
            f"(text only)  ratio ocikit/sed {t_ours / t_naive:5.2f}"
        )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
