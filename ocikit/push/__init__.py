"""Pushing trees as artifacts: :func:`~ocikit.push.api.push_view` and the packing pipeline below it
(framed compression, the streaming pipeline, the push digest cache; see each module's docstring)."""
