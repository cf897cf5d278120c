"""Manifest graphs between stores: :mod:`.copy` (a graph walk, referrers included) and
:mod:`.attach` (the one way ocikit attaches a referrer, and discovers them)."""
