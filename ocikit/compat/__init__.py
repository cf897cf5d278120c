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
``cuda``            which NVIDIA driver runs which CUDA runtime
``microarch``       CPU feature sets of x86_64 / aarch64 microarchitectures (spack targets)
``spack``           facts from ``.spack/*/spec.json``: packages, providers, target
``scan``            walk a directory → :class:`~ocikit.compat.report.ScanReport`
``report``          the report and its facts (with provenance), supercontainers labels
``analysis``        raw scan data → facts and requirements (required vs advisory)
``requirements``    the :class:`~ocikit.compat.requirements.Requirement` record
``host``            probe the running host → :class:`~ocikit.compat.host.HostInfo`
``app_image``       the same facts of an application image (``--against``), from a few of its files
``check``           requirements × host → ok / missing / too-old, with reasons
``document``        the OCI image-compatibility spec body (WG proposal F shape)
``nfd``             the NFD image-compatibility spec, where requirements translate
``artifact``        attach / read the compatibility referrers
``labels``          ``ocikit label``: arbitrary key=value metadata as a referrer
``by_reference``    string-level entry points for the CLI (references, paths, saved reports)
==================  ==========================================================================

Nothing here is imported by ``import ocikit``; pyelftools and libmagic load on first use.
"""
