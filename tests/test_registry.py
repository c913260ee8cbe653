"""The registry of published weights (npmobilenet.models.weights): torchvision's entries, their
names and spellings, and which entry a file name belongs to."""

import dataclasses
from pathlib import Path

import pytest

from npmobilenet.errors import WeightsError
from npmobilenet.models.weights import DEFAULT_WEIGHTS, WEIGHTS, WeightsSpec, get_weights_spec, spec_for_path


# --- the registry ------------------------------------------------------------------------------


def test_registry_entries_are_torchvisions():
    assert list(WEIGHTS) == ["IMAGENET1K_V1", "IMAGENET1K_V2"]
    assert DEFAULT_WEIGHTS == "IMAGENET1K_V1"
    expected = {"IMAGENET1K_V1": ("b0353104", 71.878, 256), "IMAGENET1K_V2": ("7ebf99e0", 72.154, 232)}
    for name, spec in WEIGHTS.items():
        prefix, acc1, resize = expected[name]
        assert isinstance(spec, WeightsSpec) and spec.name == name
        assert spec.url == f"https://download.pytorch.org/models/mobilenet_v2-{prefix}.pth"
        assert spec.file_name == f"mobilenet_v2-{prefix}.pth" and spec.url.endswith("/" + spec.file_name)
        assert spec.sha256_prefix == prefix
        assert (spec.acc1, spec.resize_size, spec.crop_size, spec.interpolation) == (acc1, resize, 224, "bilinear")
        assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)


def test_registry_specs_are_frozen_and_checked():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WEIGHTS["IMAGENET1K_V1"].url = "http://elsewhere"
    with pytest.raises(TypeError):
        WEIGHTS["NEW"] = WEIGHTS["IMAGENET1K_V1"]
    with pytest.raises(WeightsError, match="sha256_prefix"):
        dataclasses.replace(WEIGHTS["IMAGENET1K_V1"], sha256_prefix="xyz")


def test_categories_are_the_imagenet_names():
    from npmobilenet.imagenet import categories

    names = WEIGHTS["IMAGENET1K_V2"].categories
    assert names == categories() and len(names) == 1000


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IMAGENET1K_V1", "IMAGENET1K_V1"),
        ("IMAGENET1K_V2", "IMAGENET1K_V2"),
        ("DEFAULT", "IMAGENET1K_V1"),
        ("MobileNet_V2_Weights.IMAGENET1K_V2", "IMAGENET1K_V2"),
        ("MobileNet_V2_Weights.DEFAULT", "IMAGENET1K_V1"),
        ("imagenet1k_v2", "IMAGENET1K_V2"),
    ],
)
def test_get_weights_spec_accepts_names_and_torchvision_spellings(name, expected):
    assert get_weights_spec(name) is WEIGHTS[expected]


def test_unknown_weights_name_lists_the_known_ones():
    with pytest.raises(WeightsError, match="IMAGENET1K_V3") as info:
        get_weights_spec("IMAGENET1K_V3")
    for fragment in ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT", ".pth"):
        assert fragment in str(info.value)


def test_spec_for_path_goes_by_the_hash_prefix_in_the_file_name():
    assert spec_for_path("downloads/mobilenet_v2-7ebf99e0.pth") is WEIGHTS["IMAGENET1K_V2"]
    assert spec_for_path(Path("cache/mobilenet_v2-7ebf99e0.npz")) is WEIGHTS["IMAGENET1K_V2"]
    assert spec_for_path("mobilenet_v2-b0353104.pth") is WEIGHTS["IMAGENET1K_V1"]
    assert spec_for_path("my_finetuned.pth") is WEIGHTS[DEFAULT_WEIGHTS]
