"""The test environment: where the shared fixtures are, and which real peers must be present.

``require_binary`` skips a test when a peer is missing on a developer's machine but fails it
under ``CI=1``: scripts/test.sh installs every peer, so there a missing one is a set-up bug.

Tests read ``../shared/fixtures`` directly, as the project's brief allows. A checkout may sit
anywhere (a helper worktree one level deeper, CI's clean clone in a temporary directory), so
the search is: ``$OCIKIT_SHARED_FIXTURES``; ``shared/fixtures`` beside the checkout or beside
any of its parents; then ``/work/shared/fixtures``, where this workplace keeps them.
"""

from __future__ import annotations

import os
import shutil

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WORKPLACE_FIXTURES = "/work/shared/fixtures"


def find_shared_fixtures() -> str | None:
    candidates = [os.environ.get("OCIKIT_SHARED_FIXTURES", "")]
    directory = REPO
    while os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
        candidates.append(os.path.join(directory, "shared", "fixtures"))
    candidates.append(WORKPLACE_FIXTURES)
    return next((os.path.abspath(c) for c in candidates if c and os.path.isdir(c)), None)


# The SOCI golden vectors are copied into the repository (fixtures/soci-vectors, Apache-2.0 with
# its NOTICE): 1.7 MB, so the byte-for-byte test stands alone.
SOCI_VECTORS = os.path.join(REPO, "fixtures", "soci-vectors")


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_binary(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        skip_or_fail(f"{', '.join(missing)} not installed")
