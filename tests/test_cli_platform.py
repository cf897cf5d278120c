"""--platform on the commands that act on a reference as given (copy, attach, discover, label,
compat attach/check), against real two-platform indexes in the registry fixture: with it an
index stands for that platform's manifest; without it, for itself. An unknown platform is one
line on stderr and exit 3 (not found), a malformed one exit 2 (usage)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys

import pytest
from compat_support import spack_view_fixture  # noqa: F401

import ocikit
from ocikit.compat.host import HostInfo
from ocikit.compat.scan import scan
from ocikit.content.base import fetch_manifest, push_manifest
from ocikit.content.open import open_store
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor, Platform
from ocikit.spec.manifest import build_index
from ocikit.testing.images import make_image

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")
_repos = itertools.count()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCIKIT, *args], capture_output=True, text=True, timeout=120)


def ok_json(*args: str):  # type: ignore[no-untyped-def]
    result = run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclasses.dataclass
class TwoPlatforms:
    reference: str  # the index, tagged v1
    index: Descriptor
    amd64: Descriptor
    arm64: Descriptor


@pytest.fixture
def multi(registry: str) -> TwoPlatforms:
    """A fresh linux/amd64 + linux/arm64 index, each image a file naming its architecture."""
    repository = f"{registry}/platform/multi{next(_repos)}"
    store, _ = open_store(repository)
    images = {}
    for arch in ("amd64", "arm64"):
        desc = make_image(store, [{"etc/arch": arch.encode()}], architecture=arch)
        images[arch] = dataclasses.replace(desc, platform=Platform("linux", arch))
    index = push_manifest(store, build_index(list(images.values())), tag="v1")
    return TwoPlatforms(f"{repository}:v1", index, images["amd64"], images["arm64"])


def attach_note(reference: str, platform: str | None, tmp_path, text: str) -> str:  # type: ignore[no-untyped-def]
    note = tmp_path / f"{text}.txt"
    note.write_text(text)
    args = ["attach", reference, str(note), "--artifact-type", "application/vnd.test.note", "-a", f"note={text}"]
    return ok_json(*args, *(["--platform", platform] if platform else []))["digest"]


def test_copy_with_platform_copies_only_that_platforms_manifest_and_its_referrers(multi, registry, tmp_path):
    arm_note = attach_note(multi.reference, "linux/arm64", tmp_path, "arm")
    attach_note(multi.reference, "linux/amd64", tmp_path, "amd")
    attach_note(multi.reference, None, tmp_path, "index")
    copied = ok_json("copy", multi.reference, f"{registry}/platform/arm-only:v1", "--platform", "linux/arm64",
                     "--referrers")
    assert copied["digest"] == multi.arm64.digest and copied["manifests"] == 2  # the image and its one note
    assert copied["referrers"] == [arm_note]
    destination, _ = open_store(f"{registry}/platform/arm-only")
    assert destination.resolve("v1").digest == multi.arm64.digest
    assert not destination.exists(multi.index) and not destination.exists(multi.amd64)
    whole = ok_json("copy", multi.reference, f"{registry}/platform/whole:v1")
    assert whole["digest"] == multi.index.digest and whole["manifests"] == 3


def test_copy_library_call_takes_the_platform(multi, tmp_path):
    result = ocikit.copy(multi.reference, f"oci:{tmp_path / 'layout'}:v1", platform=Platform("linux", "amd64"))
    assert result.root.digest == multi.amd64.digest
    copied = ocikit.get_manifest(f"oci:{tmp_path / 'layout'}:v1")
    assert not copied.is_index and copied.digest == multi.amd64.digest


def test_attach_and_discover_with_platform_use_that_platforms_manifest(multi, tmp_path):
    arm_note = attach_note(multi.reference, "linux/arm64", tmp_path, "arm")
    index_note = attach_note(multi.reference, None, tmp_path, "index")
    arm = ok_json("discover", multi.reference, "--platform", "linux/arm64")
    assert arm["subject"]["digest"] == multi.arm64.digest
    assert [r["digest"] for r in arm["referrers"]] == [arm_note]
    whole = ok_json("discover", multi.reference)
    assert whole["subject"]["digest"] == multi.index.digest
    assert [r["digest"] for r in whole["referrers"]] == [index_note]
    assert ok_json("discover", multi.reference, "--platform", "linux/amd64")["referrers"] == []
    subject, tree = ocikit.discover(multi.reference, platform="linux/arm64")
    assert subject.digest == multi.arm64.digest and [n.descriptor.digest for n in tree] == [arm_note]


def test_label_with_platform_labels_that_platforms_manifest(multi):
    labelled = run("label", multi.reference, "team=hpc", "--platform", "linux/arm64")
    assert labelled.returncode == 0, labelled.stderr
    assert ok_json("label", multi.reference, "--platform", "linux/arm64") == {"team": "hpc"}
    assert ok_json("label", multi.reference, "--platform", "linux/amd64") == {}
    assert ok_json("label", multi.reference) == {}


def test_compat_attach_and_check_with_platform(multi, spack_view_fixture, tmp_path):  # noqa: F811
    report = tmp_path / "report.json"
    report.write_text(json.dumps(scan(spack_view_fixture["view"]).to_dict()))  # needs glibc 2.36
    old_host = tmp_path / "host.json"
    host = HostInfo(machine="aarch64", libc="glibc", glibc="2.30", cpu_flags=frozenset(), libraries={})
    old_host.write_text(json.dumps(host.to_dict(full=True)))
    attached = ok_json("compat", "attach", multi.reference, str(report), "--platform", "linux/arm64")
    referrer = fetch_manifest(open_store(multi.reference)[0], attached["digest"])
    assert referrer.subject is not None and referrer.subject.digest == multi.arm64.digest
    assert referrer.artifact_type == mt.IMAGE_COMPAT_ARTIFACT
    arm = run("compat", "check", multi.reference, "--host", str(old_host), "--platform", "linux/arm64", "--json")
    assert arm.returncode == 7, arm.stderr  # the arm64 manifest's metadata: glibc 2.36 > 2.30
    assert json.loads(arm.stdout)["compatible"] is False
    amd = run("compat", "check", multi.reference, "--host", str(old_host), "--platform", "linux/amd64")
    assert amd.returncode == 3 and "no compatibility metadata" in amd.stderr


def test_compat_attach_without_source_pulls_and_scans_that_platforms_image(registry):
    """An index without this host's platform: only the --platform image can be pulled and scanned."""
    store, _ = open_store(f"{registry}/platform/foreign")
    entries = [dataclasses.replace(make_image(store, [{"etc/arch": arch.encode()}], architecture=arch),
                                   platform=Platform("linux", arch)) for arch in ("s390x", "riscv64")]
    push_manifest(store, build_index(entries), tag="v1")
    attached = ok_json("compat", "attach", f"{registry}/platform/foreign:v1", "--platform", "linux/riscv64")
    referrer = fetch_manifest(store, attached["digest"])
    assert referrer.subject is not None and referrer.subject.digest == entries[1].digest


@pytest.mark.parametrize("command", [
    ["copy", "{ref}", "oci:{tmp}/out:v1"],
    ["discover", "{ref}"],
    ["attach", "{ref}", "--artifact-type", "application/vnd.test.note"],
    ["label", "{ref}", "team=hpc"],
    ["compat", "check", "{ref}"],
    ["compat", "attach", "{ref}", "{tmp}"],
])
def test_an_unknown_platform_is_one_line_and_exit_3_a_malformed_one_exit_2(multi, tmp_path, command):
    args = [a.format(ref=multi.reference, tmp=tmp_path) for a in command]
    unknown = run(*args, "--platform", "linux/s390x")
    assert unknown.returncode == 3, unknown.stderr
    assert unknown.stderr.count("\n") == 1 and "no manifest for platform linux/s390x" in unknown.stderr
    assert "linux/amd64, linux/arm64" in unknown.stderr
    malformed = run(*args, "--platform", "s390x")
    assert malformed.returncode == 2 and malformed.stderr.count("\n") == 1, malformed.stderr
    assert "invalid platform 's390x'" in malformed.stderr
    assert not (tmp_path / "out").exists()  # copy fails before it creates the destination layout
