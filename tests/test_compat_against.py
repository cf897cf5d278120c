"""``--against APP_IMAGE``: check a view against the application image that will load it.

The app images are real images built here from real files: a bookworm-style root with this
machine's glibc (2.36 on Debian 12) loader, libc.so.6, libstdc++ and libgcc_s; an "older
distribution" whose libc.so.6, ld-linux, libstdc++.so.6 and libgcc_s.so.1 are stubs built here
with gcc and linker version scripts that stop at GLIBC_2.28 / GLIBCXX_3.4.25 — they define the
version nodes Debian 10's libraries define, and no real code; images adding Debian's libopenmpi3
(libmpi.so.40) or libmpich12 (libmpich.so.12) packages. The views are the real spack copy view,
Debian's ompi_info / mpichversion, and a C++ program built here that needs GLIBCXX_3.4.30.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys

import pytest
from compat_support import debian_libs, package_files, spack_view_fixture, validator  # noqa: F401
from environment import require_binary

from ocikit.compat.app_image import AppImage, FactsCache, learn_image_facts
from ocikit.compat.by_reference import check_target
from ocikit.compat.check import MISSING, OK, TOO_OLD
from ocikit.content.base import fetch_manifest, push_bytes, push_manifest
from ocikit.content.layout import LayoutStore
from ocikit.content.open import open_store
from ocikit.digest import digest_file
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor
from ocikit.spec.manifest import build_manifest, canonical_json

LIBDIR = "usr/lib/x86_64-linux-gnu"
SYSTEM_LIBDIR = "/usr/lib/x86_64-linux-gnu"
HOST_GLIBC = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]  # what the bookworm-style image carries

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the images carry this x86_64 machine's glibc")


# -- building real images ----------------------------------------------------------------


def _layer(root: str, out: str) -> tuple[str, str]:
    """A GNU tar of ``root`` compressed with gzip: (path of the .tar.gz, diff_id)."""
    tar = out + ".tar"
    subprocess.run(["tar", "--format=gnu", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                    "-C", root, "-cf", tar, "."], check=True)
    diff_id = digest_file(tar)[0]
    with open(tar, "rb") as src, open(out, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(tar)
    return out, diff_id


def push_rootfs(store, roots: list[str], work: str, tag: str, env: list[str] | None = None) -> Descriptor:
    """An image with one tar+gzip layer per directory in ``roots`` (bottom first)."""
    descs, diff_ids = [], []
    for i, root in enumerate(roots):
        path, diff_id = _layer(root, os.path.join(work, f"{tag}-{i}.tar.gz"))
        digest, size = digest_file(path)
        desc = Descriptor(mt.OCI_LAYER_GZIP, digest, size)
        with open(path, "rb") as fh:
            store.push(desc, fh)
        descs.append(desc)
        diff_ids.append(diff_id)
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": env or []},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_desc = push_bytes(store, mt.OCI_CONFIG, canonical_json(config))
    return push_manifest(store, build_manifest(descs, config=config_desc), tag=tag)


def _copy(source: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.realpath(source), target)


def bookworm_root(root: str) -> str:
    """Merged /usr like Debian 12: /lib and /lib64 are links; this machine's glibc 2.36 and libstdc++."""
    os.makedirs(os.path.join(root, LIBDIR))
    os.makedirs(os.path.join(root, "usr/lib64"))
    os.symlink("usr/lib", os.path.join(root, "lib"))
    os.symlink("usr/lib64", os.path.join(root, "lib64"))
    for name in ("libc.so.6", "ld-linux-x86-64.so.2", "libm.so.6", "libgcc_s.so.1"):
        _copy(os.path.join(SYSTEM_LIBDIR, name), os.path.join(root, LIBDIR, name))
    real = os.path.basename(os.path.realpath(os.path.join(SYSTEM_LIBDIR, "libstdc++.so.6")))
    _copy(os.path.join(SYSTEM_LIBDIR, real), os.path.join(root, LIBDIR, real))
    os.symlink(real, os.path.join(root, LIBDIR, "libstdc++.so.6"))
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", os.path.join(root, "usr/lib64/ld-linux-x86-64.so.2"))
    return root


def _versioned_stub(out: str, soname: str, nodes: list[str], work: str) -> str:
    """A shared library that *defines* the version nodes ``nodes`` (each with one stub symbol)
    and nothing else: what an older distribution's library offers the loader, built by gcc."""
    script = os.path.join(work, soname + ".map")
    source = os.path.join(work, soname + ".c")
    with open(script, "w") as fh:
        previous = ""
        for node in nodes:
            symbol = "stub_" + node.replace(".", "_")
            fh.write(f"{node} {{ global: {symbol}; }}{' ' + previous if previous else ''};\n")
            previous = node
    with open(source, "w") as fh:
        fh.writelines(f"int stub_{n.replace('.', '_')}(void) {{ return 0; }}\n" for n in nodes)
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", f"-Wl,-soname,{soname}", f"-Wl,--version-script={script}",
                    "-o", out, source], check=True)
    return out


def old_distro_root(root: str, work: str) -> str:
    """Split /lib like Debian 10: libc-2.28.so behind the libc.so.6 link; built here (see module doc)."""
    libdir = os.path.join(root, "lib/x86_64-linux-gnu")
    usr_libdir = os.path.join(root, LIBDIR)
    os.makedirs(libdir)
    os.makedirs(usr_libdir)
    os.makedirs(os.path.join(root, "lib64"))
    glibc = [f"GLIBC_2.{n}" for n in (2, 3, 4, 14, 17, 27, 28)]
    _versioned_stub(os.path.join(libdir, "libc-2.28.so"), "libc.so.6", ["GLIBC_2.2.5", *glibc], work)
    os.symlink("libc-2.28.so", os.path.join(libdir, "libc.so.6"))
    _versioned_stub(os.path.join(libdir, "ld-2.28.so"), "ld-linux-x86-64.so.2", ["GLIBC_2.2.5", "GLIBC_2.3"], work)
    os.symlink("ld-2.28.so", os.path.join(libdir, "ld-linux-x86-64.so.2"))
    os.symlink("/lib/x86_64-linux-gnu/ld-2.28.so", os.path.join(root, "lib64/ld-linux-x86-64.so.2"))
    cxx = [f"GLIBCXX_3.4.{n}" for n in range(0, 26)] + [f"CXXABI_1.3.{n}" for n in range(0, 12)]
    _versioned_stub(os.path.join(usr_libdir, "libstdc++.so.6.0.25"), "libstdc++.so.6", cxx, work)
    os.symlink("libstdc++.so.6.0.25", os.path.join(usr_libdir, "libstdc++.so.6"))
    _versioned_stub(os.path.join(libdir, "libgcc_s.so.1"), "libgcc_s.so.1", ["GCC_3.0", "GCC_3.3", "GCC_4.2.0"], work)
    return root


def filler_root(root: str, megabytes: int, seed: int = 15) -> str:
    """Incompressible application files: what makes an image big."""
    os.makedirs(os.path.join(root, "opt/app"))
    rnd = random.Random(seed)
    with open(os.path.join(root, "opt/app/data.bin"), "wb") as fh:
        fh.write(rnd.randbytes(megabytes << 20))
    return root


def mpi_root(debian_root: str, root: str, package: str) -> str:
    for relative in package_files(debian_root, package):
        if ".so" not in relative:
            continue
        source, target = os.path.join(debian_root, relative), os.path.join(root, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    return root


def cxx_view(root: str, work: str) -> str:
    """A program built here with g++ 12: std::condition_variable::wait needs GLIBCXX_3.4.30."""
    require_binary("g++")
    source = os.path.join(work, "app.cc")
    with open(source, "w") as fh:
        fh.write("#include <condition_variable>\n#include <mutex>\n#include <thread>\n"
                 "std::mutex m; std::condition_variable cv; bool ready = false;\n"
                 "int main() { std::thread t([]{ std::lock_guard<std::mutex> g(m); ready = true; cv.notify_one(); });\n"
                 "  std::unique_lock<std::mutex> lock(m); cv.wait(lock, []{ return ready; }); t.join(); }\n")
    os.makedirs(os.path.join(root, "bin"))
    subprocess.run(["g++", "-O1", "-o", os.path.join(root, "bin/app"), source], check=True)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A layout holding the app images: {name: "oci:DIR:TAG"}."""
    require_binary("gcc", "tar")
    work = tmp_path_factory.mktemp("against")
    layout = str(work / "layout")
    store = LayoutStore(layout)

    def root(name: str) -> str:
        path = str(work / name)
        os.makedirs(path)
        return path

    big = filler_root(root("filler"), 6)
    push_rootfs(store, [big, bookworm_root(root("bookworm"))], str(work), "bookworm")
    push_rootfs(store, [old_distro_root(root("old"), str(work))], str(work), "old")
    return {"layout": layout, "work": str(work), "store": store, "filler": big,
            **{n: f"oci:{layout}:{n}" for n in ("bookworm", "old")}}


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    work = tmp_path_factory.mktemp("views")
    return {"cxx": cxx_view(str(work / "cxx"), str(work))}


def _item(report, kind: str, name: str = ""):
    return next(i for i in report.items if i.requirement.kind == kind and (not name or i.requirement.name == name))


# -- the checks --------------------------------------------------------------------------


def test_cxx_view_is_compatible_with_bookworm_and_names_the_facts(images, views, tmp_path):
    report = check_target(views["cxx"], against=images["bookworm"], facts_cache=str(tmp_path / "facts"))
    assert report.compatible, report.explain()
    glibcxx = _item(report, "glibcxx")
    assert glibcxx.requirement.minimum == "3.4.30" and glibcxx.status == OK
    assert "app image" in glibcxx.why and "3.4.30" in glibcxx.why
    layer, path = glibcxx.source.rsplit(":/", 1)
    assert layer.startswith("sha256:") and path.startswith(f"{LIBDIR}/libstdc++.so.6.0.")
    libc = _item(report, "libc")
    assert libc.status == OK and libc.source.endswith(f"{LIBDIR}/libc.so.6")
    assert report.host.glibc == HOST_GLIBC and report.host.label == f"app image {images['bookworm']}"


def test_cxx_view_against_the_older_distribution_is_too_old(images, views, tmp_path):
    report = check_target(views["cxx"], against=images["old"], facts_cache=str(tmp_path / "facts"))
    assert not report.compatible
    glibcxx = _item(report, "glibcxx")
    assert glibcxx.status == TOO_OLD and "3.4.25 < 3.4.30" in glibcxx.why
    assert glibcxx.source.endswith("usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.25")
    libc = _item(report, "libc")
    assert libc.status == TOO_OLD and "2.28 <" in libc.why
    assert libc.source.endswith("lib/x86_64-linux-gnu/libc-2.28.so")  # the link's target was read
    assert "cannot run on app image" in report.explain()


def test_spack_view_against_bookworm_and_the_older_distribution(images, spack_view_fixture, tmp_path):  # noqa: F811
    facts = str(tmp_path / "facts")
    good = check_target(spack_view_fixture["view"], against=images["bookworm"], facts_cache=facts)
    assert good.compatible, good.explain()
    needs = _item(good, "libc").requirement.minimum
    assert needs and needs > "2.28"
    bad = check_target(spack_view_fixture["view"], against=images["old"], facts_cache=facts)
    libc = _item(bad, "libc")
    assert not bad.compatible and libc.status == TOO_OLD and f"2.28 < {needs}" in libc.why


def ocikit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocikit_cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_exit_7_and_json_report(images, views, tmp_path):
    facts = str(tmp_path / "facts")
    result = ocikit("compat", "check", views["cxx"], "--against", images["old"], "--facts-cache", facts)
    assert result.returncode == 7, result.stderr
    assert "too old" in result.stdout and "libstdc++.so.6.0.25" in result.stdout
    assert "all layers read" in result.stdout and "bytes read (stream)" in result.stdout  # what the facts cost
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = ocikit("compat", "check", views["cxx"], "--against", images["bookworm"], "--facts-cache", facts, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    validator("ocikit.compat.check-report.v1.schema.json").validate(document)
    assert document["host"]["label"].startswith("app image") and document["host"]["glibc"] == HOST_GLIBC
    assert all("source" in item for item in document["items"] if item["requirement"]["kind"] in ("libc", "glibcxx"))


def test_facts_are_cached_by_manifest_digest(images, views, tmp_path):
    facts_dir = str(tmp_path / "facts")
    store = images["store"]
    desc = store.resolve("bookworm")
    first = learn_image_facts(store, desc, reference="bookworm", cache_dir=facts_dir)
    assert first.via == "stream" and first.bytes_read > 0
    assert os.listdir(facts_dir) == [desc.digest.replace(":", "-") + ".json"]
    again = learn_image_facts(store, desc, reference="bookworm", cache_dir=facts_dir)
    assert again.via == "cache" and again.bytes_read == 0 and again.glibc == first.glibc == HOST_GLIBC
    assert FactsCache(facts_dir).get(desc.digest) is not None


def test_streaming_stops_once_every_needed_path_is_settled(images, tmp_path):
    """The libraries are in the top layer: the 6 MiB layer below is never read."""
    store = images["store"]
    desc = store.resolve("bookworm")
    facts = learn_image_facts(store, desc, reference="bookworm", cache_dir=str(tmp_path / "f"))
    assert facts.layers == 2 and facts.layers_read == 1 and not facts.complete
    assert facts.bytes_read < (6 << 20)
    # a library the image lacks can only be proven absent by the bottom layer: every layer is read
    from ocikit.compat.requirements import Requirement

    need = [Requirement(kind="library", name="libmpi.so.40", category="mpi")]
    facts = learn_image_facts(store, desc, reference="bookworm", requirements=need, cache_dir=str(tmp_path / "f"))
    assert facts.layers_read == 2 and facts.complete and "libmpi.so.40" not in facts.libraries


def test_whiteout_in_a_later_layer_wins(images, views, tmp_path):
    """A top layer that deletes libstdc++.so.6: the view's GLIBCXX need is unmet."""
    store = images["store"]
    top = str(tmp_path / "top")
    os.makedirs(os.path.join(top, LIBDIR))
    open(os.path.join(top, LIBDIR, ".wh.libstdc++.so.6"), "w").close()
    bookworm = os.path.join(images["work"], "bookworm")
    push_rootfs(store, [images["filler"], bookworm, top], str(tmp_path), "nostdcxx")
    report = check_target(views["cxx"], against=f"oci:{images['layout']}:nostdcxx",
                          facts_cache=str(tmp_path / "facts"))
    glibcxx = _item(report, "glibcxx")
    assert not report.compatible and glibcxx.status == MISSING and "no libstdc++.so.6" in glibcxx.why
    assert _item(report, "libc").status == OK


def test_app_image_node_facts_stay_the_nodes(images):
    """CPU and GPU driver are the node's: only the userland comes from the image."""
    from ocikit.compat.host import HostInfo

    node = HostInfo(machine="x86_64", cpu_vendor="TestVendor", cpu_flags=frozenset({"sse2"}), nvidia_driver="535.1")
    host = AppImage(images["bookworm"], node=node).host_for([])
    assert host.cpu_vendor == "TestVendor" and host.nvidia_driver == "535.1" and host.glibc == HOST_GLIBC
    assert host.machine == "x86_64" and host.libc == "glibc" and host.sources["machine"] == "config"


# -- MPI: Debian's libopenmpi3 and libmpich12 in the app image -----------------------------


@pytest.fixture(scope="module")
def mpi_images(images, debian_libs, tmp_path_factory):  # noqa: F811
    work = str(tmp_path_factory.mktemp("mpi"))
    store = images["store"]
    bookworm = os.path.join(images["work"], "bookworm")
    out = {}
    for tag, package in (("openmpi", "libopenmpi3"), ("mpich", "libmpich12")):
        layer = mpi_root(debian_libs, os.path.join(work, tag), package)
        push_rootfs(store, [bookworm, layer], work, tag)
        out[tag] = f"oci:{images['layout']}:{tag}"
    views = {}
    for name, program in (("ompi", "usr/bin/ompi_info"), ("mpich", "usr/bin/mpichversion")):
        target = os.path.join(work, "view-" + name, program)
        os.makedirs(os.path.dirname(target))
        shutil.copy2(os.path.join(debian_libs, program), target)
        views[name] = os.path.dirname(os.path.dirname(os.path.dirname(target)))
    out["views"] = views
    return out


def test_open_mpi_view_against_open_mpi_and_mpich_images(mpi_images, tmp_path):
    facts = str(tmp_path / "facts")
    good = check_target(mpi_images["views"]["ompi"], against=mpi_images["openmpi"], facts_cache=facts)
    assert good.compatible, good.explain()
    libmpi = _item(good, "library", "libmpi.so.40")
    assert libmpi.status == OK and libmpi.source.rsplit(":/", 1)[1] == f"{LIBDIR}/libmpi.so.40"

    bad = check_target(mpi_images["views"]["ompi"], against=mpi_images["mpich"], facts_cache=facts)
    libmpi = _item(bad, "library", "libmpi.so.40")
    assert not bad.compatible and libmpi.status == MISSING
    assert "libmpich.so.12" in libmpi.why and "MPICH ABI" in libmpi.why and "different MPI ABI" in libmpi.why
    assert _item(bad, "libc").status == OK  # only the MPI ABI is wrong


def test_mpich_view_against_the_open_mpi_image(mpi_images, tmp_path):
    report = check_target(mpi_images["views"]["mpich"], against=mpi_images["openmpi"],
                          facts_cache=str(tmp_path / "facts"))
    libmpich = _item(report, "library", "libmpich.so.12")
    assert not report.compatible and libmpich.status == MISSING
    assert "libmpi.so.40 (Open MPI" in libmpich.why


# -- over HTTP: bytes read at a proxy, with and without zTOCs -------------------------------


@pytest.mark.registry
def test_bytes_read_through_ztocs_are_far_less_than_the_image(images, views, registry, tmp_path):
    from ocikit.testing.fault_proxy import FaultProxy
    from ocikit.ztoc.api import build_ztocs

    bookworm = os.path.join(images["work"], "bookworm")
    store, _ = open_store(f"{registry}/against/app:plain")
    for seed, tag in enumerate(("plain", "indexed")):  # two images: zTOCs are attached to one
        big = filler_root(str(tmp_path / f"big-{tag}"), 20, seed)
        desc = push_rootfs(store, [bookworm, big], str(tmp_path), tag)  # the big layer on top
    image_size = sum(layer.size for layer in fetch_manifest(store, desc).layers)
    report = build_ztocs(f"{registry}/against/app:indexed", min_layer_size=0)
    assert [o.status for o in report.layers] == ["built", "built"]

    proxy = FaultProxy(registry)
    try:
        cost = {}
        for tag in ("plain", "indexed"):
            proxy.clear()
            result = check_target(views["cxx"], against=f"{proxy.host}/against/app:{tag}",
                                  facts_cache=str(tmp_path / f"facts-{tag}"))
            assert result.compatible, result.explain()
            assert f"{LIBDIR}/libstdc++.so.6.0." in _item(result, "glibcxx").source
            cost[tag] = proxy.body_bytes
            facts = AppImage(f"{proxy.host}/against/app:{tag}", cache_dir=str(tmp_path / f"facts-{tag}")).facts()
            assert facts.via == "cache"  # the second look costs nothing but resolving the tag
            learnt = FactsCache(str(tmp_path / f"facts-{tag}")).get(facts.digest)
            assert learnt is not None and 0 < learnt.bytes_read <= cost[tag]  # ocikit's own count agrees
    finally:
        proxy.close()
    assert cost["plain"] >= image_size  # streamed: the big top layer has to be read through
    assert cost["indexed"] < image_size / 4  # zTOCs + the spans of libc.so.6 and libstdc++ only


# -- pull --against and the node cache ------------------------------------------------------


@pytest.fixture
def view_artifact(images, views, tmp_path):
    """An artifact in its own layout with the C++ view's compatibility metadata attached."""
    from ocikit.compat.artifact import attach_compat
    from ocikit.compat.scan import scan
    from ocikit.testing.store_tests import make_artifact

    layout = str(tmp_path / "views-layout")
    store = LayoutStore(layout)
    subject = make_artifact(store, b"the view's bytes")
    store.tag(subject, "v1")
    attach_compat(store, subject, scan(views["cxx"]))
    return f"oci:{layout}:v1"


def test_pull_against_refuses_before_extracting_and_accepts_the_right_image(images, view_artifact, tmp_path,
                                                                              monkeypatch):
    import ocikit
    from ocikit.errors import IncompatibleError
    from ocikit.pull.policy import PullPolicy

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    dest = str(tmp_path / "dest")
    with pytest.raises(IncompatibleError, match=r"app image .*:old.*GLIBCXX.* 3\.4\.25 < 3\.4\.30"):
        ocikit.pull(view_artifact, dest, PullPolicy(against=images["old"]))
    assert not os.path.exists(dest)
    result = ocikit.pull(view_artifact, dest, PullPolicy(against=images["bookworm"]))
    assert not result.unchanged and os.path.isfile(os.path.join(dest, ".ocikit", "ready.json"))
    assert os.listdir(tmp_path / "xdg" / "ocikit" / "image-facts")  # facts cached under the user's cache

    by_reference = check_target(view_artifact, against=images["old"])  # the view's referrer, not a scan
    assert not by_reference.compatible and _item(by_reference, "glibcxx").status == TOO_OLD

    cli = ocikit_cli_pull(view_artifact, str(tmp_path / "dest2"), images["old"], tmp_path)
    assert cli.returncode == 7 and "libstdc++.so.6.0.25" in cli.stderr and "Traceback" not in cli.stderr


def test_mount_against_refuses_before_mounting(images, view_artifact, tmp_path):
    """A lazy mount checks the same app image a pull would, before anything is mounted."""
    import ocikit
    from ocikit.errors import IncompatibleError
    from ocikit.pull.policy import PullPolicy

    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with pytest.raises(IncompatibleError, match=r"app image .*:old.*GLIBCXX"):
        ocikit.mount(view_artifact, str(mountpoint), PullPolicy(against=images["old"]), cache=str(tmp_path / "c"))
    assert not os.path.ismount(mountpoint)
    assert os.listdir(tmp_path / "c" / "facts")  # the app image's facts, kept beside the mount cache


def ocikit_cli_pull(reference: str, dest: str, against: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg-cli")}
    return subprocess.run([sys.executable, "-m", "ocikit_cli.main", "pull", reference, dest, "--against", against],
                          capture_output=True, text=True, timeout=300, env=env)


def test_node_cache_checks_every_pod_image_even_for_a_cached_tree(images, view_artifact, tmp_path):
    from ocikit.errors import IncompatibleError
    from ocikit.pull.nodecache import NodeCache
    from ocikit.pull.policy import PullPolicy

    cache = NodeCache(str(tmp_path / "node"))
    entry = cache.ensure(view_artifact, PullPolicy(against=images["bookworm"]))
    assert os.path.isdir(entry.path)
    assert os.listdir(cache.facts_dir)  # the app image's facts live in the node cache
    with pytest.raises(IncompatibleError, match="cannot run on app image"):
        cache.ensure(view_artifact, PullPolicy(against=images["old"]))  # the tree exists; this pod cannot use it
    pinned = view_artifact.rsplit(":", 1)[0] + "@" + entry.digest
    with pytest.raises(IncompatibleError):
        cache.ensure(pinned, PullPolicy(against=images["old"]))
    assert cache.ensure(pinned, PullPolicy(against=images["bookworm"])).digest == entry.digest


def test_csi_example_checks_the_pods_image(images, view_artifact, tmp_path, monkeypatch):
    import importlib.util

    from ocikit.errors import IncompatibleError

    monkeypatch.setenv("OCIKIT_CACHE", str(tmp_path / "cache"))
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "kubernetes", "csi_node_publish.py")
    spec = importlib.util.spec_from_file_location("csi_node_publish", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = str(tmp_path / "kubelet" / "pod-1" / "volume")
    context = {"reference": view_artifact, "mountPath": "/opt/view", "appImage": images["old"]}
    with pytest.raises(IncompatibleError, match="GLIBCXX"):
        module.node_publish_volume(context, target, False, {})
    assert not os.path.exists(target)
    module.node_publish_volume({**context, "appImage": images["bookworm"]}, target, False, {})
    assert os.path.isfile(os.path.join(target, ".ocikit", "ready.json"))


def test_a_static_image_has_no_c_library_and_a_missing_image_is_exit_3(images, views, tmp_path):
    store = images["store"]
    static = str(tmp_path / "static")
    os.makedirs(os.path.join(static, "bin"))
    shutil.copy2("/bin/true", os.path.join(static, "bin/true"))  # any file: no loader, no libc
    push_rootfs(store, [static], str(tmp_path), "static")
    report = check_target(views["cxx"], against=f"oci:{images['layout']}:static", facts_cache=str(tmp_path / "f"))
    libc = _item(report, "libc")
    assert not report.compatible and libc.status == MISSING and "C library is none" in libc.why

    result = ocikit("compat", "check", views["cxx"], "--against", f"oci:{images['layout']}:no-such-tag",
                    "--facts-cache", str(tmp_path / "f"))
    assert result.returncode == 3 and result.stderr.count("\n") == 1 and "app image" in result.stderr


def test_files_named_like_libc_cannot_fill_the_memory(images, tmp_path, monkeypatch):
    """Attack: a top layer with many big files named libc-2.*: the walk keeps at most MAX_KEPT bytes."""
    from ocikit.compat import app_image

    monkeypatch.setattr(app_image, "MAX_KEPT", 3 << 20)
    store = images["store"]
    junk = str(tmp_path / "junk")
    os.makedirs(os.path.join(junk, LIBDIR))
    rnd = random.Random(1)
    for i in range(8):
        with open(os.path.join(junk, LIBDIR, f"libc-2.{i}-junk.so"), "wb") as fh:
            fh.write(rnd.randbytes(1 << 20))
    push_rootfs(store, [os.path.join(images["work"], "bookworm"), junk], str(tmp_path), "junk")
    kept = []
    real = app_image._Walk._may_keep

    def spy(self, size):
        allowed = real(self, size)
        kept.append(self.kept_bytes)
        return allowed

    monkeypatch.setattr(app_image._Walk, "_may_keep", spy)
    facts = learn_image_facts(store, store.resolve("junk"), reference="junk", cache_dir=str(tmp_path / "f"))
    assert max(kept) <= 3 << 20 and len(kept) > 3
    assert facts.libc == "glibc" and facts.glibc == ""  # the real libc.so.6 no longer fit: unknown, not wrong
