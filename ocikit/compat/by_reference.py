"""String-level entry points for the CLI: references and paths in, reports out.

``ocikit compat check X`` accepts a view directory, a saved scan report (``*.json``) or an
image reference; ``attach`` and ``label`` resolve a reference to the manifest they
annotate. Kept here so that the click commands stay one call each.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from ..content.base import Store, platform_manifest
from ..content.open import open_store
from ..errors import LocalIOError, NotFoundError
from ..options import DEFAULT_OPTIONS, Options
from ..progress import Progress
from ..reference import parse_reference
from ..spec.descriptor import Descriptor, Platform
from .app_image import AppImage
from .artifact import attach_compat
from .check import CheckReport, check_host, check_reference
from .host import HostInfo
from .labels import add_labels, read_labels
from .report import ScanReport
from .scan import scan


def load_json(path: str) -> Any:
    try:
        with open(path, "rb") as stream:
            return json.load(stream)
    except OSError as exc:
        raise LocalIOError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise LocalIOError(f"{path}: not JSON: {exc}") from None


def load_host(path: str) -> HostInfo:
    """A host saved with ``ocikit compat host --json``."""
    return HostInfo.from_dict(load_json(path))


def scan_or_load(source: str, progress: Progress | None = None) -> ScanReport | dict[str, Any]:
    """Scan a directory, or load a saved ``compat scan --json`` report file."""
    if os.path.isdir(source):
        return scan(source, progress=progress)
    if os.path.isfile(source):
        return load_json(source)
    raise NotFoundError(f"{source}: no such directory or report file")


def resolve_subject(
    reference: str, options: Options = DEFAULT_OPTIONS, platform: "Platform | str | None" = None
) -> tuple[Store, Descriptor]:
    """Open the store of ``reference`` (never creating a layout) and resolve its manifest
    (with ``platform``, that platform's manifest when it is an index)."""
    store, ref = open_store(parse_reference(reference), options, create=False)
    return store, platform_manifest(store, store.resolve(ref.reference), platform)


def attach_to_reference(
    reference: str,
    source: str | None = None,
    options: Options = DEFAULT_OPTIONS,
    nfd: bool = False,
    progress: Progress | None = None,
    platform: "Platform | str | None" = None,
) -> Descriptor:
    """``ocikit compat attach REF [SOURCE]``: scan SOURCE (a directory or a saved report) and attach it to REF.

    Without SOURCE the artifact itself is pulled into a temporary directory (verified and
    safely, not relocated) and scanned there, so an image pushed by any tool can get its
    compatibility metadata after the fact. With ``platform`` the metadata goes to that
    platform's manifest of an index (and that manifest is what is pulled and scanned).
    """
    store, subject = resolve_subject(reference, options, platform)
    if source is not None:
        return attach_compat(store, subject, scan_or_load(source, progress), nfd=nfd)
    from ..pull.api import pull  # loaded on use: the extraction machinery
    from ..pull.policy import PullPolicy

    with tempfile.TemporaryDirectory(prefix="ocikit-compat-") as scratch:
        tree = os.path.join(scratch, "tree")
        policy = PullPolicy(relocate=False, check_compat=False, platform=platform)  # type: ignore[arg-type]
        pull(reference, tree, policy, options=options, store=store)
        report = scan(tree, progress=progress)
    return attach_compat(store, subject, report, nfd=nfd)


def check_target(
    target: str,
    options: Options = DEFAULT_OPTIONS,
    host: HostInfo | None = None,
    progress: Progress | None = None,
    against: str | None = None,
    facts_cache: str | None = None,
    platform: "Platform | str | None" = None,
) -> CheckReport:
    """``ocikit compat check TARGET [--against APP_IMAGE]``: a view directory, a saved report,
    or an image reference, checked against this host or, with ``against``, against the
    application image that will load it (its facts cached in ``facts_cache``).

    With ``platform`` an index TARGET is checked by that platform's manifest's metadata.
    Raises NotFoundError when TARGET is a reference without compatibility metadata.
    """
    app = AppImage(against, options, facts_cache, node=host) if against else None
    if os.path.isdir(target) or (os.path.isfile(target) and target.endswith(".json")):
        report = scan_or_load(target, progress)
        return check_host(report, host, subject=target, against=app)
    store, subject = resolve_subject(target, options, platform)
    result = check_reference(store, subject, host, against=app)
    if result is None:
        raise NotFoundError(f"{target}: no compatibility metadata attached (run 'ocikit compat attach')")
    result.subject = target
    return result


def label_reference(
    reference: str, labels: dict[str, str], options: Options = DEFAULT_OPTIONS, platform: "Platform | str | None" = None
) -> Descriptor:
    store, subject = resolve_subject(reference, options, platform)
    return add_labels(store, subject, labels)


def labels_of_reference(
    reference: str, options: Options = DEFAULT_OPTIONS, platform: "Platform | str | None" = None
) -> dict[str, str]:
    store, subject = resolve_subject(reference, options, platform)
    return read_labels(store, subject)
