"""zTOCs: seekable indexes for gzip, tar and zstd layers, and on-demand file fetch.

A zTOC is a layer's table of contents plus checkpoints (gzip), fixed spans (tar) or
frames (zstd) with a sha256 per compressed span, so one file can be read from a registry
with range requests for just the spans that hold it. gzip and tar zTOCs are SOCI's format
byte for byte and are attached as SOCI v1 indexes; zstd zTOCs are ocikit's extension.

Modules: ``build`` (one streaming pass), ``toc`` (tar scanner), ``gzip_index`` (zlib
checkpoints via ctypes), ``tar_zinfo``, ``zstd_frames``, ``flatbuf`` (Go-compatible
FlatBuffers), ``ztoc`` (model and encodings), ``soci`` (index manifests), ``fetch`` (range
reads), ``view`` (merged layer tree), ``extract`` (safe writing), ``api`` (the verbs).
Nothing is imported here so that ``import ocikit`` stays light.
"""
