"""The terminal progress line: bytes with a rate for transfers, counts for counted work."""

import io

from ocikit_cli.output import TerminalProgress


def test_bytes_are_shown_with_units_and_percent():
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.start("blob", "layer", total=2 << 20)
    progress.advance("blob", 1 << 20)
    progress.finish("blob")
    progress.close()
    last = stream.getvalue().split("\r")[-1]
    assert "100.0% 2.0 MiB/2.0 MiB" in last and "[1/1]" in last and last.endswith("\n")


def test_counted_items_are_not_shown_as_bytes():
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.start("scan", "scan /opt/view", total=50, unit="files")
    progress.advance("scan", 20)
    progress.message("scanning")
    line = stream.getvalue().split("\r")[-1]
    assert "20/50 files" in line and "MiB" not in line and " B" not in line
