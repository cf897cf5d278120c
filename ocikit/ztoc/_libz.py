"""ctypes binding to the system zlib (``libz.so.1``): the calls CPython's ``zlib`` lacks.

A SOCI checkpoint must sit on a deflate block boundary and record how many bits of the
previous byte belong to the next block; reading from it needs ``inflatePrime`` and
``inflateSetDictionary`` on a raw stream. CPython's :mod:`zlib` exposes none of
``inflate(Z_BLOCK)``, ``strm.data_type``, ``inflatePrime`` or ``inflateReset2``. Calling
libz through ctypes costs one foreign call per deflate block (tens of kilobytes of
output), the decompression itself runs at zlib's native speed, and ctypes releases the
GIL during each call. No compiler and no extra package is needed: every Linux host that
runs Python has ``libz.so.1``. (Measured against the alternatives in docs/ztoc.md.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from ..errors import InvalidContentError, UnsupportedError

Z_OK, Z_STREAM_END, Z_NEED_DICT, Z_BUF_ERROR = 0, 1, 2, -5
Z_NO_FLUSH, Z_BLOCK = 0, 5
WINDOW_SIZE = 32768
GZIP_AUTO_WBITS = 47  # 32 (auto zlib/gzip header) + 15
RAW_WBITS = -15


class ZStream(ctypes.Structure):
    """``z_stream`` from zlib.h (LP64 layout; ctypes applies the platform's alignment)."""

    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


_lib: Any = None


def libz() -> Any:
    """The loaded library with prototypes set (loaded once; UnsupportedError if absent)."""
    global _lib
    if _lib is not None:
        return _lib
    name = "libz.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        found = ctypes.util.find_library("z")
        if not found:
            raise UnsupportedError("the zlib shared library (libz.so.1) is not installed") from None
        lib = ctypes.CDLL(found)
    stream = ctypes.POINTER(ZStream)
    lib.zlibVersion.restype = ctypes.c_char_p
    lib.inflateInit2_.argtypes = [stream, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.inflate.argtypes = [stream, ctypes.c_int]
    lib.inflateEnd.argtypes = [stream]
    lib.inflateReset2.argtypes = [stream, ctypes.c_int]
    lib.inflatePrime.argtypes = [stream, ctypes.c_int, ctypes.c_int]
    lib.inflateSetDictionary.argtypes = [stream, ctypes.c_char_p, ctypes.c_uint]
    for fn in (lib.inflateInit2_, lib.inflate, lib.inflateEnd, lib.inflateReset2, lib.inflatePrime,
               lib.inflateSetDictionary):
        fn.restype = ctypes.c_int
    _lib = lib
    return lib


class Inflater:
    """One zlib inflate stream. Use as a context manager so ``inflateEnd`` always runs."""

    def __init__(self, wbits: int) -> None:
        self.lib = libz()
        self.stream = ZStream()
        self.ptr = ctypes.pointer(self.stream)
        ret = self.lib.inflateInit2_(self.ptr, wbits, self.lib.zlibVersion(), ctypes.sizeof(ZStream))
        if ret != Z_OK:
            raise UnsupportedError(f"zlib inflateInit2 failed ({ret})")
        self._open = True

    def inflate(self, flush: int) -> int:
        ret = self.lib.inflate(self.ptr, flush)
        if ret in (Z_OK, Z_STREAM_END) or (ret == Z_BUF_ERROR and not self.stream.avail_in):
            return int(ret)
        message = self.stream.msg.decode(errors="replace") if self.stream.msg else f"zlib error {ret}"
        raise InvalidContentError(f"corrupt deflate data: {message}")

    def reset(self, wbits: int) -> None:
        if self.lib.inflateReset2(self.ptr, wbits) != Z_OK:
            raise InvalidContentError("zlib inflateReset2 failed")

    def prime(self, bits: int, value: int) -> None:
        if self.lib.inflatePrime(self.ptr, bits, value) != Z_OK:
            raise InvalidContentError("zlib inflatePrime failed")

    def set_dictionary(self, window: bytes) -> None:
        if self.lib.inflateSetDictionary(self.ptr, window, len(window)) != Z_OK:
            raise InvalidContentError("zlib inflateSetDictionary failed")

    def close(self) -> None:
        if self._open:
            self.lib.inflateEnd(self.ptr)
            self._open = False

    def __enter__(self) -> "Inflater":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

