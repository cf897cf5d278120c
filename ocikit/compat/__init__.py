"""Compatibility metadata: what a spack view needs from the host, recorded and checked.

A view built against glibc 2.36 and Open MPI dies on a glibc 2.28 / MPICH node with
``version 'GLIBC_2.34' not found`` — after the whole view was pulled. This package finds
that out first:

==================  ==========================================================================
module              role
==================  ==========================================================================
``filetype``        classify files from their first bytes (libmagic only for unknown binaries)
``elf``             read ELF headers, dynamic section and version needs (pyelftools)
``libraries``       what well-known sonames mean (MPI flavours, GPU stacks, fabrics, glibc)
``spack``           facts from ``.spack/*/spec.json``: packages, providers, target
``microarch``       CPU feature sets of x86_64 / aarch64 microarchitectures (spack targets)
``scan``            walk a directory → :class:`~ocikit.compat.report.ScanReport`
``report``          the report, its facts (with provenance) and supercontainers labels
``requirements``    requirements derived from a report or read back from an artifact
``host``            probe the running host → :class:`~ocikit.compat.host.HostInfo`
``check``           requirements × host → ok / missing / too-old, with reasons
``artifact``        attach / read the OCI image-compatibility (and NFD) referrers
``labels``          ``ocikit label``: arbitrary key=value metadata as a referrer
==================  ==========================================================================

Nothing here is imported by ``import ocikit``; pyelftools and libmagic load on first use.
"""
