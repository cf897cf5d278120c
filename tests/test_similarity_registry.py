"""Similarity of real images pushed to docker-registry, against values worked out by hand.

Five images are built from six real gzip tar layers (see ``similarity_images``)::

    a = {b1, b2, x}        b = {b1, b2, y, z}      c = {b1, w}
    d = {b1, b2}           e = a's three layers recompressed at gzip level 9

so, by layer digest, J(a,b) = 2/5, J(a,c) = 1/4, J(a,d) = 2/3, J(b,c) = 1/5,
J(b,d) = 2/4, J(c,d) = 1/3, and e shares nothing with anyone. By diff_id, e is a.
"""

from __future__ import annotations

import uuid
from fractions import Fraction

import pytest
from similarity_images import Layer, make_layer, push_image, push_index

import ocikit
from ocikit.content.base import ensure_empty_blob, push_manifest
from ocikit.content.open import open_store
from ocikit.errors import NotFoundError, RegistryError
from ocikit.options import Options, RetryPolicy
from ocikit.spec.manifest import build_manifest
from ocikit.testing.fault_proxy import FaultProxy

pytestmark = pytest.mark.registry

NAMES = "abcde"
BY_DIGEST = {
    ("a", "b"): Fraction(2, 5),
    ("a", "c"): Fraction(1, 4),
    ("a", "d"): Fraction(2, 3),
    ("b", "c"): Fraction(1, 5),
    ("b", "d"): Fraction(2, 4),
    ("c", "d"): Fraction(1, 3),
}


def expected_matrix(pairs: dict[tuple[str, str], Fraction], names: str = NAMES) -> list[list[Fraction]]:
    value = {**pairs, **{(q, p): v for (p, q), v in pairs.items()}}
    return [[Fraction(1) if p == q else value.get((p, q), Fraction(0)) for q in names] for p in names]


def assert_matrix(result: ocikit.SimilarityResult, expected: list[list[Fraction]]) -> None:
    for i, row in enumerate(expected):
        for j, want in enumerate(row):
            # float32 cells: the nearest float32 to the exact fraction
            assert result.matrix[i, j] == pytest.approx(float(want), rel=1e-6, abs=1e-7), (i, j)


@pytest.fixture(scope="module")
def images(registry_server) -> dict:
    repo = f"{registry_server.host}/similarity/{uuid.uuid4().hex[:8]}"
    store, _ = open_store(repo)
    fast = {name: make_layer(store, name, level=1) for name in ("b1", "b2", "x", "y", "z", "w")}
    slow = {name: make_layer(store, name, level=9) for name in ("b1", "b2", "x")}
    assert all(fast[n].desc.digest != slow[n].desc.digest and fast[n].diff_id == slow[n].diff_id for n in slow)
    sets = {
        "a": [fast["b1"], fast["b2"], fast["x"]],
        "b": [fast["b1"], fast["b2"], fast["y"], fast["z"]],
        "c": [fast["b1"], fast["w"]],
        "d": [fast["b1"], fast["b2"]],
        "e": [slow["b1"], slow["b2"], slow["x"]],
    }
    manifests = {name: push_image(store, layers, tag=name) for name, layers in sets.items()}
    push_index(store, {"linux/amd64": manifests["a"], "linux/arm64": manifests["c"]}, tag="multi")
    return {"repo": repo, "store": store, "fast": fast, "slow": slow, "sets": sets, "manifests": manifests}


def refs(images: dict, names: str = NAMES) -> list[str]:
    return [f"{images['repo']}:{name}" for name in names]


def test_jaccard_by_digest_matches_hand_counts(images, tmp_path) -> None:
    result = ocikit.similarity(refs(images), cache_dir=str(tmp_path))
    assert result.names == refs(images)
    assert_matrix(result, expected_matrix(BY_DIGEST))
    summary = result.summary
    # layer references: 3 + 4 + 2 + 2 + 3 = 14; distinct: b1 b2 x y z w and e's 3 recompressed = 9;
    # in one image only: x, y, z, w and e's three (b1 is in four images, b2 in three)
    assert (summary["layer_references"], summary["unique_layers"]) == (14, 9)
    assert summary["single_image_layers"] == 7
    assert summary["fraction_unique"] == pytest.approx(9 / 14)
    off_diagonal = sum(BY_DIGEST.values()) * 2 / 20
    assert summary["mean_similarity"]["without_diagonal"] == pytest.approx(float(off_diagonal), abs=1e-6)
    assert summary["mean_similarity"]["with_diagonal"] == pytest.approx(
        float((sum(BY_DIGEST.values()) * 2 + 5) / 25), abs=1e-6
    )


def test_most_shared_layers_and_unique_bytes(images, tmp_path) -> None:
    fast, slow = images["fast"], images["slow"]
    summary = ocikit.similarity(refs(images), cache_dir=str(tmp_path)).summary
    top = summary["most_shared"]
    assert [(t["layer"], t["image_count"]) for t in top] == [(fast["b1"].desc.digest, 4), (fast["b2"].desc.digest, 3)]
    assert top[0]["size"] == fast["b1"].desc.size
    assert top[0]["images"] == refs(images, "abcd")
    unique = {entry["name"][-1]: entry["unique_bytes"] for entry in summary["per_image"]}
    size = {name: layer.desc.size for name, layer in fast.items()}
    assert unique == {
        "a": size["x"],
        "b": size["y"] + size["z"],
        "c": size["w"],
        "d": 0,
        "e": sum(layer.desc.size for layer in slow.values()),
    }


def test_diff_id_mode_sees_through_recompression(images, tmp_path) -> None:
    result = ocikit.similarity(refs(images), by="diff-id", cache_dir=str(tmp_path))
    # e has a's content: it scores like a against everyone, and 1 against a.
    pairs = dict(BY_DIGEST)
    pairs.update(
        {("a", "e"): Fraction(1), ("b", "e"): Fraction(2, 5), ("c", "e"): Fraction(1, 4), ("d", "e"): Fraction(2, 3)}
    )
    assert_matrix(result, expected_matrix(pairs))
    assert result.summary["unique_layers"] == 6


def _bytes(layers: list[Layer], size: dict[str, int]) -> int:
    return sum(size[layer.name] for layer in layers)


def test_weighted_by_bytes(images, tmp_path) -> None:
    fast, sets = images["fast"], images["sets"]
    size = {name: layer.desc.size for name, layer in fast.items()}
    result = ocikit.similarity(refs(images, "abcd"), weighted=True, cache_dir=str(tmp_path))
    pairs = {}
    for p, q in BY_DIGEST:
        shared = {layer.name for layer in sets[p]} & {layer.name for layer in sets[q]}
        union = {layer.name for layer in sets[p]} | {layer.name for layer in sets[q]}
        pairs[(p, q)] = Fraction(sum(size[n] for n in shared), sum(size[n] for n in union))
    # spelled out once, to show what is being checked: bytes(b1, b2) / bytes(b1, b2, x, y, z)
    assert pairs[("a", "b")] == Fraction(
        size["b1"] + size["b2"], size["b1"] + size["b2"] + size["x"] + size["y"] + size["z"]
    )
    assert_matrix(result, expected_matrix(pairs, "abcd"))


def test_weighted_diff_id_uses_the_smallest_compressed_size(images, tmp_path) -> None:
    fast, slow = images["fast"], images["slow"]
    smallest = {name: min(fast[name].desc.size, slow[name].desc.size) for name in slow}
    result = ocikit.similarity(refs(images, "be"), by="diff-id", weighted=True, cache_dir=str(tmp_path))
    shared = smallest["b1"] + smallest["b2"]
    union = shared + smallest["x"] + fast["y"].desc.size + fast["z"].desc.size
    assert result.matrix[0, 1] == pytest.approx(shared / union, rel=1e-6)


def test_index_resolves_to_the_chosen_platform(images, tmp_path) -> None:
    manifests = images["manifests"]
    names = [f"{images['repo']}:multi", *refs(images, "ac")]
    arm = ocikit.similarity(names, platform="linux/arm64", cache_dir=str(tmp_path))
    assert (arm.matrix[0, 1], arm.matrix[0, 2]) == (pytest.approx(0.25), 1.0)
    amd = ocikit.similarity(names, platform="linux/amd64", cache_dir=str(tmp_path))
    assert (amd.matrix[0, 1], amd.matrix[0, 2]) == (1.0, pytest.approx(0.25))
    assert amd.images[0].platform == "linux/amd64" and amd.images[0].digest == manifests["a"].digest
    with pytest.raises(NotFoundError, match="linux/s390x.*available: linux/amd64, linux/arm64"):
        ocikit.similarity(names, platform="linux/s390x", cache_dir=str(tmp_path))


def test_repository_expansion_skips_referrer_fallback_tags(images, tmp_path) -> None:
    store = images["store"]
    empty = ensure_empty_blob(store)
    push_manifest(
        store,
        build_manifest([empty], config=empty, artifact_type="application/x.sig", subject=images["manifests"]["a"]),
    )
    assert any(tag.startswith("sha256-") for tag in store.tags())  # the OCI 1.1 fallback index exists
    result = ocikit.similarity(repositories=[images["repo"]], cache_dir=str(tmp_path))
    assert sorted(result.names) == sorted(refs(images) + [f"{images['repo']}:multi"])


def test_pinned_rerun_makes_no_request_and_tags_are_resolved_each_run(images, tmp_path, request) -> None:
    host, path = images["repo"].split("/", 1)
    proxy = FaultProxy(host)  # forwards to the registry and logs every request
    request.addfinalizer(proxy.close)
    repo = f"{proxy.host}/{path}"
    cache = str(tmp_path / "cache")
    tagged = [f"{repo}:{name}" for name in "abc"]
    first = ocikit.similarity(tagged, by="diff-id", cache_dir=cache)
    assert {method for method, _, _ in proxy.log} == {"HEAD", "GET"}  # tags resolved, documents fetched

    proxy.log.clear()
    again = ocikit.similarity(tagged, by="diff-id", cache_dir=cache)
    assert sorted(method for method, _, _ in proxy.log) == ["HEAD"] * 3  # one resolve per tag, nothing fetched
    assert (again.matrix == first.matrix).all()

    proxy.log.clear()
    pinned = [f"{repo}@{image.digest}" for image in first.images]
    result = ocikit.similarity(pinned, by="diff-id", cache_dir=cache)
    assert proxy.log == []  # zero requests
    assert (result.matrix == first.matrix).all()


def test_pinned_rerun_works_with_the_registry_gone(registry, tmp_path) -> None:  # registry: skip without the binary
    from ocikit.testing.registry import RegistryServer

    cache = str(tmp_path / "cache")
    with RegistryServer(workdir=str(tmp_path / "registry")) as server:
        store, _ = open_store(f"{server.host}/gone/app")
        b1, x, y = (make_layer(store, name) for name in ("b1", "x", "y"))
        push_image(store, [b1, x], tag="one")
        push_image(store, [b1, y], tag="two")
        tagged = [f"{server.host}/gone/app:{tag}" for tag in ("one", "two")]
        first = ocikit.similarity(tagged, cache_dir=cache)
    pinned = [f"{server.host}/gone/app@{image.digest}" for image in first.images]
    offline = ocikit.similarity(pinned, cache_dir=cache)
    assert offline.matrix[0, 1] == pytest.approx(1 / 3)
    # tags still need the registry (they may have moved): a clear error, not stale data
    with pytest.raises(RegistryError, match="gone/app"):
        ocikit.similarity(tagged, cache_dir=cache, options=Options(retry=RetryPolicy(attempts=1)))
