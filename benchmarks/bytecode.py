"""Compile ocikit's modules to bytecode before anything is timed.

A benchmark times ``ocikit`` as installed: ``pip install`` writes every module's ``.pyc``, and
an editable install writes them on first import. With ``PYTHONDONTWRITEBYTECODE=1`` in the
environment (as on the shared CI machines) nothing is ever written, so every timed run would
compile ocikit and its CLI from source again: measured ~0.1 CPU-s of each ``ocikit pull``
(py-spy: ``source_to_code`` 107 of 400 start-up samples). ``compileall`` writes the caches
whatever that variable says; the timed processes only read them.
"""

from __future__ import annotations

import compileall
import os

import ocikit_cli

import ocikit


def compile_ocikit() -> None:
    """Write the ``__pycache__`` of the ocikit library and CLI packages (quietly, only what is stale)."""
    for package in (ocikit, ocikit_cli):
        compileall.compile_dir(os.path.dirname(package.__file__ or ""), quiet=1)
