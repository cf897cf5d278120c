"""The ``ocikit`` command: a thin click front end over the library.

Commands are loaded lazily from ``COMMANDS`` (name → ``module:attribute``) so that
``ocikit --help`` and a plain ``ocikit pull`` do not import plotting, ELF or zTOC code.
Every library error becomes one line on stderr and an exit code from
:data:`ocikit.errors.EXIT_CODES`; tracebacks appear only with ``OCIKIT_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ocikit import __version__
from ocikit.errors import OcikitError, exit_code_for

from .examples import add_examples
from .globals import apply_global_options, group_options, remember_group_flags

# name -> "module:attribute"; one module per command (or command group) in commands/.
COMMANDS: dict[str, str] = {
    "attach": "ocikit_cli.commands.attach:attach_cmd",
    "cache": "ocikit_cli.commands.cache:cache_cmd",
    "compat": "ocikit_cli.commands.compat:compat",
    "copy": "ocikit_cli.commands.copy:copy_cmd",
    "discover": "ocikit_cli.commands.attach:discover_cmd",
    "label": "ocikit_cli.commands.label:label",
    "manifest": "ocikit_cli.commands.manifest:manifest_cmd",
    "pull": "ocikit_cli.commands.pull:pull_cmd",
    "push-view": "ocikit_cli.commands.push_view:push_view_command",
    "relocate": "ocikit_cli.commands.relocate:command",
    "resolve": "ocikit_cli.commands.manifest:resolve_cmd",
    "tags": "ocikit_cli.commands.tags:tags_cmd",
    "wait": "ocikit_cli.commands.pull:wait_cmd",
    "ztoc": "ocikit_cli.commands.ztoc:ztoc",
    "get-file": "ocikit_cli.commands.get_file:get_file",
    "mount": "ocikit_cli.commands.mount:mount_cmd",
    "similarity": "ocikit_cli.commands.similarity:similarity_cmd",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (click docs, "LazyGroup")."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, attribute = self.lazy[name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
        else:
            command = super().get_command(ctx, name)
        if command is None:
            return None
        return add_examples(apply_global_options(command), name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ocikit")
@group_options
@click.pass_context
def cli(ctx: click.Context, **flags: Any) -> None:
    """Move large HPC software stacks (spack views) through OCI registries.

    References are registry names (HOST/REPO[:TAG][@DIGEST], docker.io by default)
    or OCI image layouts on disk (oci:PATH[:TAG|@DIGEST]). Global options may come
    before or after the command; `ocikit COMMAND --help` lists them with examples.
    """
    remember_group_flags(ctx, flags)


# click >= 8.2 raises this (a UsageError) for a group called without a command.
_NO_ARGS_IS_HELP: type[click.ClickException] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_Never", (click.ClickException,), {})
)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and map errors to exit codes."""
    try:
        cli.main(args=argv, prog_name="ocikit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ocikit: aborted", err=True)
        sys.exit(130)
    except _NO_ARGS_IS_HELP as exc:  # a bare `ocikit` or group: the help itself, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, as the README promises, naming where help is
        where = exc.ctx.command_path if exc.ctx else "ocikit"
        _fail(f"ocikit: error: {exc.format_message()} (see '{where} --help')", exc.exit_code, None)
    except click.ClickException as exc:
        _fail(f"ocikit: error: {exc.format_message()}", exc.exit_code, None)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OcikitError as exc:
        _fail(f"ocikit: error: {exc}", exit_code_for(exc), exc)
    except KeyboardInterrupt:
        _fail("ocikit: interrupted", 130, None)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:  # a bug: still one line, details with OCIKIT_DEBUG=1
        _fail(f"ocikit: internal error: {type(exc).__name__}: {exc}", 70, exc)
    sys.exit(0)


def _fail(message: str, code: int, exc: BaseException | None) -> None:
    if exc is not None and os.environ.get("OCIKIT_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    click.echo(message.splitlines()[0] if message else "ocikit: error", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
