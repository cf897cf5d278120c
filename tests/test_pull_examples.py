"""The Kubernetes examples stay true to the CLI and the API they show."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
from pull_support import TarBuilder, push_view

from ocikit.pull.ready import read_marker

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples", "kubernetes")


def _help(*command: str) -> str:
    return subprocess.run([sys.executable, "-m", "ocikit_cli.main", *command, "--help"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("manifest", ["job-init-container.yaml", "pod-sidecar.yaml"])
def test_manifests_use_existing_options(manifest):
    text = open(os.path.join(EXAMPLES, manifest)).read()
    helps = {"pull": _help("pull"), "wait": _help("wait"), "": _help()}
    used = 0
    for command in ("pull", "wait"):
        for line in re.findall(rf"ocikit {command} [^\n\"&]*", text) + (
            [" ".join(re.findall(r"- (--[\w-]+=?\S*)", text))] if command == "pull" else []
        ):
            for option in re.findall(r"(--[\w-]+)", line):
                assert option in helps[command] or option in helps[""], f"{manifest}: {option} is not an option"
                used += 1
    assert used >= 1


def test_csi_example_publishes_a_relocated_view(tmp_path, monkeypatch):
    pytest.importorskip("ocikit.relocate")
    monkeypatch.setenv("OCIKIT_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("csi_node_publish", os.path.join(EXAMPLES, "csi_node_publish.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    placeholder = "/__ocikit_root_placeholder__"[: len("/opt/views/app")]
    tar = TarBuilder().file("etc/app.conf", f"home={placeholder}\n".encode()).bytes()
    config = {"relocation": {"root": "/opt/views/app", "placeholder": placeholder, "files": ["etc/app.conf"]}}
    layout = str(tmp_path / "layout")
    push_view(layout, [tar], config)
    target = str(tmp_path / "kubelet" / "pod-1" / "volume")
    module.node_publish_volume({"reference": f"oci:{layout}:v1", "mountPath": "/opt/view"}, target, False, {})
    assert open(os.path.join(target, "etc/app.conf")).read() == "home=/opt/view\n"
    assert read_marker(target)["relocatedTo"] == "/opt/view"
    module.node_unpublish_volume(target)
    assert not os.path.exists(target)
    assert len(module.CACHE.ls()) == 1  # the cached tree stays for the next pod


def test_csi_example_mount_mode_survives_a_driver_restart(tmp_path, monkeypatch):
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.fail("FUSE is not available") if os.environ.get("CI") else pytest.skip("FUSE is not available")
    monkeypatch.setenv("OCIKIT_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("csi_node_publish", os.path.join(EXAMPLES, "csi_node_publish.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    layout = str(tmp_path / "layout")
    push_view(layout, [TarBuilder().file("bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755).bytes()], {})
    target = str(tmp_path / "kubelet" / "pod-1" / "volume")
    module.node_publish_volume({"reference": f"oci:{layout}:v1", "mode": "mount"}, target, True, {})
    try:
        assert os.path.ismount(target)
        assert open(os.path.join(target, "bin", "tool"), "rb").read() == b"#!/bin/sh\necho tool\n"
        module.MOUNTS.clear()  # the driver restarts: its handles are gone, the mount is not
        assert os.path.ismount(target)
        module.node_unpublish_volume(target)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", target], check=False, capture_output=True)
    assert not os.path.exists(target)


def test_csi_example_deletes_the_pull_secret_it_wrote(tmp_path, monkeypatch):
    pytest.importorskip("ocikit.relocate")
    import tempfile

    monkeypatch.setenv("OCIKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    spec = importlib.util.spec_from_file_location("csi_node_publish", os.path.join(EXAMPLES, "csi_node_publish.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    layout = str(tmp_path / "layout")
    push_view(layout, [TarBuilder().file("a", b"a").bytes()], {})
    secrets = {".dockerconfigjson": '{"auths": {}}'}
    module.node_publish_volume({"reference": f"oci:{layout}:v1"}, str(tmp_path / "pod"), False, secrets)
    assert os.path.exists(tmp_path / "pod" / "a")
    assert os.listdir(tmp_path / "tmp") == []  # no ocikit-auth-*.json left behind


def test_sidecar_pins_a_digest_and_the_shell_wait_loop_times_out(tmp_path):
    sidecar = open(os.path.join(EXAMPLES, "pod-sidecar.yaml")).read()
    assert re.search(r"ocikit pull [^\n]*\S+@sha256:[0-9a-f]{64} ", sidecar)
    readme = open(os.path.join(EXAMPLES, "README.md")).read()
    loop = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    quick = loop.replace("/opt/view", str(tmp_path / "view")).replace("-le 300", "-le 1").replace("sleep 2", "sleep 0")
    missing = subprocess.run(["sh", "-c", quick], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 8 and "not ready" in missing.stderr
    os.makedirs(tmp_path / "view" / ".ocikit")
    (tmp_path / "view" / ".ocikit" / "ready.json").write_text("{}")
    assert subprocess.run(["sh", "-c", quick], timeout=30).returncode == 0
