"""``open_store``: the one routing function from a reference to a store.

=======================================  ==============================================
reference                                store
=======================================  ==============================================
``oci:PATH[:TAG|@DIGEST]``               :class:`~ocikit.content.layout.LayoutStore`
``oci-layout:PATH…``                     same
``host[:port]/repo[:tag][@digest]``      :class:`~ocikit.registry.store.RegistryStore`
``name[:tag]`` (no host)                 ``docker.io/library/name`` on Docker Hub
=======================================  ==============================================
"""

from __future__ import annotations

from ..options import DEFAULT_OPTIONS, Options
from ..reference import LayoutReference, Reference, RegistryReference, parse_reference
from .base import Store
from .layout import LayoutStore


def open_store(
    reference: "str | Reference", options: Options = DEFAULT_OPTIONS, create: bool = True
) -> tuple[Store, Reference]:
    """Parse ``reference`` (if a string) and open the store it names.

    ``create`` makes a missing OCI layout directory on first use (pass False for read-only
    commands so a typo is reported instead of creating an empty layout).
    """
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    if isinstance(ref, LayoutReference):
        return LayoutStore(ref.path, create=create), ref
    assert isinstance(ref, RegistryReference)
    from ..registry.store import RegistryStore  # imported lazily: requests is not needed for layouts

    return RegistryStore.open(ref, options), ref
