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
