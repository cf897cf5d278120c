"""The facts of the application image that will load a view, learnt without pulling it.

In the init-container pattern the view is pulled by one image (ocikit's) and run by
another (the application's): the glibc, libstdc++ and MPI that load the view are the app
image's, not the puller's. :func:`learn_image_facts` reads only what answers the check:

* the platform, from the image config (and ``LD_LIBRARY_PATH`` from its ``Env``);
* the C library: the dynamic loader (``ld-linux-*`` → glibc, ``ld-musl-*`` → musl) and the
  highest ``GLIBC_x.y`` version *definition* of ``libc.so.6``;
* ``libstdc++.so.6``'s highest ``GLIBCXX_``/``CXXABI_`` definitions;
* the sonames in the library directories (MPI: ``libmpi.so.40`` Open MPI, ``libmpich.so.12``
  MPICH ABI …; see :mod:`.libraries`).

Layers are visited from the top down. A layer with an attached zTOC costs its zTOC and the
spans of the few files read; any other layer is streamed once through the one tar reader,
keeping only the entries of the library directories (and whiteouts of them) and the bytes of
the handful of files read. Later layers win (:class:`~ocikit.ztoc.view.ImageTree` applies
the OCI whiteout rules), so a path found in an upper layer is settled and the walk stops as
soon as every *needed* path is settled; a needed library the image lacks costs every layer,
since only the bottom layer can prove it absent.

The facts are cached by manifest digest (content-addressed, so never stale) in a small JSON
file per image; facts from a walk that stopped early say which names they settled.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..cachedirs import user_cache_dir
from ..content.base import Store
from ..digest import validate_digest
from ..errors import LocalIOError, NotFoundError, OcikitError, UnsupportedError
from ..options import DEFAULT_OPTIONS, Options
from ..spec.descriptor import Descriptor, Platform
from ..ztoc.toc import FileMetadata
from ..ztoc.view import OPAQUE, WHITEOUT, ImageTree, normalize
from .elf import VERSION_FAMILIES, defined_versions
from .host import HostInfo, default_library_dirs, libstdcxx_versions, normalize_machine
from .requirements import Requirement
from .versions import max_version

FACTS_SCHEMA = 1
MAX_READ = 64 << 20  # bytes of one ELF file read for its version definitions
MAX_KEPT = 4 * MAX_READ  # bytes of such files a streaming walk holds in memory at most
LIBC, LIBSTDCXX = "libc.so.6", "libstdc++.so.6"
NO_LIBC = "none"  # the image has no C library at all
# PT_INTERP of glibc programs, by machine (the path the kernel opens)
GLIBC_LOADERS = {
    "x86_64": "lib64/ld-linux-x86-64.so.2",
    "aarch64": "lib/ld-linux-aarch64.so.1",
    "ppc64le": "lib64/ld64.so.2",
    "s390x": "lib/ld64.so.1",
    "riscv64": "lib/ld-linux-riscv64-lp64d.so.1",
    "i686": "lib/ld-linux.so.2",
}
# names whose bytes a streamed layer keeps (a soname link's target has its versioned name)
_READ_PREFIXES = ("libc.so.6", "libc-2.", "libstdc++.so.6")


def musl_loader(machine: str) -> str:
    return f"lib/ld-musl-{machine}.so.1"


@dataclass
class ImageFacts:
    """What an image offers a view's binaries. ``sources`` name where each fact was read:
    ``<layer digest>:/<path in the layer>`` (``config`` for the platform)."""

    reference: str
    digest: str  # the image manifest's digest (the cache key)
    machine: str
    libc: str = ""  # glibc | musl | none (proven absent) | "" (unknown)
    glibc: str = ""
    glibcxx: str = ""
    cxxabi: str = ""
    loader: str = ""  # /lib64/ld-linux-x86-64.so.2
    libraries: dict[str, str] = field(default_factory=dict)  # soname -> path as the loader finds it
    sources: dict[str, str] = field(default_factory=dict)  # fact ("libc", "glibcxx", a soname) -> source
    complete: bool = False  # every layer was read: a soname not in ``libraries`` is absent
    settled: list[str] = field(default_factory=list)  # with complete=False: names known
    layers: int = 0
    layers_read: int = 0
    bytes_read: int = 0  # blob bytes this walk fetched (0 when served from the cache)
    via: str = ""  # "ztoc", "stream", "ztoc+stream" or "cache"

    def knows(self, names: Iterable[str]) -> bool:
        """Whether these facts answer for every name (present, or proven absent)."""
        return self.complete or all(n in self.libraries or n in self.settled for n in names)

    def host(self, base: HostInfo | None = None) -> HostInfo:
        """A :class:`HostInfo` with this image's userland on ``base``'s node (CPU, GPU driver)."""
        node = base or HostInfo.probe()
        return node.with_changes(
            machine=self.machine, libc=self.libc, glibc=self.glibc, glibcxx=self.glibcxx, cxxabi=self.cxxabi,
            libraries=dict(self.libraries), programs=None, live=False, label=f"app image {self.reference}",
            sources=dict(self.sources),
            library_scope=f"the app image's library directories ({self.scope()})",
        )

    def summary(self) -> str:
        """One line on where the facts came from and what they cost."""
        how = "from the facts cache" if self.via == "cache" else f"{self.bytes_read} bytes read ({self.via})"
        return f"app image {self.reference} ({self.digest}): {self.scope()}, {how}"

    def scope(self) -> str:
        return "all layers read" if self.complete else f"{self.layers_read} of {self.layers} layers read"

    def to_dict(self) -> dict[str, Any]:
        return {"schemaVersion": FACTS_SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageFacts:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


# -- the walk ----------------------------------------------------------------------------


@dataclass
class _Layer:
    """One visited layer: its (filtered) entries and how to read a file's bytes."""

    descriptor: Descriptor
    entries: list[FileMetadata]
    kept: dict[str, bytes] = field(default_factory=dict)  # streamed: normalized name -> bytes
    ztoc: Any = None


class _Walk:
    def __init__(self, store: Store, layers: list[Descriptor], diff_ids: list[str | None], dirs: list[str],
                 ztocs: Mapping[str, Any]) -> None:
        self.store = store
        self.layers = layers
        self.diff_ids = diff_ids
        self.dirs = dirs
        self.ancestors = {"/".join(d.split("/")[:i]) for d in dirs for i in range(1, d.count("/") + 1)}
        self.ztocs = ztocs
        self.seen: list[_Layer] = []  # top layer first
        self.bytes_read = 0
        self.kept_bytes = 0  # an image with many files named like libc-2.* must not fill the memory
        self.kinds: set[str] = set()

    def relevant(self, name: str) -> bool:
        path = normalize(name)
        parent, base = posixpath.split(path)
        if path in self.dirs or path in self.ancestors or parent in self.dirs:
            return True
        return base.startswith(WHITEOUT) and (parent in self.ancestors or parent == "")

    def tree(self) -> ImageTree:
        return ImageTree([layer.entries for layer in reversed(self.seen)])

    def visit(self, index: int) -> None:
        desc = self.layers[index]
        record = self.ztocs.get(desc.digest)
        if record is not None:
            from ..ztoc.soci import load_ztoc

            ztoc = load_ztoc(self.store, record.ztoc)
            self.bytes_read += record.ztoc.size
            entries = [e for e in ztoc.entries if self.relevant(e.name)]
            self.seen.append(_Layer(desc, entries, ztoc=ztoc))
            self.kinds.add("ztoc")
        else:
            self.seen.append(self._stream(desc, self.diff_ids[index]))
            self.kinds.add("stream")

    def _stream(self, desc: Descriptor, diff_id: str | None) -> _Layer:
        from ..extract.decompress import LayerStream
        from ..formats.tar.reader import FILE, TarStream
        from ..ztoc.toc import toc_entry

        layer = _Layer(desc, [])
        blob = self.store.fetch(desc)
        with LayerStream(blob, f"layer {desc.digest}", uncompressed_digest=diff_id) as stream:
            tar = TarStream(stream.next_chunk)
            while (entry := tar.next_entry()) is not None:
                if not self.relevant(entry.name):
                    continue
                try:
                    metadata = toc_entry(entry)
                except UnsupportedError:  # a sparse file or an unknown type: no library the loader uses
                    continue
                if metadata is None:
                    continue
                layer.entries.append(metadata)
                base = posixpath.basename(normalize(entry.name))
                if entry.kind == FILE and base.startswith(_READ_PREFIXES) and self._may_keep(entry.size):
                    layer.kept[normalize(entry.name)] = b"".join(bytes(p) for p in tar.read_data(entry))
            while stream.next_chunk():  # the end verifies the blob digest (and the diff_id)
                pass
        self.bytes_read += desc.size
        return layer

    def _may_keep(self, size: int) -> bool:
        if size > MAX_READ or self.kept_bytes + size > MAX_KEPT:
            return False
        self.kept_bytes += size
        return True

    def read(self, tree: ImageTree, path: str) -> tuple[bytes, str] | None:
        """The bytes of the regular file at ``path`` (symlinks followed) and its source, or None."""
        try:
            node = tree.lookup(path)
            holder = tree.data_node(node) if node.entry.type in ("reg", "hardlink") else None
        except OcikitError:
            return None
        if holder is None or holder.entry.size > MAX_READ:
            return None
        data = holder.entry
        layer = self.seen[len(self.seen) - 1 - holder.layer]
        source = f"{layer.descriptor.digest}:/{node.path}"
        if layer.ztoc is None:
            kept = layer.kept.get(normalize(data.name))
            return (kept, source) if kept is not None else None
        from ..ztoc.fetch import LayerReader, Want

        reader = LayerReader(self.store, layer.descriptor, layer.ztoc)
        content = b"".join(piece for _, piece in reader.pieces([Want(data.offset, data.size)]))
        self.bytes_read += reader.stats.bytes_fetched
        return content, source


def _find(tree: ImageTree, dirs: list[str], name: str) -> str | None:
    """The first library directory (search order) whose ``name`` resolves to an entry of the tree."""
    for directory in dirs:
        if _resolves(tree, f"{directory}/{name}"):
            return f"{directory}/{name}"
    return None


def _resolves(tree: ImageTree, path: str) -> bool:
    try:
        tree.lookup(path)
    except OcikitError:
        return False
    return True


def _needed_names(requirements: Iterable[Requirement]) -> set[str]:
    """The sonames the requirements ask the image for (libc and libstdc++ by their version needs)."""
    names = {LIBC}
    for requirement in requirements:
        if requirement.kind in ("glibcxx", "cxxabi"):
            names.add(LIBSTDCXX)
        elif requirement.kind == "library":
            names.add(requirement.name)
    return names


def learn_image_facts(
    store: Store,
    manifest_desc: Descriptor,
    *,
    reference: str = "",
    requirements: Iterable[Requirement] = (),
    platform: Platform | None = None,
    cache_dir: str | None = None,
) -> ImageFacts:
    """The facts of the image ``manifest_desc`` in ``store`` that ``requirements`` ask about."""
    from ..extract.plan import plan_artifact, resolve_manifest
    from ..ztoc.image import layer_ztoc_records

    resolved = resolve_manifest(store, manifest_desc.digest, platform=platform, label=reference)
    digest = resolved.descriptor.digest
    needed = _needed_names(requirements)
    cache = FactsCache(cache_dir)
    cached = cache.get(digest)
    if cached is not None and cached.knows(needed):
        cached.via, cached.bytes_read, cached.reference = "cache", 0, reference or cached.reference
        return cached
    plan = plan_artifact(store, resolved, rootfs=True)
    machine = _machine(plan.config)
    dirs = _library_dirs(plan.config, machine)
    layers = [job.descriptor for job in plan.layers]
    walk = _Walk(store, layers, [job.uncompressed_digest for job in plan.layers], dirs,
                 layer_ztoc_records(store, resolved.descriptor))
    loaders = [GLIBC_LOADERS.get(machine, ""), musl_loader(machine)]
    tree = ImageTree([])
    for index in reversed(range(len(layers))):
        walk.visit(index)
        tree = walk.tree()
        if all(_find(tree, dirs, name) for name in needed) and any(p and _resolves(tree, p) for p in loaders):
            break
    facts = _facts(walk, tree, reference, digest, machine, dirs, needed)
    cache.put(facts)
    return facts


def _facts(walk: _Walk, tree: ImageTree, reference: str, digest: str, machine: str, dirs: list[str],
           needed: set[str]) -> ImageFacts:
    facts = ImageFacts(reference, digest, machine, layers=len(walk.layers), layers_read=len(walk.seen),
                       via="+".join(sorted(walk.kinds)))
    facts.complete = facts.layers_read == facts.layers
    facts.sources["machine"] = "config"
    glibc_loader, musl = GLIBC_LOADERS.get(machine, ""), musl_loader(machine)
    if glibc_loader and _resolves(tree, glibc_loader):
        facts.libc, facts.loader = "glibc", "/" + glibc_loader
    elif _resolves(tree, musl):
        facts.libc, facts.loader = "musl", "/" + musl
    _libraries(facts, tree, dirs, walk)
    if not facts.libc and LIBC in facts.libraries:
        facts.libc = "glibc"  # a libc.so.6 without the standard loader path: still glibc
    elif not facts.libc and facts.complete:
        facts.libc = NO_LIBC  # every layer read: a static-only (scratch, distroless/static) image
    libc_path = facts.libraries.get(LIBC)
    if facts.libc == "glibc" and libc_path:
        found = walk.read(tree, libc_path)
        if found is not None:
            facts.glibc = _highest(found[0], "GLIBC")
            facts.sources["libc"] = found[1]
    libstdcxx_path = facts.libraries.get(LIBSTDCXX)
    if libstdcxx_path:
        found = walk.read(tree, libstdcxx_path)
        if found is not None:
            facts.glibcxx, facts.cxxabi = libstdcxx_versions(defined_versions(io.BytesIO(found[0])))
            facts.sources["glibcxx"] = facts.sources["cxxabi"] = found[1]
    facts.settled = sorted(needed)
    facts.bytes_read = walk.bytes_read  # the layers or zTOCs, and the spans of the files read
    return facts


def _libraries(facts: ImageFacts, tree: ImageTree, dirs: list[str], walk: _Walk) -> None:
    """Every ``*.so*`` the loader finds in the library directories (the first directory wins)."""
    for directory in dirs:
        try:
            real = tree.resolve(directory)
        except OcikitError:
            continue
        prefix = f"{real}/" if real else ""
        for path in sorted(tree.nodes):
            name = path[len(prefix):]
            if not path.startswith(prefix) or "/" in name or ".so" not in name or name in facts.libraries:
                continue
            if name.startswith(WHITEOUT) or name == OPAQUE or not _resolves(tree, path):
                continue
            facts.libraries[name] = f"/{directory}/{name}"
            node = tree.nodes[path]
            layer = walk.seen[len(walk.seen) - 1 - node.layer]
            facts.sources[name] = f"{layer.descriptor.digest}:/{path}"


def _highest(elf: bytes, family: str) -> str:
    pattern = VERSION_FAMILIES[family]
    return max_version([m.group(1) for n in defined_versions(io.BytesIO(elf)) if (m := pattern.match(n))])


def _machine(config: Mapping[str, Any]) -> str:
    from ..spec.descriptor import _GOARCH  # the one uname -> GOARCH table, read backwards

    arch, variant = str(config.get("architecture", "")), str(config.get("variant", ""))
    for machine, (goarch, govariant) in _GOARCH.items():
        if goarch == arch and (not variant or not govariant or variant == govariant):
            return normalize_machine(machine)
    return normalize_machine(arch)


def _library_dirs(config: Mapping[str, Any], machine: str) -> list[str]:
    """The image's ``LD_LIBRARY_PATH`` (searched first), then the default directories."""
    env = (config.get("config") or {}).get("Env") or []
    extra: list[str] = []
    for item in env if isinstance(env, list) else []:
        if isinstance(item, str) and item.startswith("LD_LIBRARY_PATH="):
            extra = [normalize(d) for d in item.split("=", 1)[1].split(":") if d.startswith("/")]
    dirs = extra + [normalize(d) for d in default_library_dirs(machine)]
    return list(dict.fromkeys(d for d in dirs if d))


# -- the cache ---------------------------------------------------------------------------


class FactsCache:
    """One JSON file per image manifest digest (``<dir>/<alg>-<hex>.json``), written atomically."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or user_cache_dir("image-facts"))

    def _path(self, digest: str) -> str:
        validate_digest(digest)
        return os.path.join(self.root, digest.replace(":", "-") + ".json")

    def get(self, digest: str) -> ImageFacts | None:
        try:
            with open(self._path(digest), encoding="utf-8") as stream:
                data = json.load(stream)
            if data.get("schemaVersion") != FACTS_SCHEMA or data.get("digest") != digest:
                return None
            return ImageFacts.from_dict(data)
        except (OSError, ValueError, TypeError, AttributeError):
            return None  # absent or unreadable: learn the facts again

    def put(self, facts: ImageFacts) -> None:
        path = self._path(facts.digest)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            os.makedirs(self.root, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as stream:
                json.dump(facts.to_dict(), stream, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise LocalIOError(f"cannot write the image facts cache {self.root}: {exc.strerror}") from None


# -- the check target --------------------------------------------------------------------


@dataclass(frozen=True)
class AppImage:
    """``--against REF``: the image whose userland loads the view.

    ``host_for(requirements)`` learns (or reads from the cache) what those requirements ask
    of the image and returns it as the :class:`HostInfo` the checks compare with; the node's
    CPU and GPU driver still come from ``node`` (default: this machine, probed).
    """

    reference: str
    options: Options = DEFAULT_OPTIONS
    cache_dir: str | None = None
    platform: Platform | None = None
    node: HostInfo | None = None

    def open(self) -> tuple[Store, Descriptor]:
        from .by_reference import resolve_subject

        try:
            return resolve_subject(self.reference, self.options)
        except NotFoundError as exc:
            raise NotFoundError(f"app image {self.reference}: {exc}") from None

    def facts(self, requirements: Iterable[Requirement] = ()) -> ImageFacts:
        store, desc = self.open()
        return learn_image_facts(store, desc, reference=self.reference, requirements=list(requirements),
                                 platform=self.platform, cache_dir=self.cache_dir)

    def host_for(self, requirements: Iterable[Requirement] = ()) -> HostInfo:
        return self.facts(requirements).host(self.node)

    def target_platform(self) -> Platform:
        """The platform of the app image (what an index of the view is narrowed to)."""
        from ..extract.plan import plan_artifact, resolve_manifest

        store, desc = self.open()
        resolved = resolve_manifest(store, desc.digest, platform=self.platform, label=self.reference)
        config = plan_artifact(store, resolved, rootfs=True).config
        return Platform(str(config.get("os") or "linux"), str(config.get("architecture", "")),
                        str(config.get("variant", "")))
