"""Which NVIDIA driver runs which CUDA runtime.

Source: the CUDA Toolkit release notes, "CUDA Toolkit and Corresponding Driver Versions"
(Linux x86_64, GA releases) and "CUDA Minor Version Compatibility". An application built
with CUDA runtime X.Y runs on any driver of the same major family at or above the
family's minimum (minor-version compatibility; PTX JIT of newer code may still need the
X.Y driver). libcudart.so.N tells the major; the full version comes from the library
file name (libcudart.so.12.2.140) or from spack's ``cuda@12.2.0``.
"""

from __future__ import annotations

from .versions import parse_version, version_at_least, version_key

# CUDA toolkit release -> minimum Linux driver of its GA release.
TOOLKIT_DRIVER: dict[str, str] = {
    "10.0": "410.48",
    "10.1": "418.39",
    "10.2": "440.33",
    "11.0": "450.36.06",
    "11.1": "455.23",
    "11.2": "460.27.03",
    "11.3": "465.19.01",
    "11.4": "470.42.01",
    "11.5": "495.29.05",
    "11.6": "510.39.01",
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# CUDA major -> minimum driver under minor-version compatibility.
MINOR_COMPAT_DRIVER: dict[str, str] = {
    "11": "450.80.02",
    "12": "525.60.13",
    "13": "580.65.06",
}


def minimum_driver(cuda_version: str) -> str:
    """The lowest driver that runs code built with CUDA ``cuda_version`` ("12" or "12.2")."""
    parts = parse_version(cuda_version)
    if not parts:
        return ""
    major = str(parts[0])
    if major in MINOR_COMPAT_DRIVER:
        return MINOR_COMPAT_DRIVER[major]
    exact = ".".join(str(p) for p in parts[:2])
    return TOOLKIT_DRIVER.get(exact, "")


def highest_cuda_for_driver(driver_version: str) -> str:
    """The newest CUDA toolkit release whose GA driver is not newer than ``driver_version``."""
    if not parse_version(driver_version):
        return ""
    supported = [cuda for cuda, driver in TOOLKIT_DRIVER.items() if version_at_least(driver_version, driver)]
    return max(supported, key=version_key, default="")
