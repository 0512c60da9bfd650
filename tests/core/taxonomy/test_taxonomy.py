import json

import numpy as np
import pytest
import yaml

from napari_segflow.core.taxonomy import (
    Taxonomy,
    TaxonomyError,
    class_pixel_counts,
    list_presets,
    load_preset,
    load_taxonomy,
    parse_color,
    save_taxonomy,
    taxonomy_from_dict,
)

VALID = {
    "name": "streets",
    "ignore_id": 255,
    "classes": [
        {"id": 0, "name": "road", "color": "#804080", "description": "drivable"},
        {"id": 1, "name": "sidewalk", "color": [244, 35, 232], "ai_assist": False},
        {"id": 300, "name": "kerb ramp", "color": "00ff00"},
    ],
    "rules": [
        {"classes": ["road", "sidewalk"], "text": "kerb -> sidewalk", "resolve_to": "sidewalk"}
    ],
}


def _write(tmp_path, data, name="t.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith(".yaml") else json.dumps(data))
    return path


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads(name):
    tax = load_preset(name)
    assert len(tax.classes) >= 2
    assert tax.rules, f"preset {name} ships without conflict rules"
    for rule in tax.rules:
        assert all(n in tax.names for n in rule.classes)
    assert load_taxonomy(name) == tax


def test_expected_presets_present():
    assert {"cityscapes", "pelvis-oar", "land-use", "crop-weed", "construction-ground"} <= set(
        list_presets()
    )


def test_cityscapes_preset_matches_standard():
    tax = load_preset("cityscapes")
    assert tax.ids == tuple(range(19))
    assert tax.ignore_id == 255
    assert tax.by_name("road").color == (128, 64, 128)
    assert tax.by_name("car").color == (0, 0, 142)
    assert tax.by_id(18).name == "bicycle"
    assert tax.rule_between("sidewalk", "road").resolve_to == "sidewalk"
    assert tax.unlabeled_id == 255
    assert tax.valid_ids == frozenset(range(19)) | {255}


def test_pelvis_preset_classes():
    names = set(load_preset("pelvis-oar").names)
    assert names == {"bladder", "rectum", "femoral head L", "femoral head R", "spinal cord"}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    tax = taxonomy_from_dict(VALID)
    path = save_taxonomy(tax, tmp_path / f"t{suffix}")
    back = load_taxonomy(path)
    assert back == tax
    assert back.by_name("sidewalk").ai_assist is False
    assert back.by_id(300).color == (0, 255, 0)
    assert back.rules[0].resolve_to == "sidewalk"


def test_unlabeled_id_rules():
    tax = taxonomy_from_dict(VALID)
    assert tax.unlabeled_id == 255
    no_ignore = taxonomy_from_dict({**VALID, "ignore_id": None})
    assert no_ignore.unlabeled_id is None  # class 0 exists, so no free unlabelled value
    land = load_preset("land-use")
    assert land.unlabeled_id == 0 and 0 not in land.ids


def _mutate(**changes):
    data = json.loads(json.dumps(VALID))
    for key, value in changes.items():
        if key.startswith("class1_"):
            data["classes"][1][key[7:]] = value
        elif key.startswith("rule0_"):
            data["rules"][0][key[6:]] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            _mutate(class1_id=0),
            r"classes\[1\] \('sidewalk'\): duplicate id 0 \(also used by 'road'\)",
        ),
        (_mutate(class1_name="road"), r"classes\[1\] \('road'\): duplicate name 'road'"),
        (_mutate(rule0_classes=["road", "bridge"]), r"rules\[0\]: unknown class 'bridge'"),
        (_mutate(class1_color="#12345"), r"classes\[1\] \('sidewalk'\): bad colour '#12345'"),
        (_mutate(class1_color=[0, 0, 256]), r"classes\[1\] \('sidewalk'\): bad colour"),
        (_mutate(class1_id=70000), r"classes\[1\] \('sidewalk'\): id 70000 out of range 0..65535"),
        (_mutate(class1_id=-1), r"id -1 out of range"),
        (_mutate(class1_id="one"), r"'id' 'one' is not an integer"),
        (_mutate(class1_id=255), r"id 255 is the ignore_id"),
        (_mutate(rule0_resolve_to="car"), r"resolve_to 'car' is not one of"),
        (_mutate(rule0_classes=["road"]), r"'classes' must name exactly two classes"),
        (_mutate(class1_ai_assist="yes"), r"'ai_assist' 'yes' is not true/false"),
        (_mutate(classes=[]), r"'classes': missing or not a non-empty list"),
        (_mutate(colour="red"), r"top level: unknown keys \['colour'\]"),
    ],
)
def test_invalid_taxonomy_errors_name_file_entry_and_problem(tmp_path, data, match):
    path = _write(tmp_path, data)
    with pytest.raises(TaxonomyError, match=match) as info:
        load_taxonomy(path)
    assert str(path) in str(info.value)


def test_not_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nclasses: [\n  - {id: 1\n")
    with pytest.raises(TaxonomyError, match=r"broken.yaml: line \d+: not valid YAML"):
        load_taxonomy(path)


def test_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x", "classes": [}')
    with pytest.raises(TaxonomyError, match=r"broken.json: line 1: not valid JSON"):
        load_taxonomy(path)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(TaxonomyError, match="top level: expected a mapping"):
        load_taxonomy(path)


def test_missing_file(tmp_path):
    with pytest.raises(TaxonomyError, match="nope.yaml: file: not found"):
        load_taxonomy(tmp_path / "nope.yaml")


def test_unknown_preset():
    with pytest.raises(TaxonomyError, match="unknown taxonomy preset 'mars'"):
        load_preset("mars")


@pytest.mark.parametrize(
    ("value", "rgb"), [("#000000", (0, 0, 0)), ("FFfF00", (255, 255, 0)), ((1, 2, 3), (1, 2, 3))]
)
def test_parse_color(value, rgb):
    assert parse_color(value) == rgb


@pytest.mark.parametrize("value", ["red", "#ggg000", [1, 2], [1.0, 2, 3], [True, 0, 0], None])
def test_parse_color_rejects(value):
    with pytest.raises(ValueError, match="bad colour"):
        parse_color(value)


def test_with_ai_assist_copies():
    tax = load_preset("land-use")
    off = tax.with_ai_assist({"water": False})
    assert off.by_name("water").ai_assist is False
    assert tax.by_name("water").ai_assist is True
    with pytest.raises(TaxonomyError, match="unknown classes"):
        tax.with_ai_assist({"lava": False})


def test_rules_for_and_between():
    tax = load_preset("cityscapes")
    pole_rules = tax.rules_for("pole")
    assert {frozenset(r.classes) for r in pole_rules} == {
        frozenset({"traffic sign", "pole"}),
        frozenset({"traffic light", "pole"}),
    }
    assert tax.rule_between("sky", "road") is None


def test_class_pixel_counts():
    tax = load_preset("land-use")
    labels = np.zeros((4, 5), dtype=np.uint16)
    labels[0, :3] = 1
    labels[3, 4] = 5
    assert class_pixel_counts(labels, tax) == {1: 3, 2: 0, 3: 0, 4: 0, 5: 1}
    assert class_pixel_counts(np.zeros((0,), np.uint8), tax) == dict.fromkeys(tax.ids, 0)


def test_taxonomy_is_hashable_value():
    a = load_preset("crop-weed")
    b = load_preset("crop-weed")
    assert a == b and isinstance(a, Taxonomy)
