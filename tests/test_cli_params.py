"""Option values shared by commands: sizes, durations and key=value pairs."""

import click
import pytest
from ocikit_cli.params import SIZE, parse_duration, parse_pairs, parse_size


@pytest.mark.parametrize(
    "text, expected",
    [("2GiB", 2 << 30), ("512M", 512 << 20), ("1048576", 1 << 20), ("1.5k", 1536), ("20G", 20 << 30), ("4MB", 4 << 20)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected
    assert SIZE.convert(text, None, None) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1G", "2 XB"])
def test_bad_sizes_are_usage_errors(text):
    with pytest.raises(click.BadParameter):
        parse_size(text)


@pytest.mark.parametrize("text, expected", [("3600", 3600), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_pairs_keep_equals_in_values_and_name_the_option():
    assert parse_pairs(("a=b=c", "x="), "--label") == {"a": "b=c", "x": ""}
    with pytest.raises(click.BadParameter) as info:
        parse_pairs(("novalue",), "--label")
    assert "KEY=VALUE" in info.value.message
    with pytest.raises(click.BadParameter):
        parse_pairs(("/old=",), "--map", require_value=True)
