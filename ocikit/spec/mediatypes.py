"""Media types, artifact types and annotation keys used across ocikit.

One place for every string that travels on the wire, so a typo cannot split the
code base into two dialects. Values follow image-spec v1.1, ORAS and SOCI.
"""

from __future__ import annotations

# image-spec v1.1
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

# Docker schema 2 (read and copied, never produced)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_OR_INDEX_TYPES = MANIFEST_TYPES | INDEX_TYPES

# Accept header for manifest GET/HEAD: OCI first, Docker for older images.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

# The empty descriptor's blob: "{}" (image-spec manifest.md, "Guidance for an Empty Descriptor").
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# ORAS
ORAS_UNKNOWN_ARTIFACT = "application/vnd.unknown.artifact.v1"
ORAS_UNKNOWN_CONFIG = "application/vnd.unknown.config.v1+json"

# ocikit's own types (JSON Schemas in schemas/, $id = media type)
OCIKIT_VIEW_ARTIFACT = "application/vnd.ocikit.view.v1"
OCIKIT_VIEW_CONFIG = "application/vnd.ocikit.view.config.v1+json"  # ocikit 0.1's config (read, not written)
OCIKIT_LABELS_ARTIFACT = "application/vnd.ocikit.labels.v1"
OCIKIT_LABELS_LAYER = "application/vnd.ocikit.labels.v1+json"
OCIKIT_ZSTD_TOC_ARTIFACT = "application/vnd.ocikit.ztoc.zstd.v1"
OCIKIT_ZSTD_TOC_LAYER = "application/vnd.ocikit.ztoc.zstd.v1+json"
OCIKIT_COMPAT_SCAN_REPORT = "application/vnd.ocikit.compat.scan-report.v1+json"
OCIKIT_COMPAT_HOST = "application/vnd.ocikit.compat.host.v1+json"
OCIKIT_COMPAT_CHECK_REPORT = "application/vnd.ocikit.compat.check-report.v1+json"

# OCI image-compatibility working group / NFD
IMAGE_COMPAT_ARTIFACT = "application/vnd.oci.image-compatibility.v1"
IMAGE_COMPAT_SPEC_LAYER = "application/vnd.oci.image-compatibility.spec.v1+json"
NFD_COMPAT_ARTIFACT = "application/vnd.nfd.image-compatibility.v1alpha1"
NFD_COMPAT_LAYER = "application/vnd.nfd.image-compatibility.spec.v1alpha1+yaml"

# SOCI
SOCI_INDEX_V1 = "application/vnd.amazon.soci.index.v1+json"
SOCI_INDEX_V2 = "application/vnd.amazon.soci.index.v2+json"
SOCI_ZTOC_BLOB = "application/octet-stream"
SOCI_PREFETCH = "application/vnd.amazon.soci.prefetch.v1+json"

# Annotations
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_DESCRIPTION = "org.opencontainers.image.description"
ORAS_ANNOTATION_UNPACK = "io.deis.oras.content.unpack"
ORAS_ANNOTATION_DIGEST = "io.deis.oras.content.digest"
SOCI_ANNOTATION_LAYER_MEDIATYPE = "com.amazon.soci.image-layer-mediaType"
SOCI_ANNOTATION_LAYER_DIGEST = "com.amazon.soci.image-layer-digest"
SOCI_ANNOTATION_SPAN_SIZE = "com.amazon.soci.span-size"
SOCI_ANNOTATION_DISABLE_XATTRS = "com.amazon.soci.disable-xattrs"
SOCI_ANNOTATION_BUILD_TOOL = "com.amazon.soci.build-tool-identifier"
SUPERCONTAINERS_MPI = "org.supercontainers.mpi"
SUPERCONTAINERS_GPU = "org.supercontainers.gpu"
SUPERCONTAINERS_GLIBC = "org.supercontainers.glibc"


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def layer_compression(media_type: str) -> str:
    """``"gzip"``, ``"zstd"`` or ``"none"`` for a layer media type (unknown types count as tar)."""
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip"):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    return "none"
