"""Image -> normalized NCHW float32 array: torchvision's ImageNet preprocessing, with Pillow.

torchvision's classification preset, ``ImageClassification(crop_size=224, resize_size=256)``
(bilinear, antialiased), applied to a PIL image, is five steps. Each is one function here:

1. :func:`open_image`: read the file, turn it upright (EXIF orientation), convert it to RGB,
   8 bits per channel.
2. :func:`resize_shorter_side`: scale the image so that its shorter side is ``resize_size``
   pixels, keeping the aspect ratio (the longer side becomes ``int(resize_size * long / short)``).
3. :func:`center_crop`: cut the central ``crop_size x crop_size`` square (padding with black
   first if the image is smaller than that).
4. :func:`to_float_array`: HWC uint8 -> CHW float32, ``x / 255``, so values lie in [0, 1].
5. :func:`normalize`: per channel ``c``, ``(x[c] - mean[c]) / std[c]``, with ImageNet's mean and std.

:func:`preprocess` runs the five steps on one image and returns ``(3, crop, crop)``;
:func:`preprocess_batch` stacks several into ``(N, 3, crop, crop)``, the NCHW layout the model takes.

The numbers equal torchvision's (the tests compare them to within 1e-5) because the same Pillow
calls do the resizing, and the float steps are the same float32 operations.

How each kind of image becomes RGB (step 1)
-------------------------------------------
=====================  ===================================================================
mode                   what happens
=====================  ===================================================================
RGB                    kept as it is
L, 1, P, CMYK, YCbCr,  Pillow's ``image.convert("RGB")``, as torchvision's ``ImageFolder``
LAB, HSV, ...          loader does (gray is copied to the three channels, a palette is
                       looked up, CMYK uses Pillow's formula)
LA, La, PA, RGBA, P    the alpha channel (or the palette's transparency) is dropped, as
with transparency      ``convert("RGB")`` does in torchvision's loader: a transparent pixel
                       shows whatever colour it stores, often black
I;16, I;16B, ...       16-bit gray: each value is scaled to 8 bits, ``round(value / 257)``
                       (65535 / 257 = 255). Pillow's own ``convert`` would clip values to
                       0..255, turning most 16-bit photos white.
I                      32-bit integers, which is how 16-bit PNG and TIFF files are read by
                       some Pillow versions: taken as 16-bit values (clipped to 0..65535),
                       then scaled as above
F                      32-bit floats: Pillow's rule, values taken as 0..255, clipped and
                       truncated to integers
=====================  ===================================================================

A multi-frame file (an animated GIF, a multi-page TIFF) gives its first frame.

Training transforms
-------------------
The second half of the module has torchvision's transform classes, one step each, chained
with :class:`Compose`: :class:`RandomResizedCrop` and :class:`RandomHorizontalFlip` (the
augmentations), :class:`Resize`, :class:`CenterCrop`, :class:`ToArray` (torchvision's
``ToTensor``) and :class:`Normalize`, with the functions they use, :func:`resize`,
:func:`resized_crop` and :func:`hflip`. A random transform draws from a
``numpy.random.Generator``: the one passed as ``transform(image, rng=generator)``, else its
own, made from its ``seed`` argument; see :class:`RandomTransform`.
"""

import math
import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._checks import check_float_array
from .errors import ImageError, ShapeError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "center_crop",
    "normalize",
    "open_image",
    "preprocess",
    "preprocess_batch",
    "resize_shorter_side",
    "resized_size",
    "to_float_array",
    "to_rgb",
    # training transforms (the second half of the module)
    "CenterCrop",
    "Compose",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomTransform",
    "Resize",
    "ToArray",
    "apply_transform",
    "hflip",
    "resize",
    "resized_crop",
]

# The per-channel (R, G, B) mean and standard deviation of ImageNet's training images, in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Interpolation names and Pillow's filters. Pillow antialiases "bilinear" and "bicubic" when
# it shrinks an image (its filter widens with the scale), as torchvision's antialias=True asks.
INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
}

# A 16-bit value v in 0..65535 becomes round(v / 257) in 0..255 (257 * 255 = 65535).
SIXTEEN_TO_EIGHT_BITS = 257


# ---------------------------------------------------------------------------------------------
# Step 1: any source -> an upright RGB image
# ---------------------------------------------------------------------------------------------

def open_image(source):
    """Return ``source`` as an upright RGB ``PIL.Image.Image`` with 8 bits per channel.

    ``source`` is one of:

    * a path (``str`` or ``os.PathLike``) to an image file Pillow can read;
    * a ``PIL.Image.Image`` (any mode);
    * a ``uint8`` NumPy array of shape ``(H, W, 3)`` (RGB) or ``(H, W)`` (gray).

    Steps for a file or a PIL image: decode every pixel (so a truncated file fails here, not
    later), apply the EXIF orientation tag (``PIL.ImageOps.exif_transpose``: a phone photo
    taken sideways is turned upright), then :func:`to_rgb`. An array has no EXIF tag.

    Raises :class:`~npmobilenet.errors.ImageError`, naming the file, for a missing file, a
    directory, an empty file, a file that is not an image, a truncated or corrupt image, and an
    image larger than Pillow's decompression-bomb limit ``PIL.Image.MAX_IMAGE_PIXELS``.
    Raises :class:`~npmobilenet.errors.ShapeError` for an array of the wrong dtype or shape.
    """
    if isinstance(source, (str, os.PathLike)):
        return _read_image_file(source)
    if isinstance(source, Image.Image):
        return _prepare_pil_image(source)
    if isinstance(source, np.ndarray):
        return _array_to_image(source)
    raise TypeError(
        f"open_image: expected a path (str or os.PathLike), a PIL.Image.Image or a uint8 numpy "
        f"array, got {type(source).__name__}"
    )


def _read_image_file(path):
    """Open, fully decode and turn upright the image at ``path``; the file is closed on return."""
    path = os.fspath(path)
    _check_is_nonempty_file(path)
    try:
        with warnings.catch_warnings():
            # Above MAX_IMAGE_PIXELS Pillow only warns (above twice that it raises): refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode everything now: a truncated file raises OSError here
                upright = ImageOps.exif_transpose(image)  # a new image, independent of the file
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(_too_large_message(path, error)) from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied; expected an image file you can read") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path}: not an image Pillow can read (is it really a JPEG, PNG, ...? "
            f"a text or HTML page saved with an image name looks like this)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(
            f"{path}: the image is truncated or corrupt and cannot be decoded ({error}); "
            f"copy or download the file again"
        ) from None
    return to_rgb(upright, name=path)


def _check_is_nonempty_file(path):
    """Raise ImageError unless ``path`` is an existing, non-empty regular file."""
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file; expected the path of an image file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory; expected the path of an image file")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes); expected an image")


def _too_large_message(path, error):
    """Pillow's message gives the image's size; the limit stated is ours (Pillow's error quotes twice it)."""
    size = re.search(r"\((\d+) pixels\)", str(error))
    found = f"{size.group(1)} pixels" if size else "too many pixels"
    return (
        f"{path}: refusing to decode a very large image ({found}; the limit is "
        f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}, Pillow's guard against "
        f"decompression bombs); if you trust the file, raise the limit or shrink the image"
    )


def _prepare_pil_image(image):
    """Decode, turn upright and convert a PIL image someone else opened."""
    name = getattr(image, "filename", "") or f"the PIL image ({image.mode}, {image.width}x{image.height})"
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{name}: the image cannot be decoded ({error})") from None
    return to_rgb(upright, name=name)


def _array_to_image(array):
    """A ``uint8`` ``(H, W, 3)`` or ``(H, W)`` array -> an RGB PIL image."""
    expected = "a uint8 array of shape (H, W, 3) (RGB) or (H, W) (gray)"
    if array.dtype != np.uint8:
        raise ShapeError(
            f"open_image: expected {expected}, got dtype {array.dtype}; for floats in [0, 1] "
            f"use (array * 255).round().astype(np.uint8)"
        )
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ShapeError(f"open_image: expected {expected}, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ShapeError(f"open_image: expected {expected} with H, W >= 1, got shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def to_rgb(image, name="image"):
    """Convert a PIL image of any mode to RGB, 8 bits per channel (see the table in the module docstring).

    16-bit gray (``I;16*``, and ``I`` taken as 16-bit) is scaled to 8 bits as
    ``round(value / 257)``; alpha is dropped; every other mode goes through Pillow's
    ``convert("RGB")``. ``name`` (usually the file's path) goes into the error message of a mode
    that cannot be converted.
    """
    if image.mode == "RGB":
        return image
    if image.mode == "I" or image.mode.startswith("I;16"):
        return _sixteen_bit_to_eight_bit(image).convert("RGB")
    if image.mode == "La":  # alpha premultiplied: Pillow converts it to RGB only through LA
        image = image.convert("LA")
    try:
        with warnings.catch_warnings():
            # A palette with transparency makes Pillow suggest RGBA; we drop alpha on purpose.
            warnings.filterwarnings("ignore", message="Palette images with Transparency")
            return image.convert("RGB")
    except ValueError as error:
        raise ImageError(f"{name}: cannot convert an image of mode {image.mode!r} to RGB ({error})") from None


def _sixteen_bit_to_eight_bit(image):
    """A 16-bit gray image -> an 8-bit ``L`` image: ``round(clip(v, 0, 65535) / 257)``."""
    values = np.asarray(image).astype(np.float64)
    eight_bit = np.rint(np.clip(values, 0, 65535) / SIXTEEN_TO_EIGHT_BITS).astype(np.uint8)
    return Image.fromarray(eight_bit)


# ---------------------------------------------------------------------------------------------
# Steps 2 and 3: resize and crop, still as PIL images
# ---------------------------------------------------------------------------------------------

def resized_size(width, height, size):
    """The ``(width, height)`` that :func:`resize_shorter_side` produces, torchvision's rule.

    The shorter side becomes ``size``; the longer becomes ``int(size * long / short)``, that is
    the exact ratio rounded down. A square image becomes ``size x size``.

    >>> resized_size(500, 375, 256)   # int(256 * 500 / 375) = int(341.33...)
    (341, 256)
    """
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def resize_shorter_side(image, size, interpolation="bilinear"):
    """Resize a PIL image so that its shorter side is ``size`` pixels, keeping the aspect ratio.

    The output size comes from :func:`resized_size`. An image already that size is returned
    unchanged; otherwise Pillow's ``image.resize`` does the work with the filter named by
    ``interpolation`` (one of :data:`INTERPOLATIONS`). Pillow's bilinear and bicubic filters
    are antialiased: when shrinking by a factor ``s`` the filter is ``s`` times wider, so every
    input pixel contributes (torchvision's ``antialias=True``).
    """
    _check_pil_image(image, "resize_shorter_side")
    _check_positive_int("size", size, "resize_shorter_side")
    resample = _resample_filter(interpolation)
    new_size = resized_size(image.width, image.height, int(size))
    if new_size == image.size:
        return image
    return image.resize(new_size, resample)


def center_crop(image, size):
    """Cut the central ``size x size`` square out of a PIL image, as torchvision does.

    Steps:

    1. If a side is shorter than ``size``, pad it with zeros (black) up to ``size``: the
       missing ``d = size - side`` pixels go ``d // 2`` before and ``(d + 1) // 2`` after.
    2. Crop at ``left = round((width - size) / 2)``, ``top = round((height - size) / 2)``.
       ``round`` is Python's: halves go to the even integer, ``round(16.5) = 16`` but
       ``round(17.5) = 18``, which decides which row or column is dropped for odd differences.

    The crop is a slice of the pixel array, ``pixels[top:top + size, left:left + size]``,
    which gives exactly what Pillow's ``image.crop`` gives; Pillow's would also count the
    crop's pixels against ``PIL.Image.MAX_IMAGE_PIXELS``, a limit meant for the files read.
    The image must be RGB, RGBA or L (grayscale), which NumPy arrays hold as they are.
    """
    _check_pil_image(image, "center_crop")
    _check_positive_int("size", size, "center_crop")
    return _center_crop(image, int(size), int(size), "center_crop")


def _center_crop(image, height, width, op):
    """The central ``height x width`` box of a PIL image, padded first: :func:`center_crop`'s steps, per side."""
    if image.mode not in ("RGB", "RGBA", "L"):
        raise ValueError(f"{op}: expected an RGB, RGBA or L image, got mode {image.mode}; convert it with to_rgb()")
    pixels = np.asarray(_pad_to_at_least(image, height, width))
    left = round((pixels.shape[1] - width) / 2)
    top = round((pixels.shape[0] - height) / 2)
    return Image.fromarray(np.ascontiguousarray(pixels[top:top + height, left:left + width]))


def _pad_to_at_least(image, height, width):
    """Pad a side shorter than ``height`` (``width``) with zeros: ``d // 2`` before, ``(d + 1) // 2`` after."""
    pad_width = max(width - image.width, 0)
    pad_height = max(height - image.height, 0)
    if pad_width == 0 and pad_height == 0:
        return image
    border = (pad_width // 2, pad_height // 2, (pad_width + 1) // 2, (pad_height + 1) // 2)  # l, t, r, b
    return ImageOps.expand(image, border=border, fill=0)


# ---------------------------------------------------------------------------------------------
# Steps 4 and 5: to floats, then normalize
# ---------------------------------------------------------------------------------------------

def to_float_array(image):
    """An RGB image (PIL, or a ``uint8`` ``(H, W, 3)`` array) -> a ``(3, H, W)`` float32 array in [0, 1].

    ``out[c, y, x] = pixel[y, x, c] / 255``: channels first (HWC -> CHW, PyTorch's layout),
    computed in float32 as torchvision's ``convert_image_dtype`` does.
    """
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ShapeError(
            f"to_float_array: expected an RGB image or a uint8 array of shape (H, W, 3), got "
            f"dtype {pixels.dtype} and shape {pixels.shape}"
        )
    channels_first = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    channels_first /= np.float32(255)
    return channels_first


def normalize(array, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Per channel ``c``: ``(array[c] - mean[c]) / std[c]``, on ``(C, H, W)`` or ``(N, C, H, W)``.

    After this each channel has, over ImageNet's images, mean about 0 and standard deviation
    about 1, as the network saw in training. The result keeps the dtype of ``array`` (float32
    or float64); ``mean`` and ``std`` are converted to it.
    """
    check_float_array("array", array, "normalize")
    if array.ndim not in (3, 4):
        raise ShapeError(
            f"normalize: expected an array of shape (C, H, W) or (N, C, H, W), got {array.shape}"
        )
    channels = array.shape[-3]
    mean = _per_channel("mean", mean, channels, array.dtype)
    std = _per_channel("std", std, channels, array.dtype)
    if np.any(std <= 0):
        raise ValueError(f"normalize: expected every std to be positive, got {std.ravel().tolist()}")
    return (array - mean) / std


def _per_channel(name, values, channels, dtype):
    """``values`` as a ``(channels, 1, 1)`` array of ``dtype``, to broadcast over H and W."""
    values = np.asarray(values, dtype=dtype)
    if values.shape != (channels,):
        raise ValueError(
            f"normalize: expected {name} with one value per channel ({channels}), got {values.tolist()}"
        )
    return values.reshape(channels, 1, 1)


# ---------------------------------------------------------------------------------------------
# All five steps
# ---------------------------------------------------------------------------------------------

def preprocess(source, resize_size=256, crop_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
               interpolation="bilinear"):
    """One image -> a normalized ``(3, crop_size, crop_size)`` float32 array.

    ``source`` is anything :func:`open_image` takes (a path, a PIL image, a uint8 array).
    The steps: :func:`open_image`, :func:`resize_shorter_side` to ``resize_size``,
    :func:`center_crop` to ``crop_size``, :func:`to_float_array`, :func:`normalize`. With the
    defaults this equals torchvision's ``ImageClassification(crop_size=224, resize_size=256)``;
    torchvision's IMAGENET1K_V2 weights ask for ``resize_size=232``.
    """
    _check_settings(resize_size, crop_size, mean, std, interpolation)
    image = open_image(source)
    image = resize_shorter_side(image, resize_size, interpolation)
    image = center_crop(image, crop_size)
    return normalize(to_float_array(image), mean, std)


def preprocess_batch(sources, resize_size=256, crop_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     interpolation="bilinear"):
    """Several images -> one ``(N, 3, crop_size, crop_size)`` float32 batch (NCHW).

    ``sources`` is a list (or any iterable) of what :func:`preprocess` takes; each image goes
    through :func:`preprocess` and the results are stacked along a new first axis.
    """
    if isinstance(sources, (str, os.PathLike, Image.Image)) or (
        isinstance(sources, np.ndarray) and sources.ndim != 4
    ):
        raise TypeError(
            f"preprocess_batch: expected a list of images (paths, PIL images or arrays), got one "
            f"{type(sources).__name__}; for a single image call preprocess(), or pass [image]"
        )
    _check_settings(resize_size, crop_size, mean, std, interpolation)
    arrays = [
        preprocess(source, resize_size, crop_size, mean, std, interpolation) for source in sources
    ]
    if not arrays:
        raise ValueError("preprocess_batch: expected at least one image, got none")
    return np.stack(arrays)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------

def _check_settings(resize_size, crop_size, mean, std, interpolation):
    """Check every preprocessing setting before any file is read."""
    _check_positive_int("resize_size", resize_size, "preprocess")
    _check_positive_int("crop_size", crop_size, "preprocess")
    _resample_filter(interpolation)
    for name, values in (("mean", mean), ("std", std)):
        if np.shape(values) != (3,):
            raise ValueError(f"preprocess: expected {name} to be 3 numbers (R, G, B), got {values!r}")
    if min(std) <= 0:
        raise ValueError(f"preprocess: expected every std to be positive, got {std!r}")


def _check_positive_int(name, value, op):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{op}: expected {name} to be a positive int, got {value!r}")


def _check_pil_image(image, op):
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"{op}: expected a PIL.Image.Image, got {type(image).__name__}; open it with open_image()"
        )


def _resample_filter(interpolation):
    """The Pillow filter for an interpolation name."""
    try:
        return INTERPOLATIONS[interpolation]
    except (KeyError, TypeError):
        raise ValueError(
            f"expected interpolation to be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}"
        ) from None


# =============================================================================================
# Training transforms: torchvision's names and meaning, NumPy's random numbers
# =============================================================================================
#
# torchvision.transforms has classes that each do one step, chained with Compose:
#
#     train = Compose([RandomResizedCrop(224), RandomHorizontalFlip(),
#                      ToArray(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])
#     evaluate = Compose([Resize(256), CenterCrop(224),
#                         ToArray(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])  # = preprocess
#
# The classes below are those, with the same names, meaning and results (ToTensor is called
# ToArray here: it makes a NumPy array; torchvision's arguments that only matter to tensors, such
# as antialias, are left out: Pillow always antialiases when it shrinks). Each works on the PIL image open_image() gives, up to
# ToArray, and on the (3, H, W) float32 array after it (Normalize; RandomHorizontalFlip takes both).
#
# Where random numbers come from. torchvision draws from torch's global generator, so its
# augmentations depend on every other use of that generator, and on which worker process runs
# which image. Here a random transform is called as ``transform(image, rng=generator)`` with a
# numpy.random.Generator, and draws only from it; called without one, it draws from its own
# generator, ``np.random.default_rng(seed)`` made when the transform was. The DataLoader gives
# every sample its own generator, made from (seed, epoch, index), so a sample's crop and flip are
# the same whichever thread decodes it and in whatever order the threads finish.

def apply_transform(transform, image, rng=None):
    """Call ``transform`` on ``image``, handing it ``rng`` if it draws random numbers.

    A transform that draws random numbers says so with the attribute ``takes_rng = True`` (the
    random transforms here and :class:`Compose` have it) and is called as
    ``transform(image, rng=rng)``. Any other callable, a deterministic transform, a function
    such as :func:`preprocess`, a lambda, is called as ``transform(image)``.
    """
    if getattr(transform, "takes_rng", False):
        return transform(image, rng=rng)
    return transform(image)


class Compose:
    """Apply ``transforms`` one after the other, as ``torchvision.transforms.Compose``.

    ``Compose([f, g, h])(image)`` is ``h(g(f(image)))``. Called with ``rng``, it hands the one
    generator to each random transform in turn (:func:`apply_transform`): the crop draws first,
    then the flip, so the result depends on the generator's state alone.
    """

    takes_rng = True

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for transform in self.transforms:
            if not callable(transform):
                raise TypeError(
                    f"Compose: expected a list of transforms (callables), got {transform!r}"
                )

    def __call__(self, image, rng=None):
        for transform in self.transforms:
            image = apply_transform(transform, image, rng)
        return image

    def __repr__(self):
        lines = [f"    {transform}" for transform in self.transforms]
        return "\n".join([f"{type(self).__name__}(", *lines, ")"])


class RandomTransform:
    """Base class of the transforms that draw random numbers.

    ``transform(image, rng=None)``: the random numbers come from ``rng``, a
    ``numpy.random.Generator``, when it is given (the :class:`~npmobilenet.data.DataLoader`
    gives each sample its own); otherwise from the transform's own generator ``self.rng``,
    ``np.random.default_rng(seed)`` (``seed=None``: fresh entropy from the operating system,
    different every run). A subclass writes ``forward(self, image, rng)`` (torchvision's name),
    with the generator already chosen.
    """

    takes_rng = True

    def __init__(self, seed=None):
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, rng=None):
        if rng is None:
            rng = self.rng
        elif not isinstance(rng, np.random.Generator):
            # An int would be tempting, but Compose hands the same rng to every transform: each
            # would make the same generator from it and draw the same numbers.
            raise TypeError(
                f"{type(self).__name__}: expected rng to be a numpy.random.Generator, got "
                f"{type(rng).__name__}; pass np.random.default_rng(seed)"
            )
        return self.forward(image, rng)

    def forward(self, image, rng):
        raise NotImplementedError


# --- sizes -----------------------------------------------------------------------------------

def _height_width(size, op):
    """``size`` as a ``(height, width)`` tuple: an int ``s`` or ``[s]`` means ``(s, s)``, as torchvision's."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 1:
        size = (size[0], size[0])
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"{op}: expected size to be an int or a (height, width) pair, got {size!r}")
    for side in size:
        _check_positive_int("size", side, op)
    return (int(size[0]), int(size[1]))


def resize(image, size, interpolation="bilinear"):
    """Resize a PIL image as ``torchvision.transforms.functional.resize`` does.

    ``size`` an int (or ``[int]``): the shorter side becomes ``size``, keeping the aspect ratio
    (:func:`resize_shorter_side`). ``size`` a ``(height, width)`` pair: exactly that size, the
    aspect ratio changing if it must. An image already that size is returned unchanged.
    """
    _check_pil_image(image, "resize")
    if isinstance(size, (tuple, list)) and len(size) == 2:
        height, width = _height_width(size, "resize")
        if (width, height) == image.size:
            return image
        return image.resize((width, height), _resample_filter(interpolation))
    shorter_side, _ = _height_width(size, "resize")
    return resize_shorter_side(image, shorter_side, interpolation)


class Resize:
    """Resize to ``size``: torchvision's ``Resize`` (see :func:`resize` for what ``size`` means)."""

    def __init__(self, size, interpolation="bilinear"):
        _height_width(size, "Resize")  # checks size
        _resample_filter(interpolation)  # checks interpolation
        self.size = size
        self.interpolation = interpolation

    def __call__(self, image):
        return resize(image, self.size, self.interpolation)

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size}, interpolation={self.interpolation})"


class CenterCrop:
    """Cut the central ``size`` box (an int or ``(height, width)``): torchvision's ``CenterCrop``.

    The steps are :func:`center_crop`'s, for each side on its own: pad with black a side
    shorter than the box, then cut at ``top = round((H - h) / 2)``, ``left = round((W - w) / 2)``.
    """

    def __init__(self, size):
        self.size = _height_width(size, "CenterCrop")

    def __call__(self, image):
        _check_pil_image(image, "CenterCrop")
        return _center_crop(image, *self.size, "CenterCrop")

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size})"


# --- the random crop -------------------------------------------------------------------------

def resized_crop(image, top, left, height, width, size, interpolation="bilinear"):
    """Cut the box ``(top, left, height, width)`` out of a PIL image, then :func:`resize` it to ``size``.

    torchvision's ``functional.resized_crop`` on a PIL image, with the same Pillow calls:
    ``image.crop((left, top, left + width, top + height))``, then the resize. The box may
    reach outside the image (``top`` or ``left`` negative, or past the far edge): the part
    outside is black, as Pillow's ``crop`` makes it.
    """
    _check_pil_image(image, "resized_crop")
    for name, value in (("top", top), ("left", left)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"resized_crop: expected {name} to be an int, got {value!r}")
    _check_positive_int("height", height, "resized_crop")
    _check_positive_int("width", width, "resized_crop")
    top, left, height, width = int(top), int(left), int(height), int(width)
    box = image.crop((left, top, left + width, top + height))
    return resize(box, size, interpolation)


class RandomResizedCrop(RandomTransform):
    """Cut a random box out of the image and resize it to ``size``: torchvision's ``RandomResizedCrop``.

    The augmentation that Inception, ResNet and MobileNetV2 were trained with on ImageNet. The
    box keeps a random fraction ``s`` of the image's area, within ``scale``, and has a random
    aspect ratio ``r = width / height``, within ``ratio``; it is then resized to ``size`` (an int
    or ``(height, width)``), so the network sees a random zoom into the photo, a little
    stretched.

    How the box is drawn, :meth:`get_params`, for an image ``W`` pixels wide and ``H`` high,
    area ``A = W * H``:

    1. Up to 10 tries:

       a. ``s ~ Uniform(scale[0], scale[1])``: the fraction of the area to keep;
       b. ``log r ~ Uniform(log ratio[0], log ratio[1])``: uniform in log space, so that a box
          and the same box turned a quarter (``r`` and ``1 / r``) are equally likely;
       c. ``w = round(sqrt(s * A * r))``, ``h = round(sqrt(s * A / r))``: then ``w * h`` is
          about ``s * A`` and ``w / h`` about ``r``;
       d. if the box fits, ``0 < w <= W`` and ``0 < h <= H``, place it uniformly at random,
          ``top`` in ``0 .. H - h``, ``left`` in ``0 .. W - w``, and stop.

    2. If no try fitted (a very wide or tall image, or ``scale`` above 1), the fallback is a
       central box: the whole image if its own aspect ratio ``W / H`` lies within ``ratio``;
       otherwise the largest central box with the nearest allowed ratio (full height and
       ``w = round(H * max(ratio))`` for a wide image, full width and
       ``h = round(W / min(ratio))`` for a tall one).

    ``round`` is Python's (halves go to the even integer), as in torchvision. Only the random
    numbers differ from torchvision's: NumPy's generator, not torch's (see :class:`RandomTransform`).
    """

    ATTEMPTS = 10  # tries at a random box before the central fallback

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear",
                 seed=None):
        super().__init__(seed)
        self.size = _height_width(size, "RandomResizedCrop")
        self.scale = _check_range("scale", scale)
        self.ratio = _check_range("ratio", ratio)
        _resample_filter(interpolation)  # checks interpolation
        self.interpolation = interpolation

    @staticmethod
    def get_params(image, scale, ratio, rng=None):
        """Draw a box ``(top, left, height, width)`` for ``image``, the algorithm in the class docstring.

        ``rng`` is a ``numpy.random.Generator`` (``None``: a fresh one seeded by the operating system).
        """
        _check_pil_image(image, "RandomResizedCrop.get_params")
        rng = np.random.default_rng() if rng is None else rng
        width, height = image.size
        area = width * height
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(RandomResizedCrop.ATTEMPTS):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = round(math.sqrt(target_area * aspect_ratio))
            h = round(math.sqrt(target_area / aspect_ratio))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        return _central_box_within_ratio(width, height, ratio)

    def forward(self, image, rng):
        top, left, height, width = self.get_params(image, self.scale, self.ratio, rng)
        return resized_crop(image, top, left, height, width, self.size, self.interpolation)

    def __repr__(self):
        scale = tuple(round(s, 4) for s in self.scale)
        ratio = tuple(round(r, 4) for r in self.ratio)
        return (f"{type(self).__name__}(size={self.size}, scale={scale}, ratio={ratio}, "
                f"interpolation={self.interpolation})")


def _central_box_within_ratio(width, height, ratio):
    """RandomResizedCrop's fallback: the largest central box whose aspect ratio lies within ``ratio``."""
    image_ratio = width / height
    if image_ratio < min(ratio):  # too tall: keep the width, cut the height
        w, h = width, round(width / min(ratio))
    elif image_ratio > max(ratio):  # too wide: keep the height, cut the width
        w, h = round(height * max(ratio)), height
    else:  # the whole image already has an allowed shape
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _check_range(name, values):
    """A ``(min, max)`` pair of positive numbers, as a tuple of floats."""
    try:
        low, high = (float(value) for value in values)
    except (TypeError, ValueError):
        raise ValueError(f"RandomResizedCrop: expected {name} to be a (min, max) pair of numbers, got {values!r}") from None
    if not 0 < low <= high:
        raise ValueError(f"RandomResizedCrop: expected {name} = (min, max) with 0 < min <= max, got {values!r}")
    return (low, high)


# --- the random flip -------------------------------------------------------------------------

def hflip(image):
    """Mirror left to right: a PIL image, or an array whose last axis is the width (``(C, H, W)``)."""
    if isinstance(image, Image.Image):
        return image.transpose(Image.FLIP_LEFT_RIGHT)
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(image[..., ::-1])
    raise TypeError(f"hflip: expected a PIL image or a numpy array, got {type(image).__name__}")


class RandomHorizontalFlip(RandomTransform):
    """Mirror the image left to right with probability ``p``: torchvision's ``RandomHorizontalFlip``.

    One draw ``u ~ Uniform[0, 1)``; the image is flipped when ``u < p`` (so ``p = 1`` always
    flips and ``p = 0`` never does). It takes a PIL image or a ``(C, H, W)`` array.
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__(seed)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: expected a probability p in [0, 1], got {p!r}")
        self.p = p

    def forward(self, image, rng):
        if rng.random() < self.p:
            return hflip(image)
        return image

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


# --- to an array, normalized -----------------------------------------------------------------

class ToArray:
    """An RGB PIL image -> a ``(3, H, W)`` float32 array in [0, 1]: torchvision's ``ToTensor`` (:func:`to_float_array`)."""

    def __call__(self, image):
        return to_float_array(image)

    def __repr__(self):
        return f"{type(self).__name__}()"


class Normalize:
    """Per channel ``c``, ``(x[c] - mean[c]) / std[c]``: torchvision's ``Normalize`` (:func:`normalize`).

    For ImageNet-trained weights: ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``.
    """

    def __init__(self, mean, std):
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(
                f"Normalize: expected mean and std with one value per channel and every std "
                f"positive, got mean={mean!r}, std={std!r}"
            )
        self.mean = mean
        self.std = std

    def __call__(self, array):
        return normalize(array, self.mean, self.std)

    def __repr__(self):
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"
