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


def test_tasks_that_overlap_are_counted_and_the_last_line_has_all_finished():
    """push-view's compatibility scan runs in a thread beside the layer upload; under load it starts
    before the layer ends. That interleaving made the TTY test's ``[1/1]`` flaky: never assume it."""
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.start("layer", "app.tar.zst", total=1 << 20)
    progress.start("scan", "scan /opt/view", None, unit="files")  # the background scan, early
    progress.advance("layer", 1 << 20)
    progress.finish("layer")
    assert "[1/2]" in stream.getvalue().split("\r")[-1]
    progress.advance("scan", 3)
    progress.finish("scan")
    progress.close()
    assert "[2/2]" in stream.getvalue().split("\r")[-1]


def test_a_phase_message_before_any_task_is_shown_without_counts():
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.message("scanning view")
    assert stream.getvalue().split("\r")[-1].strip() == "scanning view"  # not "0  [0/0] scanning view"


def test_pull_progress_names_layers_by_title_not_digest(tmp_path):
    import ocikit
    from ocikit.progress import CountingProgress
    from ocikit.push.api import push_view

    view = tmp_path / "app"
    (view / "share").mkdir(parents=True)
    (view / "share" / "data").write_text("x")
    push_view(str(view), f"oci:{tmp_path / 'l'}:v1", compat=False, cache_dir="")
    progress = CountingProgress()
    ocikit.pull(f"oci:{tmp_path / 'l'}:v1", str(tmp_path / "dest"), progress=progress)
    labels = [label for task, (label, _) in progress.started.items() if task.startswith("layer:")]
    assert labels == ["app.tar.zst"]
