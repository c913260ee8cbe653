"""predict() on real photos with real ImageNet weights, against torchvision; and predict()'s API.

The reference is torchvision end to end: its own transforms (``Resize(256)``, ``CenterCrop(224)``,
``ToTensor``, ``Normalize``) on the photos, its own MobileNetV2 holding the shared weights,
its own class names. Nothing here compares npmobilenet with itself.
"""

import csv
import sys

import numpy as np
import pytest
from PIL import Image

import npmobilenet
from npmobilenet import Prediction, errors, predict

REPO_EXAMPLE = "examples/chelsea.jpg"
predict_module = sys.modules["npmobilenet.prediction"]


@pytest.fixture(scope="module")
def weights_path(shared_dir):
    return shared_dir / "weights" / "mobilenet_v2_imagenet_qat.pth"


@pytest.fixture(scope="module")
def photos(shared_dir):
    """``[(path, true class index)]`` for the 100 labelled photos of ../shared/images."""
    with open(shared_dir / "images" / "labels.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return [(shared_dir / "images" / row["file"], int(row["class_index"])) for row in rows]


@pytest.fixture(scope="module")
def torchvision_probabilities(torch, weights_path, photos):
    """torchvision's softmax output for every photo, with its own preprocessing: ``(100, 1000)``."""
    import torchvision
    from torchvision import transforms

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    model.eval()
    preprocess = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    batch = torch.stack([preprocess(Image.open(path).convert("RGB")) for path, _ in photos])
    with torch.no_grad():
        return torch.softmax(model(batch), dim=1).numpy()


@pytest.fixture(autouse=True)
def fresh_model_cache():
    """Each test starts without a cached model, so tests that change the weights cannot see each other's."""
    predict_module._load_model.cache_clear()
    yield
    predict_module._load_model.cache_clear()


def test_real_weights_agree_with_torchvision_on_every_photo(torch, weights_path, photos, torchvision_probabilities, report):
    results = predict([path for path, _ in photos], topk=1000, weights=weights_path)
    assert len(results) == len(photos)
    worst = 0.0
    for (path, _), predictions, expected in zip(photos, results, torchvision_probabilities):
        ours = np.zeros(1000)
        for p in predictions:
            ours[p.index] = p.probability
        assert predictions[0].index == int(np.argmax(expected)), f"{path.name}: top-1 differs from torchvision's"
        worst = max(worst, float(np.max(np.abs(ours - expected))))
    assert worst <= 1e-4, f"largest probability difference from torchvision: {worst:.1e}"

    truth = np.array([label for _, label in photos])
    ours_top1 = np.mean([predictions[0].index for predictions in results] == truth)
    torchvision_top1 = np.mean(np.argmax(torchvision_probabilities, axis=1) == truth)
    report(f"top-1 on the {len(photos)} shared photos: npmobilenet {ours_top1:.2f}, torchvision {torchvision_top1:.2f}; "
           f"largest probability difference {worst:.1e}")
    assert ours_top1 == torchvision_top1 == 0.85  # 0.85: torchvision's figure in ../shared/README.md


def test_labels_are_torchvisions_class_names(torch, weights_path, photos):
    import torchvision

    categories = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    (predictions,) = predict([photos[0][0]], topk=5, weights=weights_path)
    for p in predictions:
        assert p.label == categories[p.index]


def test_example_photo_is_a_cat(weights_path, torchvision_probabilities):
    """The photo the README's first command classifies: torchvision's top class is 285, Egyptian cat."""
    (best,) = predict(REPO_EXAMPLE, topk=1, weights=weights_path)
    assert (best.index, best.label) == (285, "Egyptian cat")


# --- the forms predict() accepts ----------------------------------------------------------------


def test_single_image_forms_give_the_same_predictions(weights_path):
    path = REPO_EXAMPLE
    with Image.open(path) as image:
        image = image.convert("RGB")
    array = np.asarray(image)
    from_path = predict(path, topk=3, weights=weights_path)
    assert isinstance(from_path, list) and len(from_path) == 3
    assert all(isinstance(p, Prediction) and isinstance(p.index, int) and isinstance(p.probability, float) for p in from_path)
    assert [p.probability for p in from_path] == sorted((p.probability for p in from_path), reverse=True)
    for other in (predict(image, topk=3, weights=weights_path), predict(array, topk=3, weights=weights_path)):
        assert [p.index for p in other] == [p.index for p in from_path]
        np.testing.assert_allclose([p.probability for p in other], [p.probability for p in from_path], atol=1e-6)


def test_a_list_is_one_batch_and_keeps_order(weights_path, photos, monkeypatch):
    paths = [photos[3][0], REPO_EXAMPLE, photos[7][0]]
    forwards = []
    model = predict_module.load_model(weights_path)
    original_forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, x: forwards.append(x.shape) or original_forward(self, x))
    together = predict(paths, topk=2, weights=weights_path)
    assert forwards == [(3, 3, 224, 224)]
    one_by_one = [predict(path, topk=2, weights=weights_path) for path in paths]
    assert [[p.index for p in r] for r in together] == [[p.index for p in r] for r in one_by_one]
    with pytest.raises(ValueError, match="empty list"):
        predict([], weights=weights_path)


def test_predict_keeps_no_cache_and_loads_weights_once(weights_path, monkeypatch):
    calls = []
    original = predict_module.resolve_weights
    monkeypatch.setattr(predict_module, "resolve_weights", lambda *a, **k: calls.append(a) or original(*a, **k))
    predict(REPO_EXAMPLE, weights=weights_path)
    predict(REPO_EXAMPLE, weights=str(weights_path))
    assert len(calls) == 1
    model = predict_module.load_model(weights_path)
    assert not model.training
    assert all(module.cache is None for module in model.modules()), "predict() must run under no_grad"


def test_weights_from_the_environment_variable(weights_path, monkeypatch):
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(weights_path))
    (best,) = predict(REPO_EXAMPLE, topk=1)
    assert best.index == 285
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(weights_path.with_name("absent.pth")))
    with pytest.raises(errors.WeightsError, match="NPMOBILENET_WEIGHTS"):
        predict(REPO_EXAMPLE)


@pytest.mark.parametrize("topk", [0, 1001, 2.5, "3", True])
def test_bad_topk(weights_path, topk):
    with pytest.raises(ValueError, match="topk"):
        predict(REPO_EXAMPLE, topk=topk, weights=weights_path)


def test_bad_images_raise_image_error(weights_path, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(errors.ImageError, match="notes.jpg"):
        predict(text, weights=weights_path)
    with pytest.raises(errors.ImageError, match="missing.jpg"):
        predict([REPO_EXAMPLE, tmp_path / "missing.jpg"], weights=weights_path)
    with pytest.raises(errors.ShapeError):
        predict(np.zeros((8, 8, 3), dtype=np.float32), weights=weights_path)


def test_package_exports_predict():
    assert npmobilenet.predict is predict and npmobilenet.Prediction is Prediction
