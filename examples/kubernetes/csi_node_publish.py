"""The node half of a CSI driver for ocikit views, on :class:`ocikit.NodeCache`.

A real driver wraps these functions in the CSI gRPC ``Node`` service (``csi.v1``) and runs as
a privileged DaemonSet with the cache on a hostPath; the gRPC plumbing is left out so the
mapping stays visible. Volume attributes (``volumeAttributes`` of an inline CSI volume)::

    reference: registry.example.com/views/flux@sha256:…   # what to mount
    mountPath: /opt/view                                    # where the pod will see it (relocation)
    linkMode:  hardlink                                     # hardlink | reflink | copy | auto
    appImage:  registry.example.com/apps/flux-runner:1.0    # the pod's image: check the view against it
    mode:      publish                                      # publish (a full tree) | mount (lazy FUSE)

A CSI driver sees the node, not the pod's image, so on its own it would check the view against
the node's (or the driver image's) glibc. ``appImage`` names the image that will load the view;
``NodeCache.ensure`` checks the view's compatibility metadata against that image's glibc,
libstdc++ and MPI (read from a few of its files, cached by digest under the cache's ``facts/``)
for every pod, even when the tree is already cached. (With ``podInfoOnMount`` the driver could
instead look the pod up and take its container image.)

``mode: mount`` starts the pod in seconds whatever the view's size: ``NodeCache.mount`` serves
the view read-only over FUSE, fetching (and verifying) only the spans the pod reads, into the
cache's ``mount/`` that every pod of the node shares and ``gc`` bounds (docs/mount.md). The
mount is detached: its daemon outlives a restart of the driver, and NodeUnpublishVolume then
unmounts it by path.

Compared with oras-csi: the cache is keyed by manifest digest with a per-digest lock, so two
pods starting together download once and neither sees a partial tree; trees are unpacked,
verified and relocated; they survive plugin restarts; ``gc`` bounds the disk they use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping

import ocikit

CACHE = ocikit.NodeCache(os.environ.get("OCIKIT_CACHE", "/var/lib/ocikit"))
MOUNTS: dict[str, ocikit.MountHandle] = {}  # target path -> the lazy mount serving it
AUTH_FILES: dict[str, str] = {}  # target path -> the pull secret a lazy mount still reads with


def node_publish_volume(
    volume_context: Mapping[str, str], target_path: str, readonly: bool, secrets: Mapping[str, str]
) -> None:
    """NodePublishVolume: make the view of ``volume_context["reference"]`` appear at ``target_path``."""
    auth_file = _docker_config(secrets) if secrets else ""
    cache = ocikit.NodeCache(CACHE.root, options=ocikit.Options(registry_config=auth_file))
    policy = ocikit.PullPolicy(against=volume_context.get("appImage", ""))
    if volume_context.get("mode") == "mount":
        # A lazy mount reads from the registry for as long as it is mounted: its credentials
        # live until NodeUnpublishVolume.
        os.makedirs(target_path, exist_ok=True)
        MOUNTS[target_path] = cache.mount(
            volume_context["reference"], target_path, policy,
            relocate_to=volume_context.get("mountPath"), allow_other=True, detach=True,
        )
        AUTH_FILES[target_path] = auth_file
        return
    try:
        entry = cache.ensure(volume_context["reference"], policy)  # downloads once per node, waits if another pod is
    finally:
        if auth_file:  # the pod's secret never outlives the download
            os.unlink(auth_file)
    cache.publish(
        entry,
        target_path,
        # hardlinks share the cache's inodes: only for a read-only volume (refused otherwise)
        mode=volume_context.get("linkMode", "hardlink" if readonly else "auto"),
        read_only=readonly,
        relocate_to=volume_context.get("mountPath"),  # the path inside the container, not target_path
    )
    if readonly:  # real protection: hardlinked files share inodes with the cache
        subprocess.run(["mount", "--bind", target_path, target_path], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", target_path], check=True)


def node_unpublish_volume(target_path: str) -> None:
    """NodeUnpublishVolume: unmount and remove the pod's copy (the cached tree stays)."""
    handle = MOUNTS.pop(target_path, None)
    if handle is not None:
        handle.unmount()  # the spans it fetched stay in the cache for the next pod
        os.rmdir(target_path)
        auth_file = AUTH_FILES.pop(target_path, "")
        if auth_file:
            os.unlink(auth_file)
        return
    if os.path.ismount(target_path):  # a bind mount, or a lazy mount from before a driver restart
        subprocess.run(["umount", target_path], check=True)
    shutil.rmtree(target_path, ignore_errors=True)


def garbage_collect() -> None:
    """Run periodically (or on disk pressure): keep the cache under 200 GiB and 30 days."""
    CACHE.gc(max_bytes=200 << 30, max_age=30 * 86400)


def _docker_config(secrets: Mapping[str, str]) -> str:
    """Write the pod's pull secret (``.dockerconfigjson``) to a private file (mode 0600) for the
    credential lookup; the caller deletes it when the download is done."""
    handle, path = tempfile.mkstemp(prefix="ocikit-auth-", suffix=".json")
    with os.fdopen(handle, "w") as fh:
        fh.write(secrets[".dockerconfigjson"])
    return path


if __name__ == "__main__":  # a local dry run: publish an OCI layout into a directory
    import sys

    node_publish_volume({"reference": sys.argv[1], "mountPath": sys.argv[2]}, sys.argv[2], False, {})
    print(f"published {sys.argv[1]} at {sys.argv[2]}")
