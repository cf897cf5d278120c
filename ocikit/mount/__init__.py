"""``ocikit mount``: a lazy, verified, read-only FUSE mount of a view or image (docs/mount.md).

Light on purpose: ``import ocikit`` must not load libfuse. The pieces: :mod:`.tree` (what is
shown, under the pull's rules), :mod:`.spans` (verified span reads and the span cache),
:mod:`.fs` (the FUSE operations), :mod:`.serve` (prepare and serve in the foreground),
:mod:`.daemon` and :mod:`.api` (``ocikit.mount()`` and its handle), :mod:`.prefetch`,
:mod:`.relocated` (a view's recorded files, rewritten for the mount point).
"""
