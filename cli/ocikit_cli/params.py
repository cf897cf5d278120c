"""Parsing option values shared by commands: sizes (``20G``), durations (``7d``), ``key=value`` pairs."""

from __future__ import annotations

import re
from typing import Any

import click

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(text: str) -> int:
    """``1048576``, ``512K``, ``20G``, ``1.5GiB``, ``10GB`` → bytes (binary multiples)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 500M, 20G)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_duration(text: str) -> float:
    """``3600``, ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 30m, 12h, 7d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_pairs(values: tuple[str, ...], option: str, separator: str = "=", require_value: bool = False) -> dict[str, str]:
    """``("a=1", "b=2")`` → ``{"a": "1", "b": "2"}``; a malformed item is a usage error naming ``option``."""
    pairs = {}
    for value in values:
        key, sep, text = value.partition(separator)
        if not sep or not key or (require_value and not text):
            raise click.BadParameter(f"expected KEY{separator}VALUE, got {value!r}", param_hint=option)
        pairs[key] = text
    return pairs


class ByteSize(click.ParamType):
    """A click type for sizes: an integer with an optional binary suffix (``4194304``, ``4M``, ``4MiB``)."""

    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


SIZE = ByteSize()


class OldNamesHidden(click.Option):
    """An option that still accepts its old spellings but shows only its current name in help.

    Renames keep scripts working: ``--cache`` became ``--cache-dir``, ``--label`` became
    ``-a/--annotation``. The old names are listed in docs/cli.md ("Deprecated spellings").
    """

    def __init__(self, *args: Any, old_names: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.old_names = old_names

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.old_names]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def renamed_option(*decls: str, old: tuple[str, ...], **attrs: Any) -> Any:
    """``click.option`` for a renamed option: ``old`` spellings keep working, hidden from help."""
    return click.option(*decls, *old, cls=OldNamesHidden, old_names=old, **attrs)


def annotation_option(help: str = "Manifest annotation (repeatable).", old: tuple[str, ...] = ()) -> Any:
    """``-a/--annotation KEY=VALUE``, the one spelling of annotations (as oras), parsed by :func:`parse_pairs`."""
    return renamed_option("-a", "--annotation", "annotations", old=old, multiple=True, metavar="KEY=VALUE", help=help)


def cache_dir_option(default: Any, shown_default: str | bool, help: str, old: tuple[str, ...] = ()) -> Any:
    """``--cache-dir DIR``, the one spelling of a command's cache directory (under $OCIKIT_CACHE_DIR)."""
    return renamed_option("--cache-dir", "cache_dir", old=old, type=click.Path(file_okay=False), default=default,
                          show_default=shown_default, metavar="DIR", help=help)


def platform_option(what: str = "Pick this platform's manifest when REFERENCE is an index",
                    default: str = "this host's") -> Any:
    """``--platform OS/ARCH[/VARIANT]``, the one spelling wherever a reference may name an index.

    ``default`` says what happens without it: commands that read an image pick this host's
    manifest; commands that act on the reference as given (copy, attach, discover) keep the index.
    """
    return click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]",
                        help=f"{what} [default: {default}].")
