"""Parsing human sizes and durations for command options (``20G``, ``500MiB``, ``7d``)."""

from __future__ import annotations

import re

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
