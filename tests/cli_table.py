"""The flags table of docs/cli.md, generated from the commands themselves.

``python tests/cli_table.py`` prints it; tests/test_cli_docs.py fails when docs/cli.md differs.
Global options are left out (every command has them); old spellings (hidden) too.
"""

from __future__ import annotations

import os
import sys

import click

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))

from ocikit_cli.globals import GLOBAL_NAMES  # noqa: E402
from ocikit_cli.main import COMMANDS, cli  # noqa: E402
from ocikit_cli.params import OldNamesHidden  # noqa: E402


def leaf_commands() -> list[tuple[str, click.Command]]:
    context = click.Context(cli)
    found: list[tuple[str, click.Command]] = []

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                if sub is not None:
                    walk(sub, f"{path} {name}")
        else:
            found.append((path, command))

    for name in sorted(COMMANDS):
        command = cli.get_command(context, name)
        if command is not None:
            walk(command, name)
    return found


def spelling(param: click.Option) -> str:
    old = param.old_names if isinstance(param, OldNamesHidden) else ()
    names = [o for o in param.opts if o not in old] + list(param.secondary_opts)
    return "/".join(names)


def flags_table() -> str:
    lines = ["| command | arguments | options (besides the global ones) |", "|---|---|---|"]
    for path, command in leaf_commands():
        arguments = " ".join(str(p.human_readable_name) for p in command.params if isinstance(p, click.Argument))
        options = [
            f"`{spelling(p)}`"
            for p in command.params
            if isinstance(p, click.Option) and p.name not in GLOBAL_NAMES and not p.hidden
        ]
        lines.append(f"| `{path}` | {arguments} | {', '.join(options)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(flags_table())
