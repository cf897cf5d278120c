"""The heatmap PNG: produced, a real image of the expected size, legible labels up to 200 images."""

from __future__ import annotations

import struct

import pytest

from ocikit.similarity.api import compare
from ocikit.similarity.collect import ImageLayers
from ocikit.similarity.plot import heatmap_layout, plot_heatmap, short_labels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: str) -> tuple[int, int]:
    """Width and height from the IHDR chunk (read by hand: no image library involved)."""
    with open(path, "rb") as fh:
        header = fh.read(24)
    assert header[:8] == PNG_SIGNATURE and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def families(n: int) -> list[ImageLayers]:
    images = []
    for i in range(n):
        layers = ["base", f"family{i % 7}", f"mid{i % 3}", f"top{i}"]
        images.append(
            ImageLayers(f"registry.example/apps/app-{i:03d}:v1", "sha256:" + "0" * 64, tuple(layers), (90, 50, 20, 5))
        )
    return images


@pytest.mark.parametrize("dendrogram", [False, True])
def test_png_is_a_real_image(tmp_path, dendrogram: bool) -> None:
    from PIL import Image  # matplotlib's own dependency

    result = compare(families(12))
    path = str(tmp_path / "heat.png")
    assert plot_heatmap(result, path, dendrogram=dendrogram) == path
    width, height = png_size(path)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == (width, height) and image.format == "PNG"
        pixels = image.convert("RGB")
        colours = {pixels.getpixel((x, y)) for x in range(0, width, 7) for y in range(0, height, 7)}
    assert len(colours) > 10  # drawn, not blank
    assert width > 500 and height > 500
    assert [p.name for p in tmp_path.iterdir()] == ["heat.png"]  # no temporary left behind


def test_dendrogram_widens_the_figure(tmp_path) -> None:
    result = compare(families(12))
    plain, tree = str(tmp_path / "plain.png"), str(tmp_path / "tree.png")
    plot_heatmap(result, plain)
    plot_heatmap(result, tree, dendrogram=True)
    assert png_size(tree)[0] > png_size(plain)[0]
    assert png_size(tree)[1] == png_size(plain)[1]


def test_200_images_get_readable_labels(tmp_path) -> None:
    result = compare(families(200))
    labels = short_labels(result.names)
    assert labels[0] == "app-000:v1"  # the shared "registry.example/apps/" is dropped
    layout = heatmap_layout(labels)
    assert layout.show_labels and layout.font >= 6.0  # 6 pt: small but readable in print
    # each label gets at least its font height of vertical room
    assert layout.side * 72 / 200 >= layout.font
    path = str(tmp_path / "big.png")
    plot_heatmap(result, path, dendrogram=True)
    _, height = png_size(path)
    assert height >= 100 * layout.side  # dpi 100


def test_too_many_labels_are_left_out() -> None:
    layout = heatmap_layout([f"image-{i}" for i in range(1000)])
    assert not layout.show_labels


def test_short_labels_shorten_long_names_in_the_middle() -> None:
    labels = short_labels(["a/" + "x" * 30 + "-middle-" + "y" * 30, "a/short"])
    assert labels[1] == "short"
    assert len(labels[0]) == 40 and labels[0].startswith("xxx") and labels[0].endswith("yyy") and "…" in labels[0]


def test_unwritable_destination_is_a_clear_error(tmp_path) -> None:
    from ocikit.errors import LocalIOError

    with pytest.raises(LocalIOError, match="cannot write"):
        plot_heatmap(compare(families(3)), str(tmp_path / "missing-dir" / "x.png"))
