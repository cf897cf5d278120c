"""Packaging and import hygiene: light `import ocikit`, no click in the library, packages listed."""

import ast
import os
import subprocess
import sys

import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_ocikit_is_light_and_never_imports_click():
    code = (
        "import sys, ocikit; "
        "heavy = {'click', 'requests', 'elftools', 'magic', 'numpy', 'matplotlib', 'scipy', 'zstandard'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_library_source_never_imports_click_or_prints():
    for folder, _, files in os.walk(os.path.join(ROOT, "ocikit")):
        for name in files:
            if not name.endswith(".py") or "testing" in folder.split(os.sep):
                continue
            path = os.path.join(folder, name)
            tree = ast.parse(open(path, encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    assert not any(m.split(".")[0] == "click" for m in modules), f"{path} imports click"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                    raise AssertionError(f"{path}:{node.lineno} calls print()")


def test_every_package_directory_is_listed_in_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        listed = set(tomllib.load(fh)["tool"]["setuptools"]["packages"])
    found = {"ocikit.schemas", "ocikit_cli"}
    for folder, _, files in os.walk(os.path.join(ROOT, "ocikit")):
        if "__init__.py" in files and "__pycache__" not in folder:
            found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    for folder, _, files in os.walk(os.path.join(ROOT, "cli", "ocikit_cli")):
        if "__init__.py" in files and "__pycache__" not in folder:
            found.add(os.path.relpath(folder, os.path.join(ROOT, "cli")).replace(os.sep, "."))
    assert found == listed


def test_public_names_resolve():
    import ocikit

    for name in ocikit.__all__:
        assert getattr(ocikit, name) is not None, name
