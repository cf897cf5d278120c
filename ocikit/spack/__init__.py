"""Spack views: scanning a view and mapping its files to packages, planning layers, and the
view artifact's config and relocation record."""
