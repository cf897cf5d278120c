"""``ocikit similarity`` end to end: the real entry point in a subprocess, real images."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from similarity_images import make_layer, push_image

from ocikit.content.layout import LayoutStore


def run(*args: str, cache: str = "") -> subprocess.CompletedProcess:
    env_args = ["--cache-dir", cache] if cache else []
    return subprocess.run(
        [sys.executable, "-m", "ocikit_cli.main", "similarity", *args, *env_args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("cli") / "layout")
    store = LayoutStore(root)
    b1, b2, x, y, z, w = (make_layer(store, name) for name in ("b1", "b2", "x", "y", "z", "w"))
    push_image(store, [b1, b2, x], tag="a")  # J(a,b) = 2/5, J(a,c) = 1/4, J(b,c) = 1/5
    push_image(store, [b1, b2, y, z], tag="b")
    push_image(store, [b1, w], tag="c")
    return root


def test_table_and_summary_on_the_terminal(layout) -> None:
    result = run("--repository", f"oci:{layout}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "0.400" in out and "0.250" in out and "0.200" in out
    assert "mean similarity: 0.283 over distinct pairs, 0.522 with the diagonal" in out  # (0.4+0.25+0.2)/3
    assert "6 distinct (fraction unique 0.667)" in out
    assert "most shared layers:" in out and "unique bytes per image" in out


def test_json_document(layout) -> None:
    result = run(f"oci:{layout}:a", f"oci:{layout}:b", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["names"] == [f"oci:{layout}:a", f"oci:{layout}:b"]
    assert document["matrix"] == [[1.0, 0.4], [0.4, 1.0]]
    assert document["summary"]["uniqueLayers"] == 5 and document["by"] == "digest"


def test_csv_png_and_reference_file(layout, tmp_path) -> None:
    refs = tmp_path / "refs.txt"
    refs.write_text(f"oci:{layout}:a\n# comment\noci:{layout}:c\n")
    csv_path, png_path = tmp_path / "m.csv", tmp_path / "m.png"
    result = run("--from-file", str(refs), "--csv", str(csv_path), "--png", str(png_path), "--dendrogram")
    assert result.returncode == 0, result.stderr
    assert csv_path.read_text().splitlines()[1:] in (
        [f"oci:{layout}:a,1,0.25", f"oci:{layout}:c,0.25,1"],
        [f"oci:{layout}:c,1,0.25", f"oci:{layout}:a,0.25,1"],
    )
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_to_stdout_is_only_csv(layout) -> None:
    result = run(f"oci:{layout}:a", f"oci:{layout}:b", "--csv", "-")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"image,oci:{layout}:a,oci:{layout}:b"
    assert len(result.stdout.splitlines()) == 3


@pytest.mark.parametrize(
    "args, code, message",
    [
        ((), 2, "give image references"),
        (("--dendrogram", "oci:/x:a"), 2, "--dendrogram needs --png"),
        (("--csv", "-", "--json", "oci:/x:a"), 2, "choose one"),
        (("--by", "history", "oci:/x:a"), 2, "Invalid value for '--by'"),
    ],
)
def test_usage_errors(args, code, message) -> None:
    result = run(*args)
    assert result.returncode == code and message in result.stderr


def test_missing_tag_is_one_line_and_writes_nothing(layout, tmp_path) -> None:
    png = tmp_path / "never.png"
    result = run(f"oci:{layout}:a", f"oci:{layout}:missing", "--png", str(png))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"ocikit: error: oci:{layout}:missing: tag 'missing' not found in oci:{layout}"
    ]
    assert not png.exists()


def test_missing_extra_names_the_pip_command(monkeypatch, capsys, layout) -> None:
    from ocikit_cli.main import main

    monkeypatch.setitem(sys.modules, "numpy", None)  # what an installation without the extra looks like
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "similarity", f"oci:{layout}:a"])  # -q: no progress bar, nothing else involved
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "ocikit: error: similarity needs numpy and scipy, which are not installed: pip install 'ocikit[similarity]' "
        "(from a checkout: pip install -e '.[similarity]')"
    )


def test_missing_plot_extra_fails_before_any_work(monkeypatch, capsys, tmp_path) -> None:
    from ocikit_cli.main import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # The reference does not exist: reaching it would be a different error (exit 3), so exit 1
    # with the plot message proves the check came first.
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "similarity", f"oci:{tmp_path / 'nothing'}:a", "--png", str(tmp_path / "m.png")])
    assert exit_info.value.code == 1
    assert "the heatmap needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


@pytest.mark.registry
def test_registry_images_by_diff_id_weighted(registry, tmp_path) -> None:
    from ocikit.content.open import open_store

    store, _ = open_store(f"{registry}/similarity-cli/app")
    base, top = make_layer(store, "base"), make_layer(store, "top")
    base9 = make_layer(store, "base", level=9)
    push_image(store, [base, top], tag="fast")
    push_image(store, [base9], tag="slow")
    result = run(
        f"{registry}/similarity-cli/app:fast",
        f"{registry}/similarity-cli/app:slow",
        "--by",
        "diff-id",
        "--weighted",
        "--json",
        cache=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    matrix = json.loads(result.stdout)["matrix"]
    smallest = min(base.desc.size, base9.desc.size)
    assert matrix[0][1] == pytest.approx(smallest / (smallest + top.desc.size), abs=1e-6)


def test_by_diff_id_reads_ocikit_views_configs(tmp_path) -> None:
    """A view's config has no rootfs.diff_ids, but records each layer's diffId: the same tree
    pushed at two zstd levels differs by digest and is the same by diff-id."""
    view = tmp_path / "app"
    (view / "share").mkdir(parents=True)
    (view / "share" / "data").write_bytes(bytes(range(256)) * 2000)
    for tag, level in (("fast", "1"), ("slow", "19")):
        pushed = subprocess.run([sys.executable, "-m", "ocikit_cli.main", "-q", "push-view", str(view),
                                 f"oci:{tmp_path / 'l'}:{tag}", "--no-compat", "--no-cache", "--level", level],
                                capture_output=True, text=True)
        assert pushed.returncode == 0, pushed.stderr
    refs = [f"oci:{tmp_path / 'l'}:fast", f"oci:{tmp_path / 'l'}:slow"]
    by_digest = json.loads(run(*refs, "--json").stdout)
    by_diff_id = run(*refs, "--by", "diff-id", "--json")
    assert by_diff_id.returncode == 0, by_diff_id.stderr
    assert by_digest["matrix"][0][1] == 0.0 and json.loads(by_diff_id.stdout)["matrix"][0][1] == 1.0
