"""Packing trees into layers: the deterministic tar writer, framed compression, the streaming
pipeline and the push digest cache (see each module's docstring)."""
