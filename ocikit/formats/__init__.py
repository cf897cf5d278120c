"""Byte formats, each read and written in one place: :mod:`.tar` (the one tar reader and the
deterministic writer), :mod:`.compression` (the one sniffer and the decompressors), and
:mod:`.zstd_seekable` (zstd frames and the seekable-format seek table)."""
