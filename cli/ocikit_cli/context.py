"""State shared by all commands: connection options and output mode (built in globals.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from ocikit.options import Options
from ocikit.progress import NULL_PROGRESS, Progress


@dataclass
class CliContext:
    options: Options
    quiet: bool = False
    explicit: frozenset[str] = frozenset()  # global options the user set (typed or environment)

    def progress(self, json_output: bool = False) -> Progress:
        """A terminal progress bar on a TTY; silence in pipes, with --json or --quiet."""
        from .output import TerminalProgress

        if self.quiet or json_output or not sys.stderr.isatty():
            return NULL_PROGRESS
        return TerminalProgress()


pass_cli = click.make_pass_decorator(CliContext)
