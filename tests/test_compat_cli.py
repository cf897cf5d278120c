"""The compat and label commands end to end: real processes, exit codes, --json documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from compat_support import VIEW_HASH, spack_view_fixture, validator  # noqa: F401

from ocikit.content.layout import LayoutStore
from ocikit.testing.store_tests import make_artifact


def ocikit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ocikit_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def image(tmp_path) -> str:
    layout = tmp_path / "layout"
    store = LayoutStore(str(layout))
    store.tag(make_artifact(store), "v1")
    return f"oci:{layout}:v1"


@pytest.fixture(scope="module")
def old_host(tmp_path_factory) -> str:
    """This host as `compat host --json` describes it, with glibc set back to 2.28."""
    result = ocikit("compat", "host", "--json")
    assert result.returncode == 0, result.stderr
    host = json.loads(result.stdout)
    validator("ocikit.compat.host.v1.schema.json").validate(host)
    host["glibc"] = "2.28"
    path = tmp_path_factory.mktemp("host") / "old-node.json"
    path.write_text(json.dumps(host))
    return str(path)


def test_scan_json_validates(spack_view_fixture):  # noqa: F811
    result = ocikit("compat", "scan", "--json", "--files", spack_view_fixture["view"])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    validator("ocikit.compat.scan-report.v1.schema.json").validate(report)
    assert report["versionNeeds"]["GLIBC"]["version"] == "2.36"
    assert len(report["elfFiles"]) == report["counts"]["elfFiles"] == 21


def test_scan_text_names_facts_and_requirements(spack_view_fixture):  # noqa: F811
    result = ocikit("compat", "scan", spack_view_fixture["view"])
    assert result.returncode == 0, result.stderr
    assert "glibc.minimum      2.36  [scan]" in result.stdout
    assert "required libc        glibc >= 2.36" in result.stdout


def test_attach_then_check_exit_codes(image, spack_view_fixture, old_host, tmp_path):  # noqa: F811
    assert ocikit("compat", "check", image).returncode == 3  # no metadata yet: NotFoundError

    saved = tmp_path / "report.json"
    saved.write_text(ocikit("compat", "scan", "--json", spack_view_fixture["view"]).stdout)
    attached = ocikit("compat", "attach", "--json", image, str(saved))
    assert attached.returncode == 0, attached.stderr
    assert json.loads(attached.stdout)["artifactType"] == "application/vnd.oci.image-compatibility.v1"

    bad = ocikit("compat", "check", image, "--host", old_host)
    assert bad.returncode == 7
    assert "too old  glibc >= 2.36: host glibc 2.28 < 2.36" in bad.stdout
    assert bad.stderr.count("\n") == 1 and "cannot run on this host" in bad.stderr

    as_json = ocikit("compat", "check", "--json", image, "--host", old_host)
    assert as_json.returncode == 7
    document = json.loads(as_json.stdout)
    validator("ocikit.compat.check-report.v1.schema.json").validate(document)
    assert document["compatible"] is False

    good_host = json.loads(open(old_host).read())
    good_host["glibc"] = "2.36"
    good = tmp_path / "new-node.json"
    good.write_text(json.dumps(good_host))
    ok = ocikit("compat", "check", image, "--host", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok       glibc >= 2.36" in ok.stdout


def test_check_a_directory_directly(spack_view_fixture, old_host):  # noqa: F811
    result = ocikit("compat", "check", spack_view_fixture["view"], "--host", old_host)
    assert result.returncode == 7
    assert "GLIBC_2.36" in result.stdout


def test_label_and_discover(image):
    added = ocikit("label", image, "team=hpc", "site=x")
    assert added.returncode == 0, added.stderr
    listed = ocikit("label", "--json", image)
    assert json.loads(listed.stdout) == {"site": "x", "team": "hpc"}
    discovered = ocikit("discover", image)
    assert "application/vnd.ocikit.labels.v1" in discovered.stdout and "team=hpc" in discovered.stdout


def test_bad_input_is_one_line_not_a_traceback(image, tmp_path):
    bad_label = ocikit("label", image, "no-equals-sign")
    assert bad_label.returncode == 2 and "Traceback" not in bad_label.stderr
    missing = ocikit("compat", "scan", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    result = ocikit("compat", "attach", image, str(garbage))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_attach_without_a_source_scans_the_pulled_artifact(registry, spack_view_fixture, old_host):  # noqa: F811
    """`compat attach REF` alone: the artifact is pulled into a scratch directory and scanned there."""
    import ocikit as api

    reference = f"{registry}/compat/after-the-fact:v1"
    root = f"/opt/._view/{VIEW_HASH}"  # the root the fixture's files were built for
    pushed = api.push_view(spack_view_fixture["view"], reference, root=root, compat=False, cache_dir="")
    attached = ocikit("compat", "attach", "--json", reference)
    assert attached.returncode == 0, attached.stderr
    document = json.loads(attached.stdout)
    assert document["annotations"]["org.supercontainers.glibc"].startswith("2.36")
    store, _ = api.open_store(reference)
    [referrer] = store.referrers(pushed.manifest)
    assert referrer.digest == document["digest"]
    bad = ocikit("compat", "check", reference, "--host", old_host)
    assert bad.returncode == 7 and "glibc >= 2.36" in bad.stdout
