"""Relocation: make a tree built at one prefix work at another.

A spack view bakes its root into scripts, ``.pc`` and cmake files, ELF search paths and
strings inside binaries. :func:`relocate_tree` rewrites all of them for a new location:
text at any length, ELF RPATH/RUNPATH as ``$ORIGIN``-relative or absolute entries in place,
other binary strings at the same length, absolute symlinks — after planning every file and
refusing, before writing anything, when something cannot fit. See ``docs/relocation.md``.
"""

from __future__ import annotations

from .elf import make_rpaths_relative
from .filekind import FileKind, classify
from .plan import relocate_bytes
from .tree import RelocationReport, relocate_tree

__all__ = ["FileKind", "RelocationReport", "classify", "make_rpaths_relative", "relocate_bytes", "relocate_tree"]
