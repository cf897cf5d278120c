"""The replacement rules on hand-written byte strings (expected bytes written out by hand)."""

from __future__ import annotations

import pytest

from ocikit.errors import InvalidContentError, RelocationError
from ocikit.relocate import relocate_bytes
from ocikit.relocate.binary import plan_binary_edits
from ocikit.relocate.edits import apply_edits
from ocikit.relocate.prefixes import PrefixMap
from ocikit.relocate.shebang import check_shebang
from ocikit.relocate.text import plan_text_edits


def text(data: bytes, old: str = "/opt/view", new: str = "/x", extra=None) -> bytes:
    prefixes = PrefixMap.build(old, new, extra)
    return apply_edits(data, plan_text_edits(data, prefixes))


@pytest.mark.parametrize(
    "before, after",
    [
        (b"prefix=/opt/view\nlibdir=/opt/view/lib\n", b"prefix=/x\nlibdir=/x/lib\n"),
        (b"CFLAGS=-I/opt/view/include -L/opt/view/lib", b"CFLAGS=-I/x/include -L/x/lib"),
        (b'"/opt/view/bin/tool"', b'"/x/bin/tool"'),
        (b"/home/u/opt/view/lib", b"/home/u/opt/view/lib"),  # another path that merely contains it
        (b"/srv/data-opt/view", b"/srv/data-opt/view"),
        (b"x/opt/view", b"x/x"),  # spack's rule: a word run not preceded by "/" is fine
        (b"file:///opt/view/share/doc", b"file:///x/share/doc"),  # ocikit's URL exception
        (b"http://host/opt/view", b"http://host/opt/view"),
        (b"/opt/view2/lib", b"/x2/lib"),  # no boundary required after the prefix, as in spack
    ],
)
def test_text_boundary_rule(before, after):
    assert text(before) == after


def test_text_prefers_the_longest_old_prefix():
    data = b"/opt/view/sub/a /opt/view/b"
    assert text(data, extra={"/opt/view/sub": "/y"}) == b"/y/a /x/b"


def test_text_can_grow():
    assert text(b"#!/opt/view/bin/sh\n", new="/a/much/longer/destination") == b"#!/a/much/longer/destination/bin/sh\n"


def test_utf16_text_is_rewritten_in_its_encoding():
    data = "\ufeffroot=/opt/view/lib\n".encode("utf-16-le")
    assert relocate_bytes(data, "notes.txt", "/opt/view", "/x") == "\ufeffroot=/x/lib\n".encode("utf-16-le")


def binary(data: bytes, old: str = "/opt/view", new: str = "/x", skip=()):
    prefixes = PrefixMap.build(old, new)
    edits, problems, cap = plan_binary_edits(data, prefixes, skip=skip)
    return apply_edits(data, edits), problems, cap


def test_binary_pads_with_leading_slashes():
    out, problems, cap = binary(b"\x00/opt/view/lib/libfoo.so\x00")
    assert out == b"\x00////////x/lib/libfoo.so\x00" and problems == [] and cap == 9


def test_binary_without_a_nearby_nul_is_padded():
    out, problems, _ = binary(b"\x00/opt/view/share/locale/and/more\x00")
    assert out == b"\x00////////x/share/locale/and/more\x00" and problems == []


def test_binary_short_tail_shrinking_by_more_than_seven_moves_the_string():
    # The old string is exactly the prefix: its last 7 bytes may be a merged string of their own,
    # so they stay in place and the new string gets its own terminator.
    out, problems, _ = binary(b"\x00/opt/view-long-name\x00", old="/opt/view-long-name")
    assert out == b"\x00/x\x00t/view-long-name\x00" and problems == []


def test_binary_short_tail_shrinking_by_seven_or_less_is_refused():
    _, problems, _ = binary(b"\x00/opt/view\x00")
    assert [(p.reason, p.room, p.needed) for p in problems] == [("shrink", 9, 2)]


def test_binary_short_tail_with_the_same_last_bytes_is_padded():
    out, problems, _ = binary(b"\x00/tmp/xx/common\x00", old="/tmp/xx/common", new="/yy/common")
    assert out == b"\x00/////yy/common\x00" and problems == []


def test_binary_cannot_grow():
    out, problems, cap = binary(b"\x00/opt/view/lib\x00", new="/opt/viewlonger")
    assert out == b"\x00/opt/view/lib\x00"
    assert [(p.reason, p.room, p.needed) for p in problems] == [("grow", 9, 15)]
    assert cap == 9


def test_binary_reclaims_padding_slashes_at_a_string_start():
    out, problems, cap = binary(b"\x00////opt/view/lib/libx.so\x00", new="/opt/viewXYZ")
    assert out == b"\x00/opt/viewXYZ/lib/libx.so\x00" and problems == [] and cap == 12


def test_binary_never_reclaims_slashes_after_a_colon():
    _, problems, cap = binary(b"\x00file:///opt/view/share/doc\x00", new="/opt/viewX")
    assert [p.reason for p in problems] == ["grow"] and cap == 9


def test_binary_skips_ranges_handled_elsewhere():
    data = b"\x00/opt/view/lib\x00/opt/view/bin/tool\x00"
    out, _, _ = binary(data, skip=[(1, 15)])
    assert out == b"\x00/opt/view/lib\x00////////x/bin/tool\x00"


def test_relocate_bytes_raises_with_room_and_fix():
    with pytest.raises(RelocationError) as caught:
        relocate_bytes(b"\x00/opt/view/lib/libfoo.so\x00", "lib/foo.bin", "/opt/view", "/much/longer/path")
    message = str(caught.value)
    assert "lib/foo.bin" in message and "17 bytes needed" in message and "9 available" in message
    assert "at most 9 characters" in message and "padded_length" in message
    assert caught.value.problems[0]["reason"] == "grow"


def test_relocate_bytes_leaves_unrelated_data_alone():
    data = b"nothing to see"
    assert relocate_bytes(data, "a.txt", "/opt/view", "/x") is data


@pytest.mark.parametrize("bad", ["relative/path", "/", "/opt/\x00view", ""])
def test_prefixes_must_be_absolute_paths(bad):
    with pytest.raises(InvalidContentError):
        PrefixMap.build(bad, "/x")


def test_prefixes_are_normalized():
    prefixes = PrefixMap.build("/opt//view/", "/x/")
    assert prefixes.old_root == "/opt/view" and prefixes.new_root == "/x"
    assert prefixes.map_path("///opt/view//lib") == "/x/lib"
    assert prefixes.map_path("/opt/viewer/lib") is None


@pytest.mark.parametrize(
    "line, limit",
    [(b"#!/bin/sh", None), (b"#!/" + b"a" * 124, None), (b"#!/" + b"a" * 125, 127), (b"#!/" + b"a" * 253, 255)],
)
def test_shebang_limits(line, limit):
    found = check_shebang(line + b"\necho\n", "s")
    assert (found.limit if found else None) == limit
    if found:
        assert found.length == len(line)
