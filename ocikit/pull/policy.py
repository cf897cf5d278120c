"""``PullPolicy``: every choice a pull is made with, as one frozen object built once.

The CLI builds it from flags, a Python caller from keywords, a CSI driver from volume
attributes; a direct pull, a node-cache fill and a subset pull all read the same object, so
they cannot disagree about what is allowed. The extraction rules for one artifact
(:class:`~ocikit.extract.safe_tar.ExtractPolicy`) are derived from it in one place,
:meth:`PullPolicy.extract_policy`.

Some fields decide what a tree on disk *is* (its modes, which special files exist, which
files were admitted at all): :meth:`PullPolicy.tree_key` names them, so a node cache never
serves a tree built under a more permissive policy to a stricter pull.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import InvalidReferenceError
from ..extract.plan import KIND_VIEW, ArtifactPlan
from ..extract.safe_tar import ExtractPolicy
from ..spec.descriptor import Platform

LINK_MODES = ("auto", "hardlink", "reflink", "copy")


@dataclass(frozen=True)
class PullPolicy:
    """How to pull (defaults are the safe choices).

    ``rootfs``                 apply every layer as a container filesystem layer (whiteouts)
    ``max_size``               refuse more decompressed bytes than this, in total and per file (bomb guard)
    ``allow_devices``          create device nodes and fifos (else refused; skipped with ``rootfs``)
    ``preserve_special_modes`` keep setuid, setgid and sticky bits (else dropped)
    ``platform``               pick this ``os/arch[/variant]`` from an index (default: this host)
    ``include``                extract only paths matching these globs, through zTOC range reads
    ``relocate``               rewrite a view's paths to DEST (else keep it where it runs as stored:
                               its mount path; for ocikit 0.1 views, the root it was built at)
    ``check_compat``           refuse an artifact whose compatibility metadata this host fails
    ``against``                check that metadata against this application image's userland
                               (glibc, libstdc++, MPI, platform) instead of this host's
    ``merge``                  pull into a DEST that holds files ocikit did not write, keeping them
    ``link_mode``              with a node cache: how DEST gets the cached files
    """

    rootfs: bool = False
    max_size: int | None = None
    allow_devices: bool = False
    preserve_special_modes: bool = False
    platform: Platform | None = None
    include: tuple[str, ...] = ()
    relocate: bool = True
    check_compat: bool = True
    against: str = ""
    merge: bool = False
    link_mode: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.platform, str):
            object.__setattr__(self, "platform", Platform.parse(self.platform))
        object.__setattr__(self, "include", tuple(sorted(set(self.include))))
        if self.max_size is not None and self.max_size < 0:
            raise InvalidReferenceError(f"max_size must not be negative (got {self.max_size})")
        if self.link_mode not in LINK_MODES:
            raise InvalidReferenceError(f"unknown link mode {self.link_mode!r} (choose from {', '.join(LINK_MODES)})")

    @classmethod
    def of(cls, policy: PullPolicy | None = None, **changes: Any) -> PullPolicy:
        """``policy`` (default: the safe one) with ``changes`` applied: keywords that build a policy."""
        base = policy or DEFAULT_POLICY
        return replace(base, **changes) if changes else base

    def extract_policy(self, plan: ArtifactPlan) -> ExtractPolicy:
        """The extraction rules for ``plan``: a view may link into its own (relocated) root."""
        roots: tuple[str, ...] = ()
        external: frozenset[str] = frozenset()
        if plan.kind == KIND_VIEW and plan.view is not None:
            record = plan.view.relocation
            roots = tuple(r for r in (record.root, record.view_path, record.placeholder, record.mount_path) if r)
            external = frozenset(plan.view.external_symlinks)
        return ExtractPolicy(
            allow_devices=self.allow_devices,
            preserve_special_modes=self.preserve_special_modes,
            symlink_roots=roots,
            external_symlinks=external,
            max_size=self.max_size,
        )

    def tree_key(self) -> str:
        """The fields that shape an extracted tree, as a short stable string (node-cache keys)."""
        parts = [
            "rootfs" if self.rootfs else "tree",
            "devices" if self.allow_devices else "nodevices",
            "specialmodes" if self.preserve_special_modes else "plainmodes",
        ]
        return "-".join(parts)


DEFAULT_POLICY = PullPolicy()
