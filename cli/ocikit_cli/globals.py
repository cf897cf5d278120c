"""Global options: accepted before or after the command name, shown in every command's help.

``ocikit --insecure pull R D`` and ``ocikit pull R D --insecure`` mean the same, as with oras,
crane and skopeo. The options are declared once (:data:`GLOBAL_OPTIONS`); the top-level group
takes them with their environment variables and defaults, and :func:`apply_global_options`
adds a copy to every command and sub-group when :class:`~ocikit_cli.main.LazyGroup` loads it,
so command modules need no decorator of their own. A value given on the command line at a
deeper level wins over one given earlier; the merged values become the command's
:class:`~ocikit_cli.context.CliContext` (built and checked once, in :func:`context_from_flags`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from ocikit.options import Options

from .context import CliContext

_META_KEY = "ocikit.global_flags"
_EXPLICIT_KEY = "ocikit.global_flags_set"  # set by the user, typed or from the environment
_TYPED_KEY = "ocikit.global_flags_typed"  # typed on the command line
_APPLIED = "_ocikit_global_options"


_SPECS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--insecure",), dict(is_flag=True, help="Skip TLS verification and allow plain HTTP, for every registry.")),
    (("--plain-http",), dict(is_flag=True, help="Speak plain HTTP to every registry (no TLS), as oras --plain-http.")),
    (("--ca-bundle",), dict(type=click.Path(exists=True, dir_okay=False), default=None,
                            help="PEM bundle of CAs to trust for TLS (private registries, port-forwards).")),
    (("-u", "--username"), dict(envvar="OCIKIT_USERNAME", default="",
                                help="Registry user name [env: OCIKIT_USERNAME]; needs a password.")),
    (("--password-stdin",), dict(is_flag=True, help="Read the password or token for -u from stdin "
                                                    "[or env: OCIKIT_PASSWORD].")),
    (("--registry-config",), dict(envvar="REGISTRY_AUTH_FILE", type=click.Path(dir_okay=False), default="",
                                  help="A docker config.json with credentials [env: REGISTRY_AUTH_FILE; "
                                       "default: $DOCKER_CONFIG/config.json or ~/.docker/config.json].")),
    (("--concurrency",), dict(type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel transfers.")),
    (("-q", "--quiet"), dict(is_flag=True, help="No progress output.")),
)


def _options() -> list[click.Option]:
    """Fresh option objects as the top-level group declares them (with defaults and environment)."""
    return [click.Option(list(decls), **dict(attrs)) for decls, attrs in _SPECS]


GLOBAL_OPTIONS: tuple[click.Option, ...] = tuple(_options())
GLOBAL_NAMES: tuple[str, ...] = tuple(str(option.name) for option in GLOBAL_OPTIONS)
DEFAULT_FLAGS: dict[str, Any] = {str(o.name): o.default for o in GLOBAL_OPTIONS}


def group_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate the top-level group with the global options (defaults and environment variables)."""
    for decls, attrs in reversed(_SPECS):
        function = click.option(*decls, **attrs)(function)
    return function


def remember_group_flags(ctx: click.Context, flags: dict[str, Any]) -> None:
    """Store the top-level group's values; every command merges its own over them."""
    ctx.meta[_META_KEY] = {name: flags.pop(name) for name in GLOBAL_NAMES}
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    ctx.meta[_EXPLICIT_KEY] = frozenset(n for n in GLOBAL_NAMES if ctx.get_parameter_source(n) in given)
    ctx.meta[_TYPED_KEY] = frozenset(n for n in GLOBAL_NAMES if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE)


def _command_copies() -> list[click.Option]:
    """The same options for a command: no default and no environment, so only what is typed counts."""
    copies = []
    for option in _options():
        option.envvar = None
        option.default = False if option.is_flag else None
        option.show_default = False
        copies.append(option)
    return copies


def apply_global_options(command: click.Command) -> click.Command:
    """Give ``command`` (and, for a group, each of its sub-commands) the global options. Idempotent."""
    if getattr(command, _APPLIED, False):
        return command
    setattr(command, _APPLIED, True)
    taken = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    taken |= {str(param.name) for param in command.params}
    added = [o for o in _command_copies() if o.name not in taken and not set(o.opts) & taken]
    command.params.extend(added)
    command.callback = _merging(command.callback, tuple(str(o.name) for o in added))
    command.format_options = types.MethodType(_format_options, command)  # type: ignore[method-assign]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            apply_global_options(sub)
    return command


def _merging(callback: Callable[..., Any] | None, names: tuple[str, ...]) -> Callable[..., Any]:
    """Wrap a command's callback: merge the global values typed here, then build its context."""

    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        flags = dict(ctx.meta.get(_META_KEY) or DEFAULT_FLAGS)
        explicit = set(ctx.meta.get(_EXPLICIT_KEY, ()))
        typed = set(ctx.meta.get(_TYPED_KEY, ()))
        for name in names:
            value = kwargs.pop(name)
            if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
                flags[name] = value
                explicit.add(name)
                typed.add(name)
        ctx.meta[_META_KEY] = flags
        ctx.meta[_EXPLICIT_KEY] = frozenset(explicit)
        ctx.meta[_TYPED_KEY] = frozenset(typed)
        if not isinstance(ctx.command, click.Group) or ctx.invoked_subcommand is None:
            ctx.obj = context_from_flags(flags, frozenset(explicit), frozenset(typed))
        return callback(*args, **kwargs) if callback else None

    return functools.update_wrapper(run, callback) if callback else run


def context_from_flags(
    flags: dict[str, Any], explicit: frozenset[str] = frozenset(), typed: frozenset[str] = frozenset()
) -> CliContext:
    """The command's :class:`CliContext` from the merged global values; bad credential input is exit 2.

    A typed ``--registry-config`` must be a readable JSON object; ``$REGISTRY_AUTH_FILE`` that
    names no file is skipped quietly, as podman and skopeo do (a Secret mounted as optional).
    """
    username = flags["username"] or ""
    password = ""
    if flags["password_stdin"]:
        if not username:
            raise click.UsageError("--password-stdin needs -u/--username (or $OCIKIT_USERNAME)")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: stdin was empty")
    password = password or os.environ.get("OCIKIT_PASSWORD", "")
    if username and not password:
        raise click.UsageError(f"-u {username} needs a password: --password-stdin or $OCIKIT_PASSWORD")
    registry_config = flags["registry_config"] or ""
    if registry_config and "registry_config" in typed:
        _check_registry_config(registry_config)
    if flags["plain_http"] and flags["ca_bundle"]:
        raise click.UsageError("--plain-http and --ca-bundle contradict each other (no TLS, or TLS with that CA)")
    options = Options(
        insecure=bool(flags["insecure"]),
        plain_http=bool(flags["plain_http"]),
        username=username,
        password=password,
        registry_config=registry_config,
        ca_bundle=flags["ca_bundle"] or "",
        concurrency=int(flags["concurrency"] or 4),
    )
    return CliContext(options=options, quiet=bool(flags["quiet"]), explicit=explicit)


def _check_registry_config(path: str) -> None:
    """An explicit credentials file must exist and be a JSON object: silently going anonymous hides typos."""
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except FileNotFoundError:
        raise click.BadParameter(f"{path}: no such file", param_hint="--registry-config") from None
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: not a readable JSON file ({exc})", param_hint="--registry-config") from None
    if not isinstance(document, dict):
        raise click.BadParameter(f"{path}: not a JSON object", param_hint="--registry-config")


def _format_options(self: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """Help: the command's own options, then the global ones in their own section."""
    own: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    for param in self.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            (shared if getattr(param, "name", None) in GLOBAL_NAMES else own).append(record)
    if own:
        with formatter.section("Options"):
            formatter.write_dl(own)
    if shared:
        with formatter.section("Global options (also accepted before the command)"):
            formatter.write_dl(shared)
    if isinstance(self, click.Group):
        self.format_commands(ctx, formatter)
