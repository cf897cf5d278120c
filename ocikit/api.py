"""String-level facade: one function per basic verb, references as users type them.

These are what the CLI commands call and what a notebook or CSI driver uses first;
each opens the stores it needs with :func:`ocikit.content.open.open_store` and calls the
store-level operation (``ocikit.graph.copy``, ``ocikit.graph.attach``). Feature verbs
(``push_view``, ``pull``, ``build_ztocs``, ``scan``, ``similarity``…) live in their own
modules and are exported from :mod:`ocikit` the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .content.base import Store, SupportsTagList, fetch_manifest, platform_manifest
from .content.open import open_store
from .errors import InvalidReferenceError, UnsupportedError
from .graph import attach as artifacts
from .graph import copy as transfer
from .options import DEFAULT_OPTIONS, Options
from .progress import NULL_PROGRESS, Progress
from .reference import Reference
from .spec.descriptor import Descriptor, Platform
from .spec.manifest import ParsedManifest


def resolve(reference: str, *, options: Options = DEFAULT_OPTIONS) -> Descriptor:
    """The manifest descriptor a reference points at (a HEAD request on registries)."""
    store, ref = open_store(reference, options, create=False)
    return store.resolve(ref.reference)


def get_manifest(
    reference: str, *, platform: "Platform | str | None" = None, options: Options = DEFAULT_OPTIONS
) -> ParsedManifest:
    """Fetch a manifest or index; with ``platform``, an index is resolved to that platform's manifest."""
    store, _, desc = _subject(reference, platform, options)
    return fetch_manifest(store, desc)


def list_tags(repository: str, *, options: Options = DEFAULT_OPTIONS) -> list[str]:
    """Tags of a repository (``host/repo``) or an OCI layout (``oci:PATH``)."""
    store, ref = open_store(repository, options, create=False)
    if ref.tag or ref.digest:
        raise InvalidReferenceError(f"{repository!r}: name a repository, without tag or digest")
    if not isinstance(store, SupportsTagList):
        raise UnsupportedError(f"{store.describe()} cannot list tags")
    return store.tags()


def copy(
    source: str,
    destination: str,
    *,
    referrers: bool = False,
    platform: "Platform | str | None" = None,
    options: Options = DEFAULT_OPTIONS,
    progress: Progress = NULL_PROGRESS,
) -> transfer.CopyResult:
    """Copy an image, index or artifact (and with ``referrers`` its referrer graph).

    With ``platform`` only that platform's manifest of an index is copied. The destination
    tag is the destination reference's tag, else the source's tag.
    """
    src, src_ref, root = _subject(source, platform, options)  # first: a bad source or platform creates nothing
    dst, dst_ref = open_store(destination, options)
    tag = _destination_tag(src_ref, dst_ref)
    return transfer.copy(
        src, root, dst, tag, referrers=referrers, concurrency=options.concurrency, progress=progress
    )


def _destination_tag(src: Reference, dst: Reference) -> str:
    if dst.tag or dst.digest:
        return dst.tag
    return src.push_tag  # the source's tag; latest when it has none; none when pinned by digest


def attach(
    reference: str,
    artifact_type: str,
    files: Iterable[str] = (),
    annotations: Mapping[str, str] | None = None,
    *,
    platform: "Platform | str | None" = None,
    options: Options = DEFAULT_OPTIONS,
) -> Descriptor:
    """Attach files as a referrer of ``reference`` (``oras attach``); returns the referrer.

    With ``platform`` the subject is that platform's manifest of an index.
    """
    store, _, subject = _subject(reference, platform, options)
    return artifacts.attach(store, subject, artifact_type, files, annotations)


def discover(
    reference: str,
    artifact_type: str = "",
    *,
    platform: "Platform | str | None" = None,
    options: Options = DEFAULT_OPTIONS,
) -> tuple[Descriptor, list[artifacts.ReferrerNode]]:
    """The subject's descriptor and its referrers as a tree (with ``platform``, of that
    platform's manifest of an index)."""
    store, _, subject = _subject(reference, platform, options)
    return subject, artifacts.discover(store, subject, artifact_type)


def _subject(
    reference: str, platform: "Platform | str | None", options: Options
) -> tuple[Store, Reference, Descriptor]:
    """Open ``reference``'s store (never creating a layout) and resolve it, narrowed to ``platform``."""
    store, ref = open_store(reference, options, create=False)
    return store, ref, platform_manifest(store, store.resolve(ref.reference), platform)

