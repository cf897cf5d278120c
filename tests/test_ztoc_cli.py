"""The ztoc commands end to end (subprocess): --json documents, text, one-line errors, exit codes."""

import json
import os
import subprocess
import sys

import pytest
from ztoc_helpers import SPAN, gnu_tar, gzip_file, make_tree, push_image, soci_vectors_dir

from ocikit.content.layout import LayoutStore
from ocikit.spec import mediatypes as mt

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


def run(*args):
    return subprocess.run([OCIKIT, *args], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    layer = gzip_file(gnu_tar(root, str(work / "layer.tar")), str(work / "layer.gz"))
    push_image(LayoutStore(str(work / "layout")), [(layer, mt.OCI_LAYER_GZIP)])
    return f"oci:{work / 'layout'}:v1", root, layer, work


def test_build_ls_info_get_file(image, tmp_path):
    ref, root, _, _ = image
    built = run("ztoc", "build", ref, "--span-size", "64KiB", "--min-layer-size", "0", "--json")
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["spanSize"] == SPAN and report["layers"][0]["status"] == "built"
    listed = json.loads(run("ztoc", "ls", ref, "--json").stdout)
    assert listed[0]["ztoc"] == report["layers"][0]["ztoc"] and listed[0]["kind"] == "soci"
    info = json.loads(run("ztoc", "info", ref, "--json").stdout)
    assert any(f["name"] == "./bin/tool" and f["endSpan"] >= f["startSpan"] for f in info["files"])
    out = tmp_path / "tool"
    got = run("get-file", ref, "bin/tool", "-o", str(out), "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["size"] == os.path.getsize(os.path.join(root, "bin/tool"))
    assert out.read_bytes() == open(os.path.join(root, "bin/tool"), "rb").read()
    piped = run("get-file", ref, "share/doc/README", "-o", "-")
    assert piped.stdout == b"read me\n" * 100
    text = run("ztoc", "build", ref, "--span-size", "64KiB", "--min-layer-size", "0")
    assert b"exists" in text.stdout and b"nothing new" in text.stdout


def test_build_file_reproduces_a_soci_vector(tmp_path):
    vectors = soci_vectors_dir()
    if not os.path.isdir(vectors):
        pytest.skip("shared SOCI vectors are not present")
    out = tmp_path / "meta.ztoc"
    done = run("ztoc", "build-file", os.path.join(vectors, "meta.tar.gz"), "-o", str(out), "--span-size", "4096",
               "--build-tool-id", "soci-oracle", "--json")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == open(os.path.join(vectors, "meta.ztoc"), "rb").read()
    described = json.loads(run("ztoc", "info", str(out), "--json").stdout)
    assert described["buildTool"] == "soci-oracle" and described["compression"] == "gzip"


def test_errors_are_one_line_with_exit_codes(image, tmp_path):
    ref, _, layer, work = image
    missing = run("get-file", ref, "no/such/file", "-o", str(tmp_path / "x"))
    assert missing.returncode == 3 and missing.stderr.decode().count("\n") == 1
    assert not (tmp_path / "x").exists()
    not_tar = tmp_path / "random.bin"
    not_tar.write_bytes(os.urandom(2048))
    bad = run("ztoc", "build-file", str(not_tar), "-o", str(tmp_path / "out.ztoc"))
    assert bad.returncode == 1 and b"not a tar" in bad.stderr and not (tmp_path / "out.ztoc").exists()
    corrupt = tmp_path / "corrupt.ztoc"
    corrupt.write_bytes(open(layer, "rb").read()[:4096])
    assert run("ztoc", "info", str(corrupt)).returncode == 1
    assert run("ztoc", "build", ref, "--span-size", "lots").returncode == 2
