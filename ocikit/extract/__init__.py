"""Safe, streaming extraction of layer blobs (tar, tar+gzip, tar+zstd) into a directory.

* :mod:`.rules` — every rule an untrusted entry or layer is held to (also by zTOC paths and mounts).
* :mod:`.decompress` — a producer thread: decompress, verify digests, guard the size.
* :mod:`.safe_tar` — the extraction rules (no escape, no devices, no set-id bits …).
* :mod:`.writer` — a pool of threads creating files while the parser reads on.
* :mod:`.whiteout` — container-image layers: whiteouts, opaque directories, ordered merge.
* :mod:`.layers` — extract all layers of an artifact, in parallel.
* :mod:`.dirwalk` — iterative post-order walks over descriptors (tree removal at any depth).
"""

from ..formats.tar.reader import TarStream
from .decompress import LayerStream, SizeBudget
from .safe_tar import ExtractPolicy, LayerOutcome, SafeExtractor, apply_directory_records

__all__ = [
    "ExtractPolicy",
    "LayerOutcome",
    "LayerStream",
    "SafeExtractor",
    "SizeBudget",
    "TarStream",
    "apply_directory_records",
]
