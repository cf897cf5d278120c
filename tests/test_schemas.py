"""Every schema is valid JSON Schema, ships in the package, and the ready marker validates."""

import importlib.resources
import json
import os

import jsonschema
import pytest

import ocikit
from ocikit.pull.ready import read_marker
from ocikit.testing.images import make_image

SCHEMAS = os.path.join(os.path.dirname(__file__), "..", "schemas")
NAMES = sorted(n for n in os.listdir(SCHEMAS) if n.endswith(".json"))


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_and_identified_by_its_media_type(name):
    with open(os.path.join(SCHEMAS, name)) as fh:
        schema = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].startswith("application/vnd.") and schema["$id"].endswith("+json")


def test_schemas_ship_in_the_package():
    shipped = {p.name for p in importlib.resources.files("ocikit.schemas").iterdir() if p.name.endswith(".json")}
    assert shipped == set(NAMES)


def test_the_ready_marker_validates(tmp_path):
    store, _ = ocikit.open_store(f"oci:{tmp_path / 'layout'}")
    make_image(store, [{"etc/x": b"x"}], tag="v1")
    dest = str(tmp_path / "dest")
    ocikit.pull(f"oci:{tmp_path / 'layout'}:v1", dest)
    with open(os.path.join(SCHEMAS, "ocikit.ready.v1.schema.json")) as fh:
        jsonschema.validate(read_marker(dest), json.load(fh))
