"""The sparse Jaccard against hand-worked values and against a plain set-based oracle."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from ocikit.similarity import jaccard as jac
from ocikit.similarity.api import compare
from ocikit.similarity.collect import ImageLayers


def oracle(sets: list[set[str]], size: dict[str, int] | None = None) -> list[list[Fraction]]:
    """Exact Jaccard with Python sets and Fractions: the definition, pair by pair."""

    def weight(items: set[str]) -> int:
        return sum(size[k] for k in items) if size else len(items)

    out = []
    for a in sets:
        row = []
        for b in sets:
            union = weight(a | b)
            row.append(Fraction(weight(a & b), union) if union else Fraction(1))
        out.append(row)
    for i in range(len(sets)):
        out[i][i] = Fraction(1)
    return out


def incidence_of(sets: list[list[str]], size: dict[str, int] | None = None) -> jac.Incidence:
    return jac.build_incidence(sets, [[(size or {}).get(k, 1) for k in keys] for keys in sets])


def test_hand_worked_values() -> None:
    sets = [["b1", "b2", "x"], ["b1", "b2", "y", "z"], ["b1", "w"], ["q"]]
    matrix = jac.jaccard(incidence_of(sets))
    assert matrix.dtype == np.float32
    assert matrix[0, 1] == np.float32(2 / 5)  # {b1,b2} of {b1,b2,x,y,z}
    assert matrix[0, 2] == np.float32(1 / 4)  # {b1} of {b1,b2,x,w}
    assert matrix[1, 2] == np.float32(1 / 5)
    assert matrix[3, :3].tolist() == [0.0, 0.0, 0.0]
    assert np.diag(matrix).tolist() == [1.0] * 4
    assert (matrix == matrix.T).all()


def test_weighted_hand_worked() -> None:
    size = {"base": 700, "mid": 200, "top1": 100, "top2": 50}
    matrix = jac.jaccard(incidence_of([["base", "mid", "top1"], ["base", "top2"]], size), weighted=True)
    assert matrix[0, 1] == pytest.approx(700 / (700 + 200 + 100 + 50), rel=1e-7)


def test_repeated_layer_counts_once() -> None:
    matrix = jac.jaccard(incidence_of([["a", "a", "b"], ["a", "c"]]))
    assert matrix[0, 1] == np.float32(1 / 3)


def test_empty_images_are_identical_to_each_other_and_share_nothing_else() -> None:
    matrix = jac.jaccard(incidence_of([[], [], ["a"]]))
    assert matrix.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def _random_sets(rng: random.Random, n: int) -> tuple[list[list[str]], dict[str, int]]:
    """Images with a few widely shared layers (dense path), families (sparse path), unique tops."""
    size = {}
    sets = []
    for i in range(n):
        layers = [f"base{rng.randrange(2)}", f"fam{rng.randrange(15)}", f"mid{rng.randrange(40)}"]
        layers += [f"top{i}-{t}" for t in range(rng.randrange(0, 4))]
        if rng.random() < 0.1:
            layers.append(layers[0])  # a repeated layer
        sets.append(layers)
        for key in layers:
            size.setdefault(key, rng.randrange(0, 10_000))
    return sets, size


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_set_oracle_across_blocks_and_dense_columns(monkeypatch, weighted: bool) -> None:
    rng = random.Random(42)
    sets, size = _random_sets(rng, 120)
    monkeypatch.setattr(jac, "BLOCK_CELLS", 1000)  # ~8 rows per block: many blocks, a short last one
    incidence = incidence_of(sets, size)
    heavy = (incidence.holders() >= len(sets) // jac.HEAVY_FRACTION).sum()
    assert 0 < heavy < len(incidence.keys)  # both the dense and the sparse path are exercised
    matrix = jac.jaccard(incidence, weighted=weighted)
    expected = oracle([set(s) for s in sets], size if weighted else None)
    worst = max(abs(float(matrix[i, j]) - float(expected[i][j])) for i in range(120) for j in range(120))
    assert worst < 1e-6


def test_diff_id_sizes_take_the_smallest_form() -> None:
    incidence = jac.build_incidence([["d1", "d2"], ["d1"]], [[500, 7], [300]], size_rule="min")
    assert dict(zip(incidence.keys, incidence.sizes.tolist())) == {"d1": 300, "d2": 7}
    first = jac.build_incidence([["d1", "d2"], ["d1"]], [[500, 7], [300]], size_rule="first")
    assert dict(zip(first.keys, first.sizes.tolist())) == {"d1": 500, "d2": 7}


def test_cluster_order_puts_families_together() -> None:
    # Two families interleaved in the input; clustering must make each family contiguous.
    sets = []
    for i in range(10):
        family = "odd" if i % 2 else "even"
        sets.append([f"{family}-base", f"{family}-mid", f"top{i}"])
    matrix = jac.jaccard(incidence_of(sets))
    order = jac.leaf_order(jac.cluster_linkage(matrix), len(sets))
    assert sorted(order) == list(range(10))
    families = ["odd" if i % 2 else "even" for i in order]
    assert families == sorted(families) or families == sorted(families, reverse=True)


def test_single_image_has_trivial_order() -> None:
    matrix = jac.jaccard(incidence_of([["a"]]))
    assert jac.cluster_linkage(matrix) is None
    assert jac.leaf_order(None, 1) == [0]


def _image(name: str, layers: list[str], sizes: list[int]) -> ImageLayers:
    return ImageLayers(name, "sha256:" + "0" * 64, tuple(layers), tuple(sizes))


def test_compare_summary_by_hand() -> None:
    images = [
        _image("a", ["L1", "L2", "L3"], [100, 20, 3]),
        _image("b", ["L1", "L2", "L4"], [100, 20, 4]),
        _image("c", ["L1", "L5"], [100, 5]),
    ]
    result = compare(images)
    s = result.summary
    # J(a,b) = 2/4, J(a,c) = 1/4, J(b,c) = 1/4
    assert s["mean_similarity"]["without_diagonal"] == pytest.approx((0.5 + 0.25 + 0.25) / 3, abs=1e-6)
    assert s["mean_similarity"]["with_diagonal"] == pytest.approx((2 * (0.5 + 0.25 + 0.25) + 3) / 9, abs=1e-6)
    assert (s["layer_references"], s["unique_layers"], s["single_image_layers"]) == (8, 5, 3)
    assert s["bytes"] == {"distinct": 132, "if_unshared": 123 + 124 + 105, "saved_by_sharing": 352 - 132}
    assert [(m["layer"], m["image_count"], m["images"]) for m in s["most_shared"]] == [
        ("L1", 3, ["a", "b", "c"]),
        ("L2", 2, ["a", "b"]),
    ]
    assert [(p["name"], p["unique_bytes"], p["unique_layers"]) for p in s["per_image"]] == [
        ("a", 3, 1),
        ("b", 4, 1),
        ("c", 5, 1),
    ]
    names, ordered = result.ordered()
    assert sorted(names) == ["a", "b", "c"] and ordered.shape == (3, 3)


def test_csv_and_dict_round_trip(tmp_path) -> None:
    result = compare([_image("x,1", ["L1", "L2"], [1, 1]), _image("y", ["L1"], [1])])
    text = result.to_csv()
    assert text.splitlines() == ['image,"x,1",y', '"x,1",1,0.5', "y,0.5,1"]
    path = tmp_path / "m.csv"
    assert result.to_csv(str(path)) == str(path)
    assert path.read_text() == text
    document = result.to_dict()
    assert document["matrix"] == [[1.0, 0.5], [0.5, 1.0]] and document["names"] == ["x,1", "y"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary left behind


def test_compare_rejects_unknown_mode() -> None:
    from ocikit.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="unknown similarity mode"):
        compare([_image("a", ["L1"], [1])], by="history")
