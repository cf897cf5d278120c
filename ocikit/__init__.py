"""ocikit: move large HPC software stacks (spack views) through OCI registries.

The library never prints and never imports click. Long operations report progress
through callbacks and raise the typed errors of :mod:`ocikit.errors`.
"""

from __future__ import annotations

import logging

from .errors import OcikitError
from .reference import LayoutReference, RegistryReference, parse_reference
from .spec import Descriptor, Platform

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Descriptor",
    "LayoutReference",
    "OcikitError",
    "Platform",
    "RegistryReference",
    "__version__",
    "parse_reference",
]
