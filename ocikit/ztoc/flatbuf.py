"""A minimal FlatBuffers builder and reader that reproduce Go's builder byte for byte.

SOCI serializes a zTOC with ``github.com/google/flatbuffers/go`` and consumers compare
zTOCs by digest, so ocikit must emit *the same bytes*, not merely an equivalent buffer.
The layout of a FlatBuffer depends on the builder's call order, its alignment rule
(``Prep``) and its vtable de-duplication; this module follows the Go builder's rules:

* the buffer grows from the back; ``offset`` counts bytes written so far;
* ``prep(size, extra)`` pads with zeros so that after writing ``extra`` more bytes the
  next ``size``-byte value is aligned, and remembers the largest alignment (``minalign``);
* a table's vtable is the list of its field offsets with trailing absent fields trimmed;
  an existing vtable is reused when its field offsets match (Go compares field offsets
  only, not the recorded object size, so neither do we);
* ``finish`` aligns to ``minalign`` and writes the root offset (no file identifier).

Instead of Go's byte slice the builder keeps a list of chunks written back to front and
joins them once at the end: appending is cheap and nothing is ever moved. The vtable
offset of a table is known when the table ends, so no chunk needs patching later.

The reader side (:class:`Table`) is bounds-checked: a truncated or corrupted buffer
raises :class:`~ocikit.errors.InvalidContentError` instead of returning garbage.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from operator import itemgetter

from ..errors import InvalidContentError

_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_ZEROS = bytes(8)

Field = tuple[int, "struct.Struct | None"]  # (size, packer); no packer = an offset field
OFFSET: Field = (4, None)
INT64: Field = (8, _I64)
INT32: Field = (4, _I32)
UINT32: Field = (4, _U32)
INT8: Field = (1, struct.Struct("<b"))


class Builder:
    """Back-to-front FlatBuffers builder with the Go implementation's layout rules."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.offset = 0  # bytes written so far (Go: len(Bytes) - head)
        self._minalign = 1
        self._fields: list[int] = []  # slot -> offset of the field (0 = absent)
        self._object_end = 0
        self._vtables: dict[tuple[int, ...], int] = {}

    # -- low level ---------------------------------------------------------------------
    # Each method appends one chunk in memory order; padding added by ``prep`` sits after
    # the value in memory because the buffer grows towards lower addresses.

    def _put(self, data: bytes) -> None:
        self._parts.append(data)
        self.offset += len(data)

    def _pad(self, size: int, additional: int) -> int:
        if size > self._minalign:
            self._minalign = size
        return (-(self.offset + additional)) & (size - 1)

    def prep(self, size: int, additional: int) -> None:
        pad = self._pad(size, additional)
        if pad:
            self._put(bytes(pad))

    def prepend_uoffset(self, target: int) -> None:
        pad = self._pad(4, 0)
        self._put(_U32.pack(self.offset + pad - target + 4) + _ZEROS[:pad])

    # -- strings and vectors -----------------------------------------------------------

    def create_string(self, text: "str | bytes") -> int:
        data = text.encode() if isinstance(text, str) else text
        n = len(data)
        pad = self._pad(4, n + 1)
        self._parts.append(_U32.pack(n) + data + _ZEROS[: pad + 1])
        self.offset += 5 + n + pad
        return self.offset

    def create_strings(self, texts: Sequence[bytes]) -> list[int]:
        """Several ``create_string`` calls in a row, appended as one chunk (same bytes)."""
        offset, pieces, result = self.offset, [], []
        for data in texts:
            n = len(data)
            pad = (-(offset + n + 1)) & 3
            pieces.append(_U32.pack(n) + data + _ZEROS[: pad + 1])
            offset += 5 + n + pad
            result.append(offset)
        pieces.reverse()
        self._parts.append(b"".join(pieces))
        self.offset = offset
        if self._minalign < 4:
            self._minalign = 4
        return result

    def create_byte_vector(self, data: bytes) -> int:
        self.prep(4, len(data))
        self._put(_U32.pack(len(data)) + data)
        return self.offset

    def create_offset_vector(self, offsets: Sequence[int]) -> int:
        """A vector of table/string offsets, in the given order (Go prepends in reverse)."""
        self.prep(4, 4 * len(offsets))
        base, n = self.offset, len(offsets)
        # element i sits at base + 4*(n - i) after writing; its value is that minus the target
        values = [base + 4 * (n - i) - target for i, target in enumerate(offsets)]
        self._put(struct.pack(f"<{n + 1}I", n, *values))
        return self.offset

    # -- tables ------------------------------------------------------------------------

    def start_table(self, num_fields: int) -> None:
        self._fields = [0] * num_fields
        self._object_end = self.offset

    def _scalar(self, slot: int, packed: bytes, size: int) -> None:
        pad = self._pad(size, 0)
        self._parts.append(packed + _ZEROS[:pad])
        self.offset += size + pad
        self._fields[slot] = self.offset

    def add_int64(self, slot: int, value: int, default: int = 0) -> None:
        if value != default:
            self._scalar(slot, _I64.pack(value), 8)

    def add_int32(self, slot: int, value: int, default: int = 0) -> None:
        if value != default:
            self._scalar(slot, _I32.pack(value), 4)

    def add_uint32(self, slot: int, value: int, default: int = 0) -> None:
        if value != default:
            self._scalar(slot, _U32.pack(value), 4)

    def add_int8(self, slot: int, value: int, default: int = 0) -> None:
        if value != default:
            self._scalar(slot, struct.pack("<b", value), 1)

    def add_offset(self, slot: int, target: int) -> None:
        if target:
            self.prepend_uoffset(target)
            self._fields[slot] = self.offset

    def end_table(self) -> int:
        pad = self._pad(4, 0)
        object_offset = self.offset + pad + 4  # where the soffset to the vtable will sit
        fields = self._fields
        last = len(fields)
        while last and not fields[last - 1]:
            last -= 1
        relative = tuple([object_offset - f if f else 0 for f in fields[:last]])
        existing = self._vtables.get(relative)
        if existing is not None:
            self._parts.append(_I32.pack(existing - object_offset) + _ZEROS[:pad])
            self.offset = object_offset
            return object_offset
        vtable_size = 2 * (last + 2)
        # the vtable is written right before the object: soffset = its size
        vtable = struct.pack(f"<{last + 2}H", vtable_size, object_offset - self._object_end, *relative)
        self._parts.append(vtable + _I32.pack(vtable_size) + _ZEROS[:pad])
        self.offset = object_offset + vtable_size
        self._vtables[relative] = self.offset
        return object_offset

    def table(self, num_fields: int, fields: Sequence[tuple[int, "Field", int]]) -> int:
        """A whole table in one call: ``(slot, kind, value)`` in the order Go adds them.

        ``kind`` is one of :data:`OFFSET`, :data:`INT64`, :data:`INT32`, :data:`UINT32`,
        :data:`INT8`; zero values (and 0 offsets) are omitted, as Go omits defaults (use the
        ``add_*`` methods for other defaults). Same bytes as start_table/add_*/end_table,
        in one pass (this is the hot loop of serializing 60 000 TOC entries).
        """
        self._object_end = offset = self.offset
        slots = [0] * num_fields
        pieces = []
        minalign = self._minalign
        for slot, (size, packer), value in fields:
            if not value:
                continue
            pad = -offset & (size - 1)
            packed = _U32.pack(offset + pad - value + 4) if packer is None else packer.pack(value)
            pieces.append(packed + _ZEROS[:pad] if pad else packed)
            offset += size + pad
            slots[slot] = offset
            if size > minalign:
                minalign = size
        self._minalign = minalign
        pieces.reverse()
        self._parts.append(b"".join(pieces))
        self.offset = offset
        self._fields = slots
        return self.end_table()

    def finish(self, root: int) -> bytes:
        self.prep(self._minalign, 4)
        self.prepend_uoffset(root)
        return b"".join(reversed(self._parts))


_CODES = {OFFSET: "I", INT64: "q", INT32: "i", UINT32: "I", INT8: "b"}


class _Layout:
    """How to read every slot of the tables that share one vtable: one ``struct`` for all of them.

    ``unpack`` reads the present fields in memory order from the table's start; ``pick`` puts
    them in slot order (absent slots read the 0 appended after them); ``fields`` is each
    slot's position relative to the table (0 = absent).
    """

    __slots__ = ("unpack", "pick", "fields")

    def __init__(self, buf: bytes, vtable: int, kinds: Sequence[Field]) -> None:
        if vtable < 0 or vtable + 4 > len(buf):
            raise InvalidContentError("corrupted FlatBuffer: invalid vtable")
        vlen = _U16.unpack_from(buf, vtable)[0]
        if vlen < 4 or vlen % 2 or vtable + vlen > len(buf):
            raise InvalidContentError("corrupted FlatBuffer: invalid vtable")
        present = min(len(kinds), (vlen - 4) // 2)
        relative = struct.unpack_from(f"<{present}H", buf, vtable + 4) + (0,) * (len(kinds) - present)
        order = sorted((rel, slot) for slot, rel in enumerate(relative) if rel)
        fmt, end, index = "<", 0, [len(order)] * len(kinds)
        for i, (rel, slot) in enumerate(order):
            if rel < end:
                raise InvalidContentError("corrupted FlatBuffer: overlapping table fields")
            fmt += "x" * (rel - end) + _CODES[kinds[slot]]
            end = rel + kinds[slot][0]
            index[slot] = i
        self.unpack = struct.Struct(fmt).unpack_from
        self.pick = itemgetter(*index) if len(index) > 1 else lambda values: (values[index[0]],)
        self.fields = relative


def table_rows(table: "Table", slot: int, kinds: Sequence[Field]) -> Iterator[tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """Every table of the vector in ``slot`` as ``(position, values, fields)``, values in slot order.

    ``kinds`` gives each slot's type. A scalar slot's value is the number (0 when absent); an
    offset slot's value is the stored offset, so its target is ``position + fields[s] + values[s]``
    when the value is not 0 (:func:`string_at_target`). This is :class:`Table`'s reading with the
    work done once per distinct vtable instead of once per field: zTOCs hold 60 000 such tables
    sharing a handful of vtables. Bounds are checked as :class:`Table` checks them (struct.error
    for a table running past the end).
    """
    buf = table.buf
    assert isinstance(buf, bytes)
    start, length = table._element(slot)
    layouts: dict[int, _Layout] = {}
    u32, i32 = _U32.unpack_from, _I32.unpack_from
    zero = (0,)
    for at in range(start, start + 4 * length, 4):
        pos = at + u32(buf, at)[0]
        vtable = pos - i32(buf, pos)[0]
        layout = layouts.get(vtable)
        if layout is None:
            layout = layouts[vtable] = _Layout(buf, vtable, kinds)
        yield pos, layout.pick(layout.unpack(buf, pos) + zero), layout.fields


def string_at_target(buf: bytes, target: int) -> bytes:
    """The string or byte vector that starts at ``target`` (its length prefix)."""
    length = _U32.unpack_from(buf, target)[0]
    data = buf[target + 4 : target + 4 + length]
    if len(data) != length:
        raise InvalidContentError("corrupted FlatBuffer: vector runs past the end")
    return data


def tables_at(buf: bytes, vector: int) -> list["Table"]:
    """The tables of the vector that starts at ``vector`` (its length prefix)."""
    length = _U32.unpack_from(buf, vector)[0]
    if vector + 4 + 4 * length > len(buf):
        raise InvalidContentError("corrupted FlatBuffer: vector runs past the end")
    return [Table(buf, at + _U32.unpack_from(buf, at)[0]) for at in range(vector + 4, vector + 4 + 4 * length, 4)]


class Table:
    """Read access to one table of a finished buffer (no schema; slots by number)."""

    __slots__ = ("buf", "pos", "_vtable", "_vlen")

    def __init__(self, buf: "bytes | memoryview", pos: int) -> None:
        self.buf = buf
        self.pos = pos
        try:
            self._vtable = pos - _I32.unpack_from(buf, pos)[0]
            self._vlen = _U16.unpack_from(buf, self._vtable)[0]
        except struct.error:
            raise InvalidContentError("corrupted FlatBuffer: table outside the buffer") from None
        if self._vtable < 0 or self._vlen < 4 or self._vlen % 2 or self._vtable + self._vlen > len(buf):
            raise InvalidContentError("corrupted FlatBuffer: invalid vtable")

    @classmethod
    def root(cls, buf: "bytes | memoryview") -> "Table":
        if len(buf) < 8:
            raise InvalidContentError("corrupted FlatBuffer: too short")
        return cls(buf, _U32.unpack_from(buf, 0)[0])

    def positions(self, count: int) -> list[int]:
        """Absolute positions of slots ``0..count-1`` (0 = absent), read in one go."""
        present = min(count, (self._vlen - 4) // 2)
        relative = struct.unpack_from(f"<{present}H", self.buf, self._vtable + 4) if present else ()
        pos = self.pos
        return [pos + r if r else 0 for r in relative] + [0] * (count - present)

    def _field(self, slot: int) -> int:
        entry = 4 + 2 * slot
        if entry >= self._vlen:
            return 0
        rel = _U16.unpack_from(self.buf, self._vtable + entry)[0]
        return self.pos + rel if rel else 0

    def _scalar(self, slot: int, fmt: struct.Struct, default: int) -> int:
        at = self._field(slot)
        if not at:
            return default
        try:
            return int(fmt.unpack_from(self.buf, at)[0])
        except struct.error:
            raise InvalidContentError("corrupted FlatBuffer: field outside the buffer") from None

    def int64(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _I64, default)

    def int32(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _I32, default)

    def uint32(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _U32, default)

    def int8(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, struct.Struct("<b"), default)

    def _indirect(self, at: int) -> int:
        try:
            target = at + _U32.unpack_from(self.buf, at)[0]
        except struct.error:
            raise InvalidContentError("corrupted FlatBuffer: offset outside the buffer") from None
        if target >= len(self.buf):
            raise InvalidContentError("corrupted FlatBuffer: offset outside the buffer")
        return target

    def _vector_at(self, at: int) -> tuple[int, int]:
        start = self._indirect(at)
        length = _U32.unpack_from(self.buf, start)[0]
        return start + 4, length

    def bytes_(self, slot: int) -> bytes:
        """A string or ``[ubyte]`` field ('' / b'' when absent)."""
        at = self._field(slot)
        if not at:
            return b""
        start, length = self._vector_at(at)
        if start + length > len(self.buf):
            raise InvalidContentError("corrupted FlatBuffer: vector runs past the end")
        return bytes(self.buf[start : start + length])

    def string(self, slot: int) -> str:
        try:
            return self.bytes_(slot).decode()
        except UnicodeDecodeError:
            raise InvalidContentError("corrupted FlatBuffer: string is not UTF-8") from None

    def table(self, slot: int) -> "Table | None":
        at = self._field(slot)
        return Table(self.buf, self._indirect(at)) if at else None

    def vector_length(self, slot: int) -> int:
        at = self._field(slot)
        return self._vector_at(at)[1] if at else 0

    def _element(self, slot: int) -> tuple[int, int]:
        at = self._field(slot)
        if not at:
            return 0, 0
        start, length = self._vector_at(at)
        if start + 4 * length > len(self.buf):
            raise InvalidContentError("corrupted FlatBuffer: vector runs past the end")
        return start, length

    def tables(self, slot: int) -> list["Table"]:
        start, length = self._element(slot)
        return [Table(self.buf, self._indirect(start + 4 * i)) for i in range(length)]

    def strings(self, slot: int) -> list[str]:
        start, length = self._element(slot)
        out = []
        for i in range(length):
            s = self._indirect(start + 4 * i)
            n = _U32.unpack_from(self.buf, s)[0]
            if s + 4 + n > len(self.buf):
                raise InvalidContentError("corrupted FlatBuffer: string runs past the end")
            try:
                out.append(bytes(self.buf[s + 4 : s + 4 + n]).decode())
            except UnicodeDecodeError:
                raise InvalidContentError("corrupted FlatBuffer: string is not UTF-8") from None
        return out
