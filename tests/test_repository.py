"""The repository stands alone: a clone holds everything its tests, scripts and documents name."""

from __future__ import annotations

import hashlib
import os
import re

from environment import REPO, SPACK_VIEW_ARCHIVE, SPACK_VIEW_README

# Paths of this machine, documents that are not in the repository, and the old fixture location.
FORBIDDEN = [
    re.compile(r"/work/"),
    re.compile(r"\.\./shared\b|shared/fixtures"),
    re.compile(r"REFERENCE\.md|REFERENCE §"),
    re.compile(r"OCIKIT_SHARED_FIXTURES"),
]
CHECKED_SUFFIXES = (".py", ".sh", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt")
THIS_FILE = os.path.relpath(__file__, REPO)


def repository_text_files() -> list[str]:
    """Every text file of the checkout except virtualenvs, caches and downloaded libraries."""
    skip_dirs = {".git", ".venv", "downloaded", "demo", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not d.endswith(".egg-info")]
        for name in files:
            path = os.path.relpath(os.path.join(folder, name), REPO)
            if (name.endswith(CHECKED_SUFFIXES) or name == "Containerfile") and path != THIS_FILE:
                found.append(path)
    return found


def test_no_file_names_a_path_or_document_outside_the_repository():
    offenders = []
    for name in repository_text_files():
        text = open(os.path.join(REPO, name), encoding="utf-8", errors="replace").read()
        for pattern in FORBIDDEN:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{name}:{line}: {match.group(0)}")
    assert offenders == []


def test_the_spack_view_fixture_is_committed_with_its_provenance():
    digest = hashlib.sha256(open(SPACK_VIEW_ARCHIVE, "rb").read()).hexdigest()
    readme = open(SPACK_VIEW_README, encoding="utf-8").read()
    assert f"sha256 `{digest}`" in readme
    assert "spack-views/spack-view-a.tar.zst" in open(os.path.join(REPO, "fixtures", "README.md")).read()
    assert "fixtures/spack-views/spack-view-a.tar.zst" in open(os.path.join(REPO, "scripts", "demo.sh")).read()


def test_license_is_apache_2_and_packaged():
    text = open(os.path.join(REPO, "LICENSE"), encoding="utf-8").read()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    pyproject = open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8").read()
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE"]' in pyproject


def test_containerignore_lets_through_exactly_what_the_containerfile_copies():
    allowed = {
        line[1:].rstrip("/")
        for line in open(os.path.join(REPO, ".containerignore"), encoding="utf-8").read().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for line in open(os.path.join(REPO, "Containerfile"), encoding="utf-8"):
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied.update(words[1:-1])
    assert copied and copied <= allowed, copied - allowed
    assert all(os.path.exists(os.path.join(REPO, name)) for name in allowed)
