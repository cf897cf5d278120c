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


def _library_sources(root: str = ROOT):
    """(relative path, parsed module) of every Python file of the library and the CLI."""
    for top in ("ocikit", "cli"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, root), ast.parse(open(path, encoding="utf-8").read())


# build_manifest(layers, config, artifact_type, subject, …) / build_index(manifests, artifact_type, subject, …)
_SUBJECT_POSITION = {"build_manifest": 3, "build_index": 2}


def _builds_with_subject(call: ast.Call) -> bool:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name not in _SUBJECT_POSITION:
        return False
    keywords = {k.arg for k in call.keywords}
    return "subject" in keywords or None in keywords or len(call.args) > _SUBJECT_POSITION[name]


def referrer_builders(root: str = ROOT) -> list[str]:
    """Places that build a manifest with a ``subject`` or write a ``subject`` field by hand."""
    found = []
    for path, tree in _library_sources(root):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _builds_with_subject(node):
                found.append(f"{path}:{node.lineno}")
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                if isinstance(node.slice, ast.Constant) and node.slice.value == "subject":
                    found.append(f"{path}:{node.lineno}")
    return found


def spec_json_names(root: str = ROOT) -> list[str]:
    """Places whose code (not docstrings) names a spack ``spec.json`` file or path."""
    found = []
    for path, tree in _library_sources(root):
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if node.value == "spec.json" or node.value.endswith("/spec.json"):
                    found.append(f"{path}:{node.lineno}")
    return found


def test_only_graph_attach_builds_referrer_manifests():
    """One way to attach a referrer: every manifest with a subject is built in ocikit/graph/attach.py.

    (The serializer itself, ocikit/spec/manifest.py, writes the field it is asked for.)
    """
    allowed = ("ocikit/graph/attach.py:", "ocikit/spec/manifest.py:")
    builders = referrer_builders()
    assert [b for b in builders if not b.startswith(allowed)] == []
    assert any(b.startswith("ocikit/graph/attach.py:") for b in builders)  # the check still sees the one home


def test_only_the_spec_file_reader_names_spec_json():
    """One spack spec.json reader: only ocikit/spack/specfile.py knows the file's name and opens it."""
    names = spec_json_names()
    assert [n for n in names if not n.startswith("ocikit/spack/specfile.py:")] == []
    assert names  # the reader itself is found
