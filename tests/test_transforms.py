"""Preprocessing against torchvision, the class names against torchvision, and every bad input.

The reference is always torchvision's own preset, ``ImageClassification`` (or ``Compose`` of
``Resize``, ``CenterCrop``, ``ToTensor``, ``Normalize``), run on the same PIL image; for an
image that is not RGB, on ``image.convert("RGB")`` as torchvision's ImageFolder loader does, or
on the 8-bit image that npmobilenet documents for 16-bit modes. Nothing here compares
npmobilenet's output with itself.
"""

import gc
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

from npmobilenet import imagenet, transforms
from npmobilenet.errors import ImageError, ShapeError

TOLERANCE = 1e-5
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
CLASSES_FILE = Path(imagenet.__file__).parent / "data" / "imagenet_classes.txt"
TORCHVISION_FILTERS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC"}


# ---------------------------------------------------------------------------------------------
# References and sample images
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def torchvision(torch):
    return require_module("torchvision")


def torchvision_preset(torchvision, image, resize_size=256, crop_size=224, interpolation="bilinear"):
    """torchvision's ``ImageClassification`` preset on a PIL image, as a NumPy array."""
    from torchvision.transforms._presets import ImageClassification

    mode = getattr(torchvision.transforms.InterpolationMode, TORCHVISION_FILTERS[interpolation])
    preset = ImageClassification(
        crop_size=crop_size, resize_size=resize_size, interpolation=mode, antialias=True
    )
    return preset(image).numpy()


def assert_close(actual, expected):
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="session")
def photo_paths(shared_dir):
    """A few of the shared ImageNet photos: landscape, portrait, square, small, large and one gray."""
    paths = sorted((shared_dir / "images").glob("*.JPEG"))
    assert len(paths) >= 20, f"expected the shared photos in {shared_dir / 'images'}"
    chosen = paths[::17][:6]
    return chosen + [path for path in paths if image_mode(path) == "L"][:1]


def image_mode(path):
    with Image.open(path) as image:
        return image.mode


@pytest.fixture(scope="session")
def photo(photo_paths):
    """One real photo, decoded, as RGB."""
    with Image.open(photo_paths[0]) as image:
        return image.convert("RGB")


def random_image(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# ---------------------------------------------------------------------------------------------
# The class names
# ---------------------------------------------------------------------------------------------

def test_class_names_equal_torchvisions_list(torchvision):
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    names = imagenet.categories()
    assert len(names) == 1000
    assert names == tuple(_IMAGENET_CATEGORIES)


def test_class_names_file_is_read_once_and_well_formed():
    names = imagenet.categories()
    assert isinstance(names, tuple)
    assert imagenet.categories() is names
    assert CLASSES_FILE.read_text(encoding="utf-8").splitlines() == list(names)
    assert all(name and name == name.strip() for name in names)
    assert names[0] == "tench" and names[285] == "Egyptian cat" and names[999] == "toilet tissue"


# ---------------------------------------------------------------------------------------------
# Equal to torchvision's preset
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resize_size", [256, 232])
def test_real_photos_equal_torchvisions_preset(torchvision, photo_paths, resize_size):
    for path in photo_paths:
        with Image.open(path) as image:
            assert image.getexif().get(0x0112, 1) == 1, "the reference assumes no EXIF rotation"
            expected = torchvision_preset(torchvision, image.convert("RGB"), resize_size)
        assert_close(transforms.preprocess(path, resize_size=resize_size), expected)


def test_real_photo_equals_torchvisions_compose(torchvision, photo_paths):
    T = torchvision.transforms
    compose = T.Compose([
        T.Resize(256), T.CenterCrop(224), T.ToTensor(),
        T.Normalize(transforms.IMAGENET_MEAN, transforms.IMAGENET_STD),
    ])
    with Image.open(photo_paths[1]) as image:
        expected = compose(image.convert("RGB")).numpy()
    assert_close(transforms.preprocess(str(photo_paths[1])), expected)


@pytest.mark.parametrize("width, height, resize_size, crop_size", [
    (100, 150, 64, 224),    # resized smaller than the crop: padded on every side
    (1, 1, 256, 224),       # a single pixel
    (3, 2, 256, 224),       # tiny, non-square
    (2, 3, 200, 224),       # shorter side padded only
    (224, 224, 224, 224),   # already the right size: no resize, no crop
    (257, 255, 255, 224),   # odd sizes, shorter side already the target
    (301, 225, 256, 223),   # odd crop: offsets that are halves (Python's round)
    (640, 480, 232, 224),   # torchvision's V2 weights setting
])
def test_sizes_equal_torchvisions_preset(torchvision, width, height, resize_size, crop_size):
    image = random_image(width, height)
    expected = torchvision_preset(torchvision, image, resize_size, crop_size)
    assert_close(transforms.preprocess(image, resize_size, crop_size), expected)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 300), height=st.integers(1, 300),
    resize_size=st.integers(1, 260), crop_size=st.integers(1, 240),
    interpolation=st.sampled_from(sorted(transforms.INTERPOLATIONS)),
)
def test_random_sizes_equal_torchvisions_preset(torchvision, width, height, resize_size, crop_size,
                                                interpolation):
    image = random_image(width, height, seed=width * 1000 + height)
    expected = torchvision_preset(torchvision, image, resize_size, crop_size, interpolation)
    actual = transforms.preprocess(image, resize_size, crop_size, interpolation=interpolation)
    assert_close(actual, expected)


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 3000), height=st.integers(1, 3000), size=st.integers(1, 600))
def test_resized_size_is_torchvisions_rule(torchvision, width, height, size):
    resized = torchvision.transforms.functional.resize(Image.new("L", (width, height)), [size])
    assert transforms.resized_size(width, height, size) == resized.size


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 60), height=st.integers(1, 60), size=st.integers(1, 60))
def test_center_crop_equals_torchvisions(torchvision, width, height, size):
    image = random_image(width, height, seed=size)
    expected = torchvision.transforms.functional.center_crop(image, [size])
    np.testing.assert_array_equal(np.asarray(transforms.center_crop(image, size)), np.asarray(expected))


def test_float_steps_equal_torchvisions(torchvision, photo):
    F = torchvision.transforms.functional
    floats = transforms.to_float_array(photo)
    np.testing.assert_array_equal(floats, F.to_tensor(photo).numpy())
    normalized = F.normalize(F.to_tensor(photo), transforms.IMAGENET_MEAN, transforms.IMAGENET_STD)
    assert_close(transforms.normalize(floats), normalized.numpy())


def test_normalize_keeps_dtype_and_takes_batches():
    batch = np.random.default_rng(1).random((2, 3, 4, 5))
    out = transforms.normalize(batch, mean=(0.5, 0.25, 0.0), std=(2.0, 4.0, 1.0))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[1, 1], (batch[1, 1] - 0.25) / 4.0)


# ---------------------------------------------------------------------------------------------
# Modes: every kind of image becomes RGB the documented way
# ---------------------------------------------------------------------------------------------

def image_in_mode(photo, mode):
    """``photo`` converted to ``mode``; modes with alpha get a random, non-trivial alpha channel."""
    alpha = Image.fromarray(np.random.default_rng(2).integers(0, 256, photo.size[::-1], dtype=np.uint8))
    if mode == "LA":
        image = photo.convert("L")
        image.putalpha(alpha)
        return image
    if mode == "RGBA":
        image = photo.copy()
        image.putalpha(alpha)
        return image
    if mode == "P with transparency":
        image = photo.convert("P")
        image.info["transparency"] = 0
        return image
    if mode == "PA":
        return image_in_mode(photo, "RGBA").convert("PA")
    return photo.convert(mode)


MODES = ["L", "LA", "P", "P with transparency", "PA", "RGBA", "CMYK", "1", "YCbCr", "F"]


@pytest.mark.parametrize("mode", MODES)
def test_modes_equal_torchvision_after_convert_rgb(torchvision, photo, mode):
    image = image_in_mode(photo, mode)
    expected = torchvision_preset(torchvision, image.convert("RGB"))
    assert_close(transforms.preprocess(image), expected)


@pytest.mark.parametrize("mode, suffix", [
    ("L", ".png"), ("LA", ".png"), ("P", ".png"), ("P with transparency", ".png"),
    ("RGBA", ".png"), ("1", ".png"), ("CMYK", ".tiff"), ("CMYK", ".jpg"),
])
def test_mode_files_equal_torchvision_after_convert_rgb(torchvision, photo, tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    image_in_mode(photo, mode).save(path)
    with Image.open(path) as saved:
        expected = torchvision_preset(torchvision, saved.convert("RGB"))
    assert_close(transforms.preprocess(path), expected)


def sixteen_bit_values(width=300, height=200):
    """A gray image that uses the whole 16-bit range, most of it above 255."""
    ramp = np.linspace(0, 65535, width * height).reshape(height, width)
    noise = np.random.default_rng(3).integers(-300, 300, size=ramp.shape)
    return np.clip(ramp + noise, 0, 65535).astype(np.uint16)


def documented_eight_bit(values):
    """The documented rule for 16-bit images: round(value / 257), then gray -> RGB."""
    return Image.fromarray(np.rint(values / 257.0).astype(np.uint8)).convert("RGB")


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_gray_is_scaled_to_eight_bits(torchvision, tmp_path, mode):
    values = sixteen_bit_values()
    if mode == "I;16B":
        image = Image.frombytes(mode, values.shape[::-1], values.astype(">u2").tobytes())
    else:
        image = Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.int32))
    assert image.mode == mode
    expected = torchvision_preset(torchvision, documented_eight_bit(values))
    assert_close(transforms.preprocess(image), expected)
    if mode == "I;16":
        image.save(tmp_path / "sixteen.png")
        assert_close(transforms.preprocess(tmp_path / "sixteen.png"), expected)


def test_sixteen_bit_is_not_clipped_white():
    values = np.full((4, 4), 32896, dtype=np.uint16)   # mid-gray: 32896 / 257 = 128
    rgb = transforms.open_image(Image.fromarray(values))
    assert rgb.mode == "RGB"
    assert np.all(np.asarray(rgb) == 128)


def test_uint8_arrays_equal_their_pil_images(torchvision, photo):
    pixels = np.asarray(photo)
    expected = torchvision_preset(torchvision, photo)
    assert_close(transforms.preprocess(pixels), expected)
    gray = pixels[..., 1].copy()
    expected_gray = torchvision_preset(torchvision, Image.fromarray(gray).convert("RGB"))
    assert_close(transforms.preprocess(gray), expected_gray)
    view = pixels[::2, ::3]       # not contiguous
    assert_close(transforms.preprocess(view), torchvision_preset(torchvision, Image.fromarray(view.copy())))


def test_open_image_returns_rgb_and_leaves_rgb_images_alone(photo):
    assert transforms.open_image(photo).mode == "RGB"
    assert transforms.to_rgb(photo) is photo
    assert transforms.open_image(Image.new("La", (3, 2))).mode == "RGB"


# ---------------------------------------------------------------------------------------------
# EXIF orientation
# ---------------------------------------------------------------------------------------------

# What each EXIF orientation value asks the viewer to do, from the EXIF standard, by hand.
UPRIGHT_BY_ORIENTATION = {
    1: None,
    2: Image.FLIP_LEFT_RIGHT,
    3: Image.ROTATE_180,
    4: Image.FLIP_TOP_BOTTOM,
    5: Image.TRANSPOSE,
    6: Image.ROTATE_270,      # rotate 90 degrees clockwise
    7: Image.TRANSVERSE,
    8: Image.ROTATE_90,       # rotate 90 degrees counter-clockwise
}


def save_with_orientation(image, path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


@pytest.mark.parametrize("orientation", sorted(UPRIGHT_BY_ORIENTATION))
def test_exif_orientation_is_applied(torchvision, photo, tmp_path, orientation):
    stored = photo.crop((0, 0, 300, 200))      # non-square, so a wrong rotation changes the shape
    path = tmp_path / f"oriented_{orientation}.png"
    save_with_orientation(stored, path, orientation)
    method = UPRIGHT_BY_ORIENTATION[orientation]
    upright = stored if method is None else stored.transpose(method)
    expected = torchvision_preset(torchvision, upright)

    assert transforms.open_image(path).size == upright.size
    assert_close(transforms.preprocess(path), expected)
    with Image.open(path) as opened:
        assert_close(transforms.preprocess(opened), expected)


def test_exif_orientation_of_a_jpeg(torchvision, photo, tmp_path):
    path = tmp_path / "sideways.jpg"
    save_with_orientation(photo, path, 6)
    with Image.open(path) as opened:
        expected = torchvision_preset(torchvision, ImageOps.exif_transpose(opened).convert("RGB"))
    assert transforms.open_image(path).size == photo.size[::-1]
    assert_close(transforms.preprocess(path), expected)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------

def test_batch_of_mixed_sources_equals_torchvision(torchvision, photo_paths, photo):
    sources = [photo_paths[0], photo, np.asarray(photo)[50:250, 10:400]]
    with Image.open(photo_paths[0]) as opened:
        references = [opened.convert("RGB"), photo, Image.fromarray(sources[2])]
    batch = transforms.preprocess_batch(sources, resize_size=232)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    for row, reference in zip(batch, references):
        assert_close(row, torchvision_preset(torchvision, reference, resize_size=232))


def test_batch_rejects_a_single_source_and_an_empty_list(photo):
    for single in ["cat.jpg", Path("cat.jpg"), photo, np.zeros((8, 8, 3), np.uint8)]:
        with pytest.raises(TypeError, match="preprocess_batch: expected a list of images"):
            transforms.preprocess_batch(single)
    with pytest.raises(ValueError, match="at least one image"):
        transforms.preprocess_batch([])


# ---------------------------------------------------------------------------------------------
# Bad files: ImageError naming the file, never a raw Pillow error; files are closed
# ---------------------------------------------------------------------------------------------

def truncated_jpeg(photo, path):
    photo.save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def assert_image_error(path, *fragments):
    with pytest.raises(ImageError) as caught:
        transforms.preprocess(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_file(tmp_path):
    assert_image_error(tmp_path / "no_such_photo.jpg", "no such file")


def test_directory(tmp_path):
    assert_image_error(tmp_path, "is a directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert_image_error(path, "empty (0 bytes)")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "not_a_photo.jpg"
    path.write_text("<html><body>404 Not Found</body></html>\n")
    assert_image_error(path, "not an image")


def test_unreadable_file(photo, tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    photo.save(path)

    def open_without_permission(fp, *args, **kwargs):   # chmod 0 does not stop root, so pretend
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", open_without_permission)
    assert_image_error(path, "permission denied")


def test_truncated_jpeg_is_detected(photo, tmp_path):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    path = truncated_jpeg(photo, tmp_path / "truncated.jpg")
    assert_image_error(path, "truncated")
    with Image.open(path) as opened, pytest.raises(ImageError, match="truncated"):
        transforms.preprocess(opened)      # also when the caller opened it


def test_truncated_png_is_detected(photo, tmp_path):
    path = tmp_path / "truncated.png"
    photo.save(path)
    path.write_bytes(path.read_bytes()[:5000])
    assert_image_error(path)


# 64 x 64 = 4096 pixels: over twice the limit 1000 (Pillow raises), over the limit 3000 (Pillow warns).
@pytest.mark.parametrize("limit", [1000, 3000])
def test_image_over_the_decompression_bomb_limit(tmp_path, monkeypatch, limit):
    path = tmp_path / "large.png"
    random_image(64, 64).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    message = assert_image_error(path, "4096 pixels", f"MAX_IMAGE_PIXELS = {limit}")
    assert "decompression" in message or "too large" in message or "very large" in message


def test_files_are_closed(photo, tmp_path):
    good = tmp_path / "good.png"
    photo.save(good)
    truncated = truncated_jpeg(photo, tmp_path / "truncated.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        transforms.preprocess(good)
        with pytest.raises(ImageError):
            transforms.preprocess(truncated)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("array, found", [
    (np.zeros((8, 8, 3), np.float32), "dtype float32"),
    (np.zeros((8, 8, 3), np.uint16), "dtype uint16"),
    (np.zeros((8, 8, 4), np.uint8), "shape (8, 8, 4)"),
    (np.zeros((3, 8, 8, 1), np.uint8), "shape (3, 8, 8, 1)"),
    (np.zeros((8,), np.uint8), "shape (8,)"),
    (np.zeros((0, 8, 3), np.uint8), "shape (0, 8, 3)"),
])
def test_bad_arrays_raise_shape_error(array, found):
    with pytest.raises(ShapeError) as caught:
        transforms.preprocess(array)
    assert "uint8 array of shape (H, W, 3)" in str(caught.value)
    assert found in str(caught.value)


def test_unknown_source_type():
    with pytest.raises(TypeError, match="expected a path"):
        transforms.open_image(42)


def test_to_float_array_wants_rgb_uint8():
    with pytest.raises(ShapeError, match=r"\(H, W, 3\)"):
        transforms.to_float_array(np.zeros((4, 4), np.uint8))


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings_, match", [
    ({"resize_size": 0}, "resize_size to be a positive int, got 0"),
    ({"resize_size": 256.0}, "resize_size to be a positive int"),
    ({"resize_size": True}, "resize_size to be a positive int"),
    ({"crop_size": -224}, "crop_size to be a positive int"),
    ({"crop_size": "224"}, "crop_size to be a positive int"),
    ({"interpolation": "linear"}, r"interpolation to be one of \['bicubic', 'bilinear', 'nearest'\]"),
    ({"mean": (0.5, 0.5)}, "mean to be 3 numbers"),
    ({"std": (0.2, 0.0, 0.2)}, "std to be positive"),
])
def test_bad_settings_raise_value_error_before_reading(settings_, match):
    with pytest.raises(ValueError, match=match):
        transforms.preprocess("this file is never opened.jpg", **settings_)


def test_step_functions_check_their_arguments(photo):
    with pytest.raises(ValueError, match="size to be a positive int"):
        transforms.resize_shorter_side(photo, 0)
    with pytest.raises(ValueError, match="interpolation"):
        transforms.resize_shorter_side(photo, 10, interpolation="cubic")
    with pytest.raises(ValueError, match="size to be a positive int"):
        transforms.center_crop(photo, 2.5)
    with pytest.raises(TypeError, match="PIL.Image.Image"):
        transforms.center_crop(np.asarray(photo), 10)
    with pytest.raises(ValueError, match="one value per channel"):
        transforms.normalize(np.zeros((3, 2, 2), np.float32), mean=(0.5,) * 4)
    with pytest.raises(ShapeError, match="float32 or float64"):
        transforms.normalize(np.zeros((3, 2, 2), np.uint8))


# ---------------------------------------------------------------------------------------------
# The example photo the repository ships
# ---------------------------------------------------------------------------------------------

def test_example_photo_is_small_and_documented():
    photos = sorted(EXAMPLES_DIR.glob("*.jpg"))
    assert photos, f"expected a sample photo in {EXAMPLES_DIR}"
    readme = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    for path in photos:
        assert path.stat().st_size < 100_000
        assert path.name in readme
        assert transforms.preprocess(path).shape == (3, 224, 224)
    assert "licence" in readme.lower()


def test_example_photo_is_a_cat_for_torchvisions_mobilenet(torch, torchvision, shared_dir):
    model = torchvision.models.mobilenet_v2()
    weights = torch.load(shared_dir / "weights" / "mobilenet_v2_imagenet_qat.pth", weights_only=True)
    model.load_state_dict(weights)
    model.eval()
    batch = transforms.preprocess_batch([EXAMPLES_DIR / "chelsea.jpg"])
    with torch.no_grad():
        top5 = model(torch.from_numpy(batch))[0].topk(5).indices.tolist()
    cats = set(range(281, 286))     # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat
    assert top5[0] in cats
    assert {imagenet.categories()[i] for i in top5[:3]} <= {imagenet.categories()[i] for i in cats}
