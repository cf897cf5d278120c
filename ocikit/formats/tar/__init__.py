"""Tar: :mod:`.reader` (the one reader of tar headers, for extraction and zTOCs) and
:mod:`.writer` (the deterministic writer push uses)."""
