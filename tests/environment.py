"""The test environment: where the committed fixtures are, and which real peers must be present.

``require_binary`` skips a test when a peer is missing on a developer's machine but fails it
under ``CI=1``: scripts/test.sh installs every peer, so there a missing one is a set-up bug.

Every input a test reads is committed under ``fixtures/`` (provenance in fixtures/README.md), so
a clone is all the suite needs; no test names a path outside the repository.
"""

from __future__ import annotations

import os
import shutil

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIXTURES = os.path.join(REPO, "fixtures")

# The SOCI golden vectors (Apache-2.0 with its NOTICE): 1.7 MB, so the byte-for-byte test stands alone.
SOCI_VECTORS = os.path.join(FIXTURES, "soci-vectors")

# The real spack copy view (17 MB) and its description.
SPACK_VIEW_ARCHIVE = os.path.join(FIXTURES, "spack-views", "spack-view-a.tar.zst")
SPACK_VIEW_README = os.path.join(FIXTURES, "spack-views", "README.md")


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_binary(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        skip_or_fail(f"{', '.join(missing)} not installed")
