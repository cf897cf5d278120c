"""``ocikit push-view`` from the command line: text, --json, options, progress on a TTY."""

import json
import os
import pty
import re
import subprocess
import sys

import pytest
from pushview_support import decompress, layout_blob, layout_manifest, tar_members

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


@pytest.fixture
def tree(tmp_path):
    top = tmp_path / "app"
    (top / "share").mkdir(parents=True)
    (top / "share" / "data").write_bytes(os.urandom(2_000_000))
    os.link(top / "share" / "data", top / "share" / "data-again")
    (top / "README").write_text("hello\n")
    return top


def run(*args, **kwargs):
    return subprocess.run([OCIKIT, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_json_output_and_options(tree, tmp_path):
    layout = tmp_path / "layout"
    result = run("push-view", str(tree), f"oci:{layout}:v1", "--json", "--no-cache", "--label", "a=b",
                 "--name", "myapp", "--compression", "gzip", "--level", "1", "--no-compat")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    manifest = layout_manifest(str(layout), "v1")
    assert document["digest"] == open_digest(layout, "v1")
    assert manifest["annotations"]["a"] == "b"
    [layer] = manifest["layers"]
    assert layer["annotations"]["org.opencontainers.image.title"] == "myapp.tar.gz"
    assert document["layers"][0]["status"] == "uploaded" and document["uploadedBytes"] > 0
    assert document["compat"] is None and document["warnings"] == []
    tar = decompress(layout_blob(str(layout), layer["digest"]), layer["mediaType"])
    assert document["layers"][0]["tarSize"] == len(tar)  # the plan's size, hardlink included
    members = tar_members(tar)
    kinds = {m.name: ("hardlink:" + m.linkname if m.islnk() else m.type) for m in members}
    assert kinds["share/data-again"] == "hardlink:share/data"  # hardlinks stay hardlinks


def open_digest(layout, tag):
    index = json.load(open(os.path.join(layout, "index.json")))
    return next(m["digest"] for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)


def test_text_output_reports_a_repush_as_nothing_sent(tree, tmp_path):
    layout = tmp_path / "layout"
    first = run("push-view", str(tree), f"oci:{layout}:v1", "--no-cache")
    assert first.returncode == 0 and "1 uploaded" in first.stdout
    second = run("push-view", str(tree), f"oci:{layout}:v1", "--no-cache")
    assert "0 uploaded, 0 B sent" in second.stdout and "exists" in second.stdout


def test_bad_option_values(tree, tmp_path):
    bad_level = run("push-view", str(tree), f"oci:{tmp_path / 'l'}:t", "--level", "42")
    assert bad_level.returncode == 2 and "level must be 1..19" in bad_level.stderr
    digest_ref = run("push-view", str(tree), f"oci:{tmp_path / 'l'}@sha256:" + "0" * 64)
    assert digest_ref.returncode == 2 and "needs a tag" in digest_ref.stderr
    assert run("push-view", str(tree), "oci:x:t", "--label", "novalue").returncode == 2


def test_progress_is_drawn_on_a_tty(tree, tmp_path):
    master, slave = pty.openpty()
    process = subprocess.Popen([OCIKIT, "push-view", str(tree), f"oci:{tmp_path / 'l'}:t", "--no-cache"],
                               stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    os.close(master)
    assert process.returncode == 0
    # The compatibility scan is a second task running beside the layer upload, so intermediate
    # lines may read [0/2] or [1/2] depending on scheduling; the last redraw has every task done.
    redraws = output.replace(b"\r\n", b"\n").split(b"\n")[0].split(b"\r")  # the tty turns \n into \r\n
    last = redraws[-1].decode()
    assert len(redraws) > 2 and "100.0%" in last and re.search(r"\[(\d+)/\1\]", last), output
