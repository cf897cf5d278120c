"""Global options anywhere and in every help; bad credential input is exit 2; TLS and plain HTTP to loopback.

The TLS registry is Debian's docker-registry serving HTTPS on 127.0.0.1 with a certificate made
by openssl for the test, which is what ``kubectl port-forward`` to a TLS registry looks like.
"""

import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from environment import require_binary
from ocikit_cli.globals import GLOBAL_OPTIONS
from ocikit_cli.main import COMMANDS, cli

from ocikit.content.open import open_store
from ocikit.options import Options
from ocikit.testing.images import make_image
from ocikit.testing.registry import RegistryServer

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")
GLOBAL_FLAGS = [option.opts[-1] for option in GLOBAL_OPTIONS]


def run(*args, stdin=None, env=None):
    return subprocess.run([OCIKIT, *args], capture_output=True, text=True, input=stdin, timeout=120,
                          env={**os.environ, **(env or {})})


def every_command_path():
    context = click.Context(cli)

    def walk(command, path):
        yield path, command
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), [*path, name])

    for name in sorted(COMMANDS):
        yield from walk(cli.get_command(context, name), [name])


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in every_command_path()])
def test_every_help_lists_the_global_options(path):
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    section = result.output.split("Global options")[1]
    assert all(flag in section for flag in GLOBAL_FLAGS), path


@pytest.fixture
def echo_options():
    """A FAKE command (the only way to look at the merged options directly), loaded like real ones."""
    cli.lazy["echo-options"] = "test_cli_globals:_echo_options_command"
    yield
    del cli.lazy["echo-options"]


@click.command("echo-options")
@click.pass_obj
def _echo_options_command(obj):
    click.echo(json.dumps({"insecure": obj.options.insecure, "plainHttp": obj.options.plain_http,
                           "concurrency": obj.options.concurrency, "quiet": obj.quiet,
                           "explicit": sorted(obj.explicit)}))


@pytest.mark.parametrize("args, expected", [
    (["echo-options"], {"insecure": False, "plainHttp": False, "concurrency": 4, "quiet": False, "explicit": []}),
    (["--insecure", "-q", "echo-options"],
     {"insecure": True, "plainHttp": False, "concurrency": 4, "quiet": True, "explicit": ["insecure", "quiet"]}),
    (["echo-options", "--insecure", "-q"],
     {"insecure": True, "plainHttp": False, "concurrency": 4, "quiet": True, "explicit": ["insecure", "quiet"]}),
    (["--concurrency", "2", "echo-options", "--plain-http"],
     {"insecure": False, "plainHttp": True, "concurrency": 2, "quiet": False, "explicit": ["concurrency", "plain_http"]}),
    (["--concurrency", "2", "echo-options", "--concurrency", "7"],  # the later (inner) value wins
     {"insecure": False, "plainHttp": False, "concurrency": 7, "quiet": False, "explicit": ["concurrency"]}),
])
def test_global_options_before_or_after_the_command_merge(echo_options, monkeypatch, args, expected):
    monkeypatch.delenv("OCIKIT_USERNAME", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


def test_a_global_option_after_a_real_command_and_inside_a_group(registry, tmp_path):
    store, _ = open_store(f"{registry}/globals/app")
    make_image(store, [{"a": b"a"}], tag="v1")
    after = run("tags", f"{registry}/globals/app", "--plain-http", "--concurrency", "2", "-q")
    assert after.returncode == 0, after.stderr
    assert after.stdout.split() == ["v1"]
    nested = run("cache", "ls", "--cache-dir", str(tmp_path / "c"), "--insecure", "--json")
    assert nested.returncode == 0, nested.stderr


@pytest.mark.parametrize("args, stdin, env, words", [
    (["-u", "bob"], None, {}, "needs a password"),
    (["--password-stdin"], "secret\n", {}, "needs -u"),
    (["-u", "bob", "--password-stdin"], "", {}, "stdin was empty"),
    (["--registry-config", "/nonexistent/config.json"], None, {}, "no such file"),
    (["--registry-config", "BROKEN"], None, {}, "not a readable JSON file"),
])
def test_bad_credential_input_is_a_one_line_usage_error(tmp_path, args, stdin, env, words):
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    args = [str(broken) if a == "BROKEN" else a for a in args]
    result = run("tags", "127.0.0.1:9/x", *args, stdin=stdin, env={"OCIKIT_PASSWORD": "", **env})
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_missing_registry_auth_file_from_the_environment_is_skipped(registry):
    """$REGISTRY_AUTH_FILE may name an optional Secret that is absent (podman and skopeo skip it too)."""
    result = run("tags", f"{registry}/globals/none", env={"REGISTRY_AUTH_FILE": "/nonexistent/auth.json"})
    assert result.returncode != 2 and "--registry-config" not in result.stderr


def test_password_from_the_environment_satisfies_username(registry):
    result = run("tags", f"{registry}/globals/none", "-u", "bob", env={"OCIKIT_PASSWORD": "pw"})
    assert "needs a password" not in result.stderr


@pytest.mark.parametrize("args", [["pull"], ["pull", "a", "b", "--bogus"], ["nosuch"], ["tags", "--concurrency", "0", "x"]])
def test_usage_errors_are_one_line_with_exit_2(args):
    result = run(*args)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("ocikit: error: ") and "--help" in line


# -- TLS on loopback -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    require_binary("openssl", "docker-registry")
    workdir = tmp_path_factory.mktemp("tls-registry")
    cert, key = str(workdir / "cert.pem"), str(workdir / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    server = RegistryServer(workdir=str(workdir / "run"), tls=(cert, key))
    store, _ = open_store(f"{server.host}/tls/app", Options(ca_bundle=cert))
    make_image(store, [{"a": b"a"}], tag="v1")
    yield server, cert
    server.close()


def test_tls_registry_on_loopback_with_its_ca(tls_registry):
    server, cert = tls_registry
    result = run("tags", f"{server.host}/tls/app", "--ca-bundle", cert)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["v1"]


def test_tls_registry_on_loopback_checks_the_certificate(tls_registry):
    server, _ = tls_registry
    unverified = run("tags", f"{server.host}/tls/app")
    assert unverified.returncode != 0 and "TLS verification failed" in unverified.stderr, unverified.stderr
    insecure = run("tags", f"{server.host}/tls/app", "--insecure")
    assert insecure.returncode == 0, insecure.stderr


def test_plain_http_never_speaks_tls(tls_registry, registry):
    server, cert = tls_registry
    assert run("tags", f"{server.host}/tls/app", "--plain-http").returncode != 0
    assert "contradict" in run("tags", f"{server.host}/tls/app", "--plain-http", "--ca-bundle", cert).stderr


def test_a_bare_command_shows_its_help():
    for args in ([], ["cache"]):
        result = run(*args)
        assert "Usage: ocikit" in result.stderr + result.stdout and "Commands:" in result.stderr + result.stdout
