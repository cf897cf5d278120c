"""What well-known sonames say about a view: MPI flavour, GPU stack, fabric, glibc.

A soname is the stable name the dynamic loader looks
for (``DT_NEEDED``), so it identifies an ABI, not a package version: ``libmpi.so.40`` is
Open MPI 3.x–5.x, ``libmpi.so.12`` is the MPICH ABI shared by MPICH, Intel MPI, MVAPICH2
and Cray (and, unfortunately, by the long-gone Open MPI 1.10 — spack metadata settles
that when present).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Sonames that glibc itself installs. When a view needs one of them the host's C library
# provides it, and the GLIBC_x.y version requirement covers it; they are never reported
# as separate missing libraries. (libcrypt is libxcrypt on current distributions: not here.)
GLIBC_SONAMES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libnsl.so.1",
        "libBrokenLocale.so.1",
        "libmvec.so.1",
        "libthread_db.so.1",
        "libc_malloc_debug.so.0",
        "libnss_files.so.2",
        "libnss_dns.so.2",
        "libnss_compat.so.2",
        "libnss_hesiod.so.2",
        "libmemusage.so",
        "libpcprofile.so",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "ld-linux.so.2",
        "ld64.so.2",
        "ld64.so.1",
        "ld-linux-riscv64-lp64d.so.1",
        "ld-linux-armhf.so.3",
    }
)


@dataclass(frozen=True)
class LibraryRole:
    """What a soname means: ``category`` (mpi, gpu, fabric) and ``name`` (openmpi, cuda, ucx…)."""

    category: str
    name: str
    detail: str
    # The host, never the view, supplies this library (the NVIDIA driver's libcuda.so.1).
    host_only: bool = False
    # ABI major encoded in the soname where it matters (CUDA runtime 12, HIP 5).
    major: str = ""


def _rule(pattern: str, category: str, name: str, detail: str, host_only: bool = False):
    return re.compile(pattern), category, name, detail, host_only


# First match wins; a named group "major" becomes LibraryRole.major.
_RULES = [
    # MPI
    _rule(r"^libmpi\.so\.40$", "mpi", "openmpi", "Open MPI 3.x-5.x ABI (libmpi.so.40)"),
    _rule(r"^libmpi\.so\.20$", "mpi", "openmpi", "Open MPI 2.x ABI (libmpi.so.20)"),
    _rule(
        r"^lib(mpi_(mpifh|usempif08|usempi_ignore_tkr|cxx|java)|open-pal|open-rte)(-\w+)?\.so\.(40|20)$",
        "mpi",
        "openmpi",
        "Open MPI helper library",
    ),
    _rule(r"^libmpi_cray\.so\.12$", "mpi", "cray-mpich", "Cray MPICH (libmpi_cray.so.12)"),
    _rule(r"^libmpi_abi\.so\.1$", "mpi", "mpi-abi", "MPI-5 standard ABI (libmpi_abi.so.1)"),
    _rule(r"^libmpi\.so\.12$", "mpi", "mpich", "MPICH ABI: MPICH, Intel MPI, MVAPICH2, Cray (libmpi.so.12)"),
    _rule(r"^libmpich\.so\.12$", "mpi", "mpich", "MPICH (Debian soname libmpich.so.12, MPICH ABI)"),
    _rule(r"^libmpi(fort|cxx|chfort|chcxx)\.so\.12$", "mpi", "mpich", "MPICH ABI Fortran/C++ binding"),
    # GPU stacks
    _rule(r"^libcuda\.so\.1$", "gpu", "cuda", "NVIDIA driver API (libcuda.so.1, from the host driver)", True),
    _rule(r"^libnvidia-ml\.so\.1$", "gpu", "cuda", "NVIDIA management library (host driver)", True),
    _rule(r"^libcudart\.so\.(?P<major>\d+)$", "gpu", "cuda", "CUDA runtime"),
    _rule(
        r"^lib(nccl|cublas|cublasLt|cufft|cusparse|cusolver|curand|nvrtc|nvJitLink|cudnn)\.so\.(?P<major>\d+)$",
        "gpu",
        "cuda",
        "CUDA library",
    ),
    _rule(r"^libamdhip64\.so\.(?P<major>\d+)$", "gpu", "rocm", "ROCm HIP runtime"),
    _rule(
        r"^lib(hsa-runtime64|rocblas|hipblas|rccl|rocfft|rocsparse|rocrand|MIOpen)\.so\.\d+$",
        "gpu",
        "rocm",
        "ROCm library",
    ),
    _rule(r"^libOpenCL\.so\.1$", "gpu", "opencl", "OpenCL ICD loader (needs a vendor ICD on the host)"),
    _rule(r"^libze_loader\.so\.1$", "gpu", "level-zero", "oneAPI Level Zero loader"),
    # Fabrics and process management
    _rule(r"^libfabric\.so\.1$", "fabric", "libfabric", "OpenFabrics Interfaces (libfabric)"),
    _rule(r"^libuc[pst]\.so\.0$", "fabric", "ucx", "Unified Communication X (UCX)"),
    _rule(r"^libibverbs\.so\.1$", "fabric", "ibverbs", "RDMA verbs (rdma-core)"),
    _rule(r"^librdmacm\.so\.1$", "fabric", "rdmacm", "RDMA connection manager (rdma-core)"),
    _rule(r"^libpsm2\.so\.2$", "fabric", "psm2", "Intel Omni-Path PSM2"),
    _rule(r"^libcxi\.so\.1$", "fabric", "cxi", "HPE Slingshot CXI"),
    _rule(r"^libpmix\.so\.2$", "fabric", "pmix", "PMIx process management"),
    _rule(r"^libpmi2?\.so\.0$", "fabric", "pmi", "PMI/PMI2 process management (Slurm)"),
]


def classify_soname(soname: str) -> LibraryRole | None:
    """The role of ``soname``, or None for a library ocikit has no special knowledge of."""
    for pattern, category, name, detail, host_only in _RULES:
        match = pattern.match(soname)
        if match:
            major = match.groupdict().get("major") or ""
            return LibraryRole(category, name, detail, host_only, major)
    return None


def is_glibc_soname(soname: str) -> bool:
    return soname in GLIBC_SONAMES


def is_cpp_runtime(soname: str) -> bool:
    """libstdc++ and libgcc_s: needed from the host unless the view ships them (gcc-runtime)."""
    return soname in ("libstdc++.so.6", "libgcc_s.so.1")


def supercontainers_mpi(name: str) -> str:
    """Map an MPI family to the two values ``org.supercontainers.mpi`` defines (mpich|openmpi)."""
    return {"openmpi": "openmpi", "mpich": "mpich", "cray-mpich": "mpich"}.get(name, name)
