"""The CLI end to end (subprocess): every command loads, --json output, one-line errors, exit codes."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from ocikit_cli.main import COMMANDS

from ocikit.content.open import open_store
from ocikit.registry.referrers import fallback_tag
from ocikit.testing.images import make_image

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


def run(*args, stdin=None):
    return subprocess.run([OCIKIT, *args], capture_output=True, input=stdin, timeout=120)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_and_json(command):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    if "Commands:" not in text:  # groups list subcommands; leaf commands take --json
        assert "--json" in text


def _leaf_commands():
    import click
    from ocikit_cli.main import cli

    context = click.Context(cli)

    def walk(command, path):
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), [*path, name])
        else:
            yield " ".join(path), command

    for name in sorted(COMMANDS):
        yield from walk(cli.get_command(context, name), [name])


def test_every_leaf_command_including_group_members_takes_json():
    missing = [path for path, command in _leaf_commands() if not any("--json" in p.opts for p in command.params)]
    assert missing == []
    assert len(list(_leaf_commands())) >= 20


def test_version():
    assert run("--version").stdout.decode().startswith("ocikit, version ")


def test_attach_and_discover_through_the_tag_fallback(registry, tmp_path):
    store, _ = open_store(f"{registry}/cli/app")
    manifest = make_image(store, [{"a": b"a"}], tag="v1")
    payload = tmp_path / "sbom.json"
    payload.write_text('{"sbom": true}')
    attached = run("attach", f"{registry}/cli/app:v1", str(payload), "--artifact-type", "application/vnd.x.sbom",
                   "-a", "tool=ocikit", "--json")
    assert attached.returncode == 0, attached.stderr
    referrer = json.loads(attached.stdout)["digest"]
    text = run("discover", f"{registry}/cli/app:v1")
    assert text.returncode == 0
    lines = text.stdout.decode().splitlines()
    assert lines[0] == manifest.digest and referrer in lines[1] and "tool=ocikit" in lines[1]
    document = json.loads(run("discover", "--json", f"{registry}/cli/app:v1").stdout)
    assert document["referrers"][0]["digest"] == referrer
    assert document["referrers"][0]["artifactType"] == "application/vnd.x.sbom"
    tags = json.loads(run("tags", "--json", f"{registry}/cli/app").stdout)["tags"]
    assert tags == ["v1"]
    all_tags = json.loads(run("tags", "--all", "--json", f"{registry}/cli/app").stdout)["tags"]
    assert fallback_tag(manifest.digest) in all_tags


def test_manifest_json_prints_the_exact_bytes(registry):
    store, _ = open_store(f"{registry}/cli/exact")
    manifest = make_image(store, [{"b": b"b"}], tag="v1")
    out = run("manifest", "--json", f"{registry}/cli/exact:v1").stdout.rstrip(b"\n")
    assert "sha256:" + hashlib.sha256(out).hexdigest() == manifest.digest


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["resolve", "oci:/definitely/not/here:v1"], 3, "no OCI image layout"),
        (["resolve", "Not A Reference"], 2, "invalid reference"),
        (["resolve", "127.0.0.1:1/x/y:v1"], 9, "connection failed"),
        (["attach", "oci:/x:y", "--artifact-type", "bad"], 3, ""),
    ],
)
def test_errors_are_one_line_with_stable_exit_codes(args, code, fragment):
    result = run(*args)
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert stderr.startswith("ocikit: error:") and stderr.count("\n") == 1
    assert fragment in stderr and "Traceback" not in stderr


def test_missing_tag_in_registry_is_not_found(registry):
    store, _ = open_store(f"{registry}/cli/missing")
    make_image(store, [{"c": b"c"}], tag="v1")
    result = run("manifest", f"{registry}/cli/missing:nope")
    assert result.returncode == 3 and result.stderr.endswith(b"/cli/missing:nope not found\n")
