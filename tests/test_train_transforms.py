"""The training transforms against torchvision's: same pixels, same box rules, same distributions.

Deterministic steps (resized_crop, Resize, CenterCrop, ToArray, Normalize, the flip) are
compared with torchvision's on the same PIL image. The random ones cannot draw torch's random
numbers, so RandomResizedCrop is checked three ways: every box obeys the rules, the fallback is
torchvision's box exactly, and over thousands of draws the boxes have torchvision's
distribution (two-sample Kolmogorov-Smirnov distance).
"""

import math

import numpy as np
import pytest
from PIL import Image

from npmobilenet import transforms as T

TOLERANCE = 1e-5
IMAGENET_NORMALIZE = (T.IMAGENET_MEAN, T.IMAGENET_STD)


@pytest.fixture(scope="module")
def torchvision(torch):
    import torchvision

    return torchvision


@pytest.fixture(scope="module")
def photos(shared_dir):
    """Three real photos of different shapes, decoded as RGB."""
    paths = sorted((shared_dir / "images").glob("*.JPEG"))[::31][:3]
    assert len(paths) == 3, f"expected the shared photos in {shared_dir / 'images'}"
    return [T.open_image(path) for path in paths]


def random_image(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def as_floats(torchvision, image):
    """torchvision's ToTensor of a PIL image, as a NumPy array."""
    return torchvision.transforms.functional.to_tensor(image).numpy()


# ---------------------------------------------------------------------------------------------
# resized_crop and the deterministic chain
# ---------------------------------------------------------------------------------------------

BOXES = [  # (top, left, height, width, size) on a 300 x 200 (width x height) image
    (10, 20, 100, 150, 64),             # inside; int size: the shorter side becomes 64
    (0, 0, 200, 300, (200, 300)),       # the whole image at its own size: unchanged
    (-10, -20, 80, 90, (50, 70)),       # partly outside, top left: black there
    (150, 250, 100, 100, (33, 47)),     # partly outside, bottom right
    (-5, -5, 210, 310, 100),            # larger than the image on every side
    (50, 60, 1, 1, (8, 5)),             # one pixel, blown up
    (30, 40, 120, 90, [77]),            # size as a one-element list: the shorter side
]


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_resized_crop_equals_torchvisions(torchvision, box, interpolation):
    image = random_image(300, 200, seed=1)
    mode = getattr(torchvision.transforms.InterpolationMode, interpolation.upper())
    expected = torchvision.transforms.functional.resized_crop(image, *box, interpolation=mode)
    actual = T.resized_crop(image, *box, interpolation=interpolation)
    assert actual.size == expected.size
    np.testing.assert_allclose(T.to_float_array(actual), as_floats(torchvision, expected), rtol=0, atol=TOLERANCE)


def test_resized_crop_equals_torchvisions_on_a_real_photo(torchvision, photos):
    photo = photos[0]
    width, height = photo.size
    for box in [(0, 0, height // 2, width // 3, (224, 160)), (height // 3, -40, height, width // 2, 224)]:
        expected = torchvision.transforms.functional.resized_crop(photo, *box)
        np.testing.assert_allclose(T.to_float_array(T.resized_crop(photo, *box)),
                                   as_floats(torchvision, expected), rtol=0, atol=TOLERANCE)


def test_evaluation_chain_equals_torchvisions_on_real_photos(torchvision, photos):
    tv = torchvision.transforms
    expected_chain = tv.Compose([tv.Resize(256), tv.CenterCrop(224), tv.ToTensor(), tv.Normalize(*IMAGENET_NORMALIZE)])
    chain = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToArray(), T.Normalize(*IMAGENET_NORMALIZE)])
    for photo in photos:
        actual = chain(photo)
        assert actual.dtype == np.float32 and actual.shape == (3, 224, 224)
        np.testing.assert_allclose(actual, expected_chain(photo).numpy(), rtol=0, atol=TOLERANCE)
        np.testing.assert_array_equal(actual, T.preprocess(photo))  # the preset is this chain


@pytest.mark.parametrize("resize, crop", [
    ((201, 301), (150, 250)),   # exact (height, width) resize; odd margins: offsets 25.5 round to 26
    (100, (120, 90)),           # a crop taller than the image: padded with black
    ([64], 64),                 # one-element list: the shorter side
    (57, (57, 1)),              # odd sizes
])
def test_resize_and_center_crop_equal_torchvisions(torchvision, photos, resize, crop):
    tv = torchvision.transforms
    expected = tv.Compose([tv.Resize(resize), tv.CenterCrop(crop), tv.ToTensor()])(photos[1]).numpy()
    actual = T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToArray()])(photos[1])
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


def test_to_array_and_normalize_equal_torchvisions(torchvision, photos):
    tv = torchvision.transforms
    floats = T.ToArray()(photos[2])
    np.testing.assert_array_equal(floats, tv.ToTensor()(photos[2]).numpy())
    expected = tv.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))(tv.ToTensor()(photos[2])).numpy()
    np.testing.assert_allclose(T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))(floats), expected, rtol=0, atol=TOLERANCE)


# ---------------------------------------------------------------------------------------------
# RandomResizedCrop: the box
# ---------------------------------------------------------------------------------------------

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def fits_the_rules(box, width, height, scale, ratio):
    """Whether a box drawn in the loop (not the fallback) obeys the rules, allowing for the rounding of w and h."""
    top, left, h, w = box
    inside = 0 <= top and top + h <= height and 0 <= left and left + w <= width and h >= 1 and w >= 1
    area = width * height
    # w and h are each rounded by at most 0.5 from sqrt(s A r) and sqrt(s A / r).
    area_ok = (w - 0.5) * (h - 0.5) <= scale[1] * area and (w + 0.5) * (h + 0.5) >= scale[0] * area
    ratio_ok = (w - 0.5) / (h + 0.5) <= ratio[1] and (w + 0.5) / (h - 0.5) >= ratio[0]
    return inside and area_ok and ratio_ok


def central_fallback(width, height, ratio):
    """The fallback box, written out from torchvision's source."""
    if width / height < min(ratio):
        w, h = width, round(width / min(ratio))
    elif width / height > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("width, height", [(500, 375), (375, 500), (64, 64), (1000, 50), (7, 300), (1, 1)])
def test_every_box_obeys_the_rules(width, height):
    image = Image.new("RGB", (width, height))
    rng = np.random.default_rng(0)
    fallbacks = 0
    for _ in range(500):
        box = T.RandomResizedCrop.get_params(image, SCALE, RATIO, rng)
        if box == central_fallback(width, height, RATIO) and not fits_the_rules(box, width, height, SCALE, RATIO):
            fallbacks += 1
            continue
        assert fits_the_rules(box, width, height, SCALE, RATIO), box
    if width / height in (4 / 3, 3 / 4, 1):
        assert fallbacks == 0


def test_get_params_is_reproducible_from_the_generator():
    image = Image.new("RGB", (300, 200))
    boxes = [T.RandomResizedCrop.get_params(image, SCALE, RATIO, np.random.default_rng(42)) for _ in range(2)]
    assert boxes[0] == boxes[1]
    assert boxes[0] != T.RandomResizedCrop.get_params(image, SCALE, RATIO, np.random.default_rng(43))


@pytest.mark.parametrize("width, height", [(300, 300), (400, 100), (100, 400), (120, 100)])
def test_fallback_equals_torchvisions(torchvision, width, height):
    """With scale above 1 no box fits in 10 tries: the central fallback, no randomness left."""
    image = Image.new("RGB", (width, height))
    scale = (2.0, 3.0)
    expected = torchvision.transforms.RandomResizedCrop.get_params(image, list(scale), list(RATIO))
    assert T.RandomResizedCrop.get_params(image, scale, RATIO, np.random.default_rng(1)) == tuple(expected)


def ks_distance(a, b):
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return np.max(np.abs(cdf_a - cdf_b))


def box_statistics(boxes, width, height):
    """Per box: the area kept, log(w / h), and top and left as fractions of their range."""
    top, left, h, w = np.asarray(boxes, dtype=np.float64).T
    return {
        "area fraction": h * w / (width * height),
        "log aspect ratio": np.log(w / h),
        "top": top / np.maximum(height - h, 1),
        "left": left / np.maximum(width - w, 1),
    }


@pytest.mark.parametrize("width, height", [(500, 500), (400, 100)])
def test_boxes_have_torchvisions_distribution(torch, torchvision, width, height):
    """4000 boxes each; a KS distance above 0.0436 would reject equal distributions at the 0.1% level.

    The wide image makes most tries fail, which exercises the retry loop and the fallback.
    """
    draws = 4000
    image = Image.new("RGB", (width, height))
    torch.manual_seed(0)
    theirs = [torchvision.transforms.RandomResizedCrop.get_params(image, list(SCALE), list(RATIO)) for _ in range(draws)]
    rng = np.random.default_rng(0)
    ours = [T.RandomResizedCrop.get_params(image, SCALE, RATIO, rng) for _ in range(draws)]
    critical = 1.949 * math.sqrt(2 / draws)
    for name, values in box_statistics(ours, width, height).items():
        distance = ks_distance(values, box_statistics(theirs, width, height)[name])
        assert distance < critical, f"{name}: KS distance {distance:.3f} >= {critical:.3f}"


def test_aspect_ratio_is_uniform_in_log_space():
    """log(w / h) ~ Uniform(log 3/4, log 4/3) is symmetric about 0: a box as often wide as tall.

    Drawing r itself uniformly in (3/4, 4/3) would make only 43% of the boxes taller than wide.
    """
    image = Image.new("RGB", (1000, 1000))  # with scale <= 0.5 every first try fits
    rng = np.random.default_rng(3)
    boxes = np.array([T.RandomResizedCrop.get_params(image, (0.08, 0.5), RATIO, rng) for _ in range(4000)])
    log_ratio = np.log(boxes[:, 3] / boxes[:, 2])
    assert abs(np.mean(log_ratio < 0) - 0.5) < 0.03
    assert np.all(np.abs(log_ratio) <= math.log(4 / 3) + 0.01)
    area = boxes[:, 2] * boxes[:, 3] / 1e6
    assert 0.079 < area.min() and area.max() < 0.502
    assert abs(np.mean(area) - (0.08 + 0.5) / 2) < 0.01  # uniform in the scale range


def test_random_resized_crop_is_resized_crop_at_the_drawn_box(torchvision, photos):
    crop = T.RandomResizedCrop((160, 200), scale=(0.2, 0.9))
    for seed in range(3):
        box = T.RandomResizedCrop.get_params(photos[0], (0.2, 0.9), RATIO, np.random.default_rng(seed))
        expected = torchvision.transforms.functional.resized_crop(photos[0], *box, [160, 200])
        actual = crop(photos[0], rng=np.random.default_rng(seed))
        assert actual.size == (200, 160)
        np.testing.assert_allclose(T.to_float_array(actual), as_floats(torchvision, expected), rtol=0, atol=TOLERANCE)


# ---------------------------------------------------------------------------------------------
# RandomHorizontalFlip, Compose, where random numbers come from
# ---------------------------------------------------------------------------------------------

def test_horizontal_flip_flips_exactly(torch, torchvision, photos):
    flip = T.RandomHorizontalFlip(p=1.0)
    expected = torchvision.transforms.functional.hflip(photos[0])
    np.testing.assert_array_equal(np.asarray(flip(photos[0])), np.asarray(expected))
    array = T.to_float_array(photos[0])
    flipped = flip(array)
    np.testing.assert_array_equal(flipped, torch.from_numpy(array).flip(-1).numpy())
    np.testing.assert_array_equal(flipped[:, :, 0], array[:, :, -1])
    assert T.RandomHorizontalFlip(p=0.0)(photos[0]) is photos[0]


def test_horizontal_flip_flips_with_probability_p():
    image = random_image(5, 3)
    mirrored = np.asarray(image)[:, ::-1]
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    flips = []
    for _ in range(2000):
        flipped = np.array_equal(np.asarray(T.RandomHorizontalFlip(0.3)(image, rng=rng)), mirrored)
        assert flipped == (twin.random() < 0.3)  # one draw, flipped when below p
        flips.append(flipped)
    assert abs(np.mean(flips) - 0.3) < 0.04


def train_chain(seed=None):
    """Crop, flip, array; with a seed, the crop and the flip each get their own generator from it."""
    crop_seed, flip_seed = (None, None) if seed is None else (seed, seed + 1)
    return T.Compose([T.RandomResizedCrop(48, seed=crop_seed), T.RandomHorizontalFlip(seed=flip_seed), T.ToArray()])


def test_compose_hands_the_generator_to_each_random_transform(photos):
    chain = train_chain()
    first = chain(photos[0], rng=np.random.default_rng(9))
    assert first.shape == (3, 48, 48)
    np.testing.assert_array_equal(first, chain(photos[0], rng=np.random.default_rng(9)))
    assert not np.array_equal(first, chain(photos[0], rng=np.random.default_rng(10)))


def test_without_rng_a_transform_draws_from_its_own_seeded_generator(photos):
    a, b = train_chain(seed=4), train_chain(seed=4)
    outputs_a = [a(photos[1]) for _ in range(3)]
    outputs_b = [b(photos[1]) for _ in range(3)]
    for x, y in zip(outputs_a, outputs_b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(outputs_a[0], outputs_a[1])  # the generator moves on


def test_compose_calls_plain_functions_without_rng(photos):
    chain = T.Compose([lambda image: image.convert("L").convert("RGB"), T.RandomHorizontalFlip(p=1.0), T.ToArray()])
    out = chain(photos[0], rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out[0], out[1])


def test_reprs_read_like_torchvisions(torchvision):
    tv = torchvision.transforms
    ours = T.Compose([T.CenterCrop(224), T.RandomHorizontalFlip(0.3), T.Normalize(*IMAGENET_NORMALIZE)])
    theirs = tv.Compose([tv.CenterCrop(224), tv.RandomHorizontalFlip(0.3), tv.Normalize(*IMAGENET_NORMALIZE)])
    assert repr(ours) == repr(theirs)
    assert repr(T.RandomResizedCrop(224)) == (
        "RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0), ratio=(0.75, 1.3333), interpolation=bilinear)"
    )
    assert repr(tv.RandomResizedCrop(224)).startswith(repr(T.RandomResizedCrop(224))[:-1])
    assert repr(T.Resize(256)) == "Resize(size=256, interpolation=bilinear)"
    assert repr(tv.Resize(256)).startswith(repr(T.Resize(256))[:-1])
    assert repr(T.ToArray()) == "ToArray()"


@pytest.mark.parametrize("make, error", [
    (lambda: T.RandomResizedCrop(224, scale=(1.0, 0.5)), ValueError),
    (lambda: T.RandomResizedCrop(224, ratio=(0.0, 1.0)), ValueError),
    (lambda: T.RandomResizedCrop((224, 224, 3)), ValueError),
    (lambda: T.RandomResizedCrop(0), ValueError),
    (lambda: T.RandomResizedCrop(224, interpolation="lanczos"), ValueError),
    (lambda: T.RandomHorizontalFlip(p=1.5), ValueError),
    (lambda: T.Resize(2.5), ValueError),
    (lambda: T.CenterCrop(-1), ValueError),
    (lambda: T.Normalize((0.5, 0.5), (0.5, 0.0)), ValueError),
    (lambda: T.Compose([T.ToArray(), "not a transform"]), TypeError),
    (lambda: T.RandomHorizontalFlip()(random_image(3, 3), rng=7), TypeError),
    (lambda: T.resized_crop(random_image(3, 3), 0, 0, 0, 2, 4), ValueError),
    (lambda: T.resized_crop(np.zeros((3, 3, 3), np.uint8), 0, 0, 2, 2, 4), TypeError),
])
def test_bad_arguments_are_refused(make, error):
    with pytest.raises(error):
        make()
