"""``push_view``: a spack copy view (or any directory) → a reproducible, per-package OCI artifact.

Steps: scan the view (:mod:`ocikit.spack.view`), plan layers
(:mod:`ocikit.spack.layering`), push the layers in parallel through the streaming
pipeline (:mod:`ocikit.push.pipeline`), then the config and, last, the manifest — so a
manifest is only ever pushed when every blob it names is in the store. Any failure stops
the other layers and raises one typed error naming the file or layer.

**Image-shaped.** The config blob is an OCI image config (``architecture``/``os`` from the
view's ELF files, ``rootfs.diff_ids``) carrying the view metadata under
:data:`~ocikit.spec.view_config.VIEW_KEY`, and the manifest keeps ``artifactType`` =
``application/vnd.ocikit.view.v1``: containerd, CRI-O, skopeo and umoci see an image, ORAS
tools and ocikit a view. **Mount path.** Files that name the view's real root are relocated to
the mount path ``P`` while they are packed, so a runtime that mounts the image at ``P`` (a
Kubernetes image volume) runs it as is; ``ocikit pull`` relocates from ``P`` to its destination.

Skipping work that is already done (the digest cache, the view at the target tag): see
:mod:`ocikit.push.pusher`. Result: re-pushing an unchanged view uploads no blob bytes, and a view that differs by
one package uploads about that package.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..content.base import Store, push_manifest
from ..content.open import open_store
from ..errors import InvalidReferenceError, RelocationError, UnsupportedError
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..reference import Reference, parse_reference
from ..spack.artifact import build_config, created_timestamp, relocation_record
from ..spack.layering import DEFAULT_MAX_LAYER_SIZE, PACKAGES, SINGLE, plan_layers
from ..spack.view import View, ViewEntry, scan_view
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor, Platform
from ..spec.manifest import build_manifest, canonical_json
from ..spec.view_config import VIEW_KEY
from .cache import DigestCache
from .compress import GZIP, ZSTD, Compression
from .pusher import LayerPusher, LayerResult
from .stream import Relocation, Rewrite, RpathHook

MIN_LAYER_SIZE = 1 << 20

__all__ = ["LayerResult", "PushResult", "push_view"]


@dataclass(frozen=True)
class PushResult:
    reference: str
    manifest: Descriptor
    config: dict[str, Any]
    config_descriptor: Descriptor
    layers: tuple[LayerResult, ...]
    uploaded_bytes: int  # blob bytes sent (layers + config); manifests are not counted
    compat: Descriptor | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def view(self) -> dict[str, Any]:
        """The view metadata inside the (image-shaped) config: packages, layers, relocation record."""
        document: dict[str, Any] = self.config[VIEW_KEY]
        return document

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.manifest.digest,
            "mediaType": self.manifest.media_type,
            "size": self.manifest.size,
            "config": self.config_descriptor.digest,
            "uploadedBytes": self.uploaded_bytes,
            "layers": [layer.to_dict() for layer in self.layers],
            "compat": self.compat.digest if self.compat else None,
            "warnings": list(self.warnings),
        }


def push_view(
    view_dir: str,
    reference: str | Reference,
    *,
    options: Options = DEFAULT_OPTIONS,
    layers: str = PACKAGES,
    compression: str | None = None,
    level: int | None = None,
    max_layer_size: int = DEFAULT_MAX_LAYER_SIZE,
    labels: Mapping[str, str] | None = None,
    allow_external_symlinks: bool = False,
    root: str | None = None,
    view_path: str | None = None,
    mount_path: str | None = None,
    name: str | None = None,
    relative_rpaths: bool | None = None,
    compat: bool = True,
    cache_dir: str | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Push ``view_dir`` to ``reference`` (``host/repo:tag`` or ``oci:PATH:tag``) as a view artifact.

    ``layers``: ``"packages"`` (one layer per package plus the view's own) or ``"single"``
    (one ORAS-style directory layer). ``compression``: ``"zstd"`` (default for packages)
    or ``"gzip"`` (default for single, so ``oras pull`` unpacks it); ``level`` defaults
    to 3 (zstd) / 6 (gzip). ``root`` is the original real root of a view copied elsewhere,
    ``view_path`` the path users knew it by. ``cache_dir=""`` disables the digest cache.
    ``store`` overrides the store ``reference`` would open (its tag is still used).
    """
    progress = progress or NULL_PROGRESS
    if layers not in (PACKAGES, SINGLE):
        raise InvalidReferenceError(f"unknown layer mode {layers!r} (expected packages or single)")
    codec = Compression.parse(compression or (GZIP if layers == SINGLE else ZSTD), level)
    if max_layer_size < MIN_LAYER_SIZE:
        raise InvalidReferenceError(f"--max-layer-size must be at least {MIN_LAYER_SIZE} bytes")
    if relative_rpaths is None:  # default: packages mode yes; single mode stores files exactly as they are
        relative_rpaths = layers != SINGLE
    rpath_hook = _relative_rpath_hook() if relative_rpaths else None
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    if ref.digest:
        raise InvalidReferenceError(f"push-view needs a tag (or none), not a digest: {reference}")
    tag = ref.push_tag  # no tag means latest, as for pull

    progress.message("scanning view")
    view = scan_view(view_dir, root=root, view_path=view_path, name=name,
                     allow_external_symlinks=allow_external_symlinks)
    plans = plan_layers(view, layers, max_layer_size, "" if layers == SINGLE else codec.extension)
    target = _mount_path(view, layers, mount_path)
    relocation = _relocation(view.real_root, target, rpath_hook, relative_rpaths)
    if store is None:
        store, _ = open_store(ref, options)
    compat_scan = _CompatScan(view, progress) if compat else None  # runs while the layers are pushed

    cache = DigestCache(cache_dir)
    try:
        pusher = LayerPusher(store, view, codec, relocation, cache, progress, options.concurrency)
        pusher.load_previous(tag)
        results = pusher.push_all(plans)
    finally:
        cache.close()

    relocated = [path for result in results for path in result.relocated]
    view_config = build_config(
        view, layers, plans, results, codec.describe(),
        relocation_record(view, target, relocated, relative_rpaths),
        created_timestamp(plans),
    )
    config = view_config.to_image_config(_platform(view))
    config_bytes = canonical_json(config)
    config_desc = Descriptor.from_bytes(mt.OCI_CONFIG, config_bytes)
    config_uploaded = 0
    if not store.exists(config_desc):
        store.push(config_desc, config_bytes)
        config_uploaded = len(config_bytes)

    annotations = {mt.ANNOTATION_CREATED: config["created"], **dict(labels or {})}
    manifest = build_manifest(
        [r.descriptor for r in results], config_desc, artifact_type=mt.OCIKIT_VIEW_ARTIFACT, annotations=annotations
    )
    progress.message("pushing manifest")
    manifest_desc = push_manifest(store, manifest, mt.OCI_MANIFEST, tag=tag)
    compat_desc = compat_scan.attach(store, manifest_desc, created=config["created"]) if compat_scan else None
    return PushResult(
        reference=str(ref),
        manifest=manifest_desc.replace(artifact_type=mt.OCIKIT_VIEW_ARTIFACT),
        config=config,
        config_descriptor=config_desc,
        layers=tuple(results),
        uploaded_bytes=sum(r.uploaded_bytes for r in results) + config_uploaded,
        compat=compat_desc,
        warnings=_warnings(view, layers, codec),
    )


def _warnings(view: View, mode: str, codec: Compression) -> tuple[str, ...]:
    notes = []
    if view.external_symlinks:
        notes.append(f"kept {len(view.external_symlinks)} symlink(s) pointing outside the view, "
                     f"e.g. {view.external_symlinks[0]}")
    if mode == SINGLE and codec.algorithm != GZIP:
        notes.append("a single zstd layer: oras and oras-py only unpack gzip directory layers")
    return tuple(notes)


def _mount_path(view: View, mode: str, asked: str | None) -> str:
    """``asked``, normalised; by default the view path (packages) or the real root (single: files as they are)."""
    if asked is None:
        return view.view_path if mode == PACKAGES else view.real_root
    if not asked.startswith("/") or "\0" in asked or "\n" in asked:
        raise InvalidReferenceError(f"--mount-path must be an absolute path, got {asked!r}")
    normalized = posixpath.normpath(asked)
    if normalized == "/":
        raise InvalidReferenceError("--mount-path must not be /")
    return normalized


def _relocation(root: str, mount_path: str, rpath_hook: RpathHook | None, relative_rpaths: bool) -> Relocation:
    if mount_path == root:  # nothing to move: files stored as they are, those naming the root listed
        return Relocation(root, rpath_hook=rpath_hook)
    return Relocation(root, mount_path=mount_path, rewrite=_mount_rewrite(root, mount_path, relative_rpaths))


def _mount_rewrite(root: str, mount_path: str, relative_rpaths: bool) -> Rewrite:
    # The relocation engine, one file at a time; a misfit raises RelocationError naming the file.
    from ..relocate import relocate_bytes

    def rewrite(data: bytes, relpath: str) -> bytes:
        try:
            return relocate_bytes(data, relpath, root, mount_path, relative_rpaths=relative_rpaths)
        except RelocationError as exc:
            exc.args = (f"--mount-path {mount_path} does not fit: {exc}", *exc.args[1:])
            raise

    return rewrite


def _platform(view: View) -> Platform:
    """linux/<arch> of the view's ELF files (likely binaries read first); the host's without any."""
    from ..compat.elf import main_machine

    ranked = sorted((rank, e.rel) for e in view.entries if e.kind == "file" and (rank := _elf_likelihood(e)) < 3)
    machine = main_machine(os.path.join(view.source, rel) for _, rel in ranked)
    return Platform.linux(machine) if machine else Platform.host()


def _elf_likelihood(entry: ViewEntry) -> int:
    """0: an executable in bin/; 1: a shared library name; 2: another executable; 3: unlikely (not read)."""
    if entry.stat.st_size < 64:
        return 3
    executable = bool(entry.stat.st_mode & 0o111)
    if executable and entry.rel.startswith(("bin/", "sbin/")):
        return 0
    name = entry.rel.rsplit("/", 1)[-1]
    if name.endswith(".so") or ".so." in name:
        return 1
    return 2 if executable else 3


def _relative_rpath_hook() -> RpathHook:
    # The relocation engine's push-time rewrite (same size): RPATH/RUNPATH entries under the
    # root become $ORIGIN-relative. Imported only when asked for (it loads pyelftools).
    try:
        from ..relocate.elf import make_rpaths_relative
    except ImportError:
        raise UnsupportedError("--relative-rpaths needs ocikit.relocate.elf, which is not available") from None
    return make_rpaths_relative  # type: ignore[no-any-return]


class _CompatScan:
    """``ocikit.compat.scan`` of the view in a background thread, attached once the manifest exists.

    The scan reads the view's ELF files; running it while the layers are packed and
    uploaded hides most of its time. A scan error surfaces from :meth:`attach`.
    """

    def __init__(self, view: View, progress: Progress) -> None:
        self._source = view.source
        self._progress = progress
        self._report: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ocikit-compat-scan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            from ..compat.scan import scan  # loaded on use: ELF parsing, libmagic

            self._report = scan(self._source, progress=self._progress)
        except BaseException as exc:  # re-raised in the caller's thread by attach()
            self._error = exc

    def attach(self, store: Store, subject: Descriptor, created: str) -> Descriptor:
        """Attach the scan's result as a referrer of ``subject`` (the view manifest), pinned to ``created``."""
        from ..compat.artifact import attach_compat

        self._progress.message("attaching compatibility metadata")
        self._thread.join()
        if self._error is not None:
            raise self._error
        return attach_compat(store, subject, self._report, created=created)
