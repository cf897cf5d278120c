"""The OCI data model: media types, descriptors, manifests and indexes."""

from . import mediatypes
from .descriptor import EMPTY_DESCRIPTOR, Descriptor, Platform
from .manifest import ParsedManifest, build_index, build_manifest, canonical_json, parse_manifest, select_platform

__all__ = [
    "EMPTY_DESCRIPTOR",
    "Descriptor",
    "ParsedManifest",
    "Platform",
    "build_index",
    "build_manifest",
    "canonical_json",
    "mediatypes",
    "parse_manifest",
    "select_platform",
]
