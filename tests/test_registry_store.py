"""The registry store against a real docker-registry 2.8: the same conformance suite as the layout."""

import itertools

import pytest

from ocikit.content.open import open_store
from ocikit.registry.store import RegistryStore
from ocikit.testing.store_tests import StoreTests

_counter = itertools.count()


class TestRegistryStoreConformance(StoreTests):
    @pytest.fixture
    def store(self, registry):
        store, _ = open_store(f"{registry}/conformance/repo{next(_counter)}")
        assert isinstance(store, RegistryStore)
        return store
