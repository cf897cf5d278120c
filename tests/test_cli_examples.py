"""Every command's help ends with examples, and every example works, as text and as --json.

The examples (cli/ocikit_cli/examples.py) run in story order against the session's real
docker-registry, in a directory prepared with what they name. The --json run of each one is
also the walk over every command's JSON: one style (camelCase keys) everywhere.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner
from environment import require_binary
from ocikit_cli.examples import EXAMPLES, STORY
from ocikit_cli.main import COMMANDS, cli
from ocikit_cli.output import VERBATIM_KEYS, camel_case, json_document

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")
SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def command_paths() -> list[str]:
    context = click.Context(cli)
    paths = []

    def walk(command, path):
        paths.append(path)
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                walk(command.get_command(context, name), f"{path} {name}")

    for name in sorted(COMMANDS):
        walk(cli.get_command(context, name), name)
    return paths


def test_every_command_has_examples_and_the_story_runs_them_all():
    assert sorted(EXAMPLES) == sorted(command_paths())
    assert sorted(STORY) == sorted(EXAMPLES)


@pytest.mark.parametrize("path", command_paths())
def test_help_ends_with_the_examples(path):
    text = CliRunner().invoke(cli, [*path.split(), "--help"]).output
    examples = text.split("\nExamples:\n")[1]
    for comment, line in EXAMPLES[path]:
        assert f"# {comment}" in examples and f"$ {line}" in examples


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """What the examples name: ./view (with an ELF program), ./sbom.json, ./tree, ./layer.tar.gz."""
    require_binary("tar")
    top = tmp_path_factory.mktemp("examples")
    view = top / "view"
    (view / "bin").mkdir(parents=True)
    (view / "share").mkdir()
    shutil.copy(shutil.which("true") or "/bin/true", view / "bin" / "hello")
    os.symlink("hello", view / "bin" / "hi")
    (view / "share" / "data").write_text("prefix=/opt/view\n")
    (top / "mnt").mkdir()
    (top / "sbom.json").write_text('{"spdxVersion": "SPDX-2.3"}\n')
    (top / "tree" / "etc").mkdir(parents=True)
    (top / "tree" / "etc" / "config").write_text("/opt/view/lib\n")
    subprocess.run(["tar", "-czf", str(top / "layer.tar.gz"), "-C", str(view), "."], check=True)
    return top


def snake_keys(value, path=""):
    """Keys in ocikit's own field names that are not camelCase (data under VERBATIM_KEYS is skipped)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if SNAKE.fullmatch(str(key)):
                found.append(f"{path}/{key}")
            if key not in VERBATIM_KEYS:
                found += snake_keys(item, f"{path}/{key}")
    elif isinstance(value, list):
        for item in value:
            found += snake_keys(item, f"{path}[]")
    return found


def test_every_example_runs_and_every_json_is_camel_case(registry, workdir):
    ran = []
    for path in STORY:
        for _, line in EXAMPLES[path]:
            args = shlex.split(line.replace("localhost:5000", registry))[1:]
            if path == "mount":  # serves in the foreground: the user reads, then presses Ctrl-C
                for extra in ([], ["--json"]):
                    machine = _mount_read_interrupt([OCIKIT, *args, *extra], workdir)
                if extra:
                    assert snake_keys(json.loads(machine)) == [], line
                ran.append(path)
                continue
            text = subprocess.run([OCIKIT, *args], cwd=workdir, capture_output=True, text=True, timeout=300)
            assert text.returncode == 0, f"{line}: {text.stderr}"
            machine = subprocess.run([OCIKIT, *args, "--json"], cwd=workdir, capture_output=True, text=True,
                                     timeout=300)
            assert machine.returncode == 0, f"{line} --json: {machine.stderr}"
            assert snake_keys(json.loads(machine.stdout)) == [], line
            ran.append(path)
    assert set(ran) == set(EXAMPLES)
    assert (workdir / "data").read_text() == "prefix=/opt/view\n"  # get-file fetched the real bytes
    assert os.access(workdir / "flux" / "bin" / "hello", os.X_OK)  # the pull made a runnable tree


def _mount_read_interrupt(argv: list[str], workdir) -> str:
    """Run a foreground mount, read a file through it, interrupt it as Ctrl-C does; its stdout."""
    process = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mountpoint = workdir / "mnt"
    try:
        for _ in range(600):
            if os.path.ismount(mountpoint) or process.poll() is not None:
                break
            time.sleep(0.1)
        assert os.path.ismount(mountpoint), process.stderr.read() if process.poll() is not None else "not mounted"
        seen = sorted(str(p.relative_to(mountpoint)) for p in mountpoint.rglob("*"))
        assert "share/data" in seen, seen
        assert (mountpoint / "share" / "data").read_text().startswith("prefix=")
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert not os.path.ismount(mountpoint)
    return out


def test_the_serializer_camel_cases_field_names_and_keeps_data():
    document = {
        "uploaded_bytes": 1,
        "files": [{"start_span": 0, "name": "a_b"}],
        "annotations": {"my_label": "x", "org.opencontainers.image.title": "t"},
        "libstdcxx": {"GLIBCXX": "3.4.30"},
        "tuple_value": (1, 2),
    }
    assert json_document(document) == {
        "uploadedBytes": 1,
        "files": [{"startSpan": 0, "name": "a_b"}],  # values are never touched
        "annotations": {"my_label": "x", "org.opencontainers.image.title": "t"},
        "libstdcxx": {"GLIBCXX": "3.4.30"},
        "tupleValue": [1, 2],
    }
    assert camel_case("io.deis.oras.content.unpack") == "io.deis.oras.content.unpack"
    assert camel_case("mediaType") == "mediaType"


def test_label_listing_prints_user_keys_as_they_are(registry, workdir):
    image = f"{registry}/examples/labels:v1"
    pushed = subprocess.run([OCIKIT, "push-view", "./view", image, "--no-compat"], cwd=workdir, capture_output=True)
    assert pushed.returncode == 0, pushed.stderr
    assert subprocess.run([OCIKIT, "label", image, "my_label=x"], capture_output=True).returncode == 0
    listed = subprocess.run([OCIKIT, "label", image, "--json"], capture_output=True, text=True)
    assert json.loads(listed.stdout) == {"my_label": "x"}
