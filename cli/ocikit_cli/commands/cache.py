"""ocikit cache ls|gc"""

from __future__ import annotations

import time

import click

import ocikit
from ocikit.cachedirs import node_cache_dir

from ..output import emit, human_bytes, json_option, table
from ..params import cache_dir_option, parse_duration, parse_size

cache_option = cache_dir_option(node_cache_dir, "$OCIKIT_CACHE_DIR/node", "The node cache directory.", old=("--cache",))


@click.group("cache")
def cache_cmd() -> None:
    """Inspect and trim a node cache (blobs and extracted trees by digest)."""


@cache_cmd.command("ls")
@cache_option
@json_option
def ls_cmd(cache_dir: str, json_output: bool) -> None:
    """List cached trees, most recently used first."""
    entries = [e.to_dict() for e in ocikit.NodeCache(cache_dir).ls()]
    emit(json_output, {"cache": cache_dir, "entries": entries}, _render)


def _render(document: dict) -> str:  # type: ignore[type-arg]
    rows = [
        [
            e["digest"][:19],
            e["kind"],
            human_bytes(e["size"]),
            str(e["files"]),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e["last_used"])),
            ", ".join(e["references"]),
        ]
        for e in document["entries"]
    ]
    if not rows:
        return f"{document['cache']}: empty"
    return table(rows, ["DIGEST", "KIND", "SIZE", "FILES", "LAST USED", "REFERENCES"])


@cache_cmd.command("gc")
@cache_option
@click.option("--max-size", help="Evict least-recently-used trees until the cache is at most this big (e.g. 50G).")
@click.option("--max-age", help="Evict trees unused for longer than this (e.g. 7d, 12h).")
@json_option
def gc_cmd(cache_dir: str, max_size: str | None, max_age: str | None, json_output: bool) -> None:
    """Evict trees (and the blobs only they used), then spans cached by mounts, by age and total size."""
    result = ocikit.NodeCache(cache_dir).gc(
        max_bytes=parse_size(max_size) if max_size else None,
        max_age=parse_duration(max_age) if max_age else None,
    )
    document = {
        "cache": cache_dir,
        "removed": result.removed,
        "freedBytes": result.freed_bytes,
        "kept": result.kept,
        "totalBytes": result.total_bytes,
        "spansRemoved": result.spans_removed,
    }
    emit(
        json_output,
        document,
        lambda d: f"removed {len(d['removed'])} trees and {d['spansRemoved']} spans, freed {human_bytes(d['freedBytes'])}; "
        f"{d['kept']} kept, {human_bytes(d['totalBytes'])} in use",
    )
