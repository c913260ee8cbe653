"""``predict()``: image in, the ImageNet classes the network finds most likely out.

The whole pipeline, in the order it runs::

    weights  -> MobileNetV2 (eval mode)                    loaded once per process, then reused
    image    -> preprocess: upright, RGB, resize, crop,    npmobilenet.transforms
                scale to [0, 1], normalise -> (N, 3, 224, 224)
    forward under no_grad -> logits (N, 1000)              no caches kept: inference only
    softmax -> probabilities -> the top k, best first      with the class names of the weights

Images are read ``MAX_BATCH`` at a time, just before their forward pass, so a list of any
length (a folder of 10,000 photos) runs in bounded memory. :func:`predict_each` yields each
image's result as soon as its batch is done, and reports an image that cannot be read in its
place instead of stopping: what the command line's ``predict`` uses.
"""

import itertools
import os
from collections import namedtuple
from functools import lru_cache

import numpy as np

from .functional import softmax
from .grad_mode import no_grad
from .models import model_from_state_dict
from .models.weights import ENV_WEIGHTS, resolve_weights
from .errors import ImageError
from .transforms import preprocess

__all__ = ["Prediction", "load_model", "predict", "predict_each"]

MAX_BATCH = 32  # images per forward pass: larger lists run in several batches, to bound memory


class Prediction(namedtuple("Prediction", ["index", "label", "probability"])):
    """One class of a prediction: its ``index`` in ImageNet's order, its ``label``, its ``probability``."""

    __slots__ = ()


def predict(image, topk=5, weights=None):
    """The ``topk`` most likely classes of an image, best first, as :class:`Prediction` tuples.

    ``image`` is a path, a PIL image, or an ``(H, W, 3)`` uint8 array; or a list of those,
    which runs batched (one forward pass for up to 32 images) and returns one list of
    predictions per image, in order. The images are read ``MAX_BATCH`` at a time, so a long
    list needs no more memory than a short one; a bad image raises when its batch is read.
    ``weights`` is a registry name (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``), a path to a
    ``.pth`` or ``.npz`` file, or None for the default: ``$NPMOBILENET_WEIGHTS``, then the cache,
    then a download (see :func:`npmobilenet.models.weights.resolve_weights`). The weights are loaded
    once per process and reused. Raises :class:`~npmobilenet.errors.ImageError` for an image
    that cannot be read and :class:`~npmobilenet.errors.WeightsError` for unusable weights.

    >>> predict("examples/chelsea.jpg", topk=1)          # doctest: +SKIP
    [Prediction(index=285, label='Egyptian cat', probability=0.69...)]
    """
    single = not isinstance(image, (list, tuple))
    images = [image] if single else list(image)
    if not images:
        raise ValueError("predict: expected an image or a non-empty list of images, got an empty list")
    results = []
    for _, result in predict_each(images, topk, weights):
        if isinstance(result, ImageError):
            raise result
        results.append(result)
    return results[0] if single else results


def predict_each(images, topk=5, weights=None):
    """``(image, predictions)`` for each of ``images`` in order, or ``(image, ImageError)`` for one that cannot be read.

    A generator over an iterable of images (paths, PIL images, uint8 arrays): it reads up to
    ``MAX_BATCH`` of them, classifies those it could read in one forward pass, yields their
    results, and only then reads the next ones. The weights and ``topk`` are checked at the
    call, before any image is read (a :class:`~npmobilenet.errors.WeightsError` or
    ``ValueError`` then).
    """
    model = load_model(weights)
    spec = model.weights_spec
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= len(spec.categories):
        raise ValueError(f"predict: expected topk between 1 and {len(spec.categories)}, got {topk!r}")
    return _batches_of_predictions(model, spec, iter(images), topk)


def _batches_of_predictions(model, spec, images, topk):
    """Read up to ``MAX_BATCH`` images, classify the readable ones in one pass, yield every result in order; again."""
    while chunk := list(itertools.islice(images, MAX_BATCH)):
        results = [_read(image, spec) for image in chunk]  # an array, or the ImageError that image raised
        readable = [i for i, result in enumerate(results) if isinstance(result, np.ndarray)]
        if readable:
            probabilities = _probabilities(model, np.stack([results[i] for i in readable]))
            for i, row in zip(readable, probabilities):
                results[i] = _top_classes(row, topk, spec.categories)
        yield from zip(chunk, results)


def _read(image, spec):
    """The preprocessed ``(3, crop, crop)`` array of ``image``, or the ImageError reading it raised."""
    try:
        return preprocess(image, resize_size=spec.resize_size, crop_size=spec.crop_size, mean=spec.mean,
                          std=spec.std, interpolation=spec.interpolation)
    except ImageError as error:
        return error


def _probabilities(model, batch):
    """Softmax of the logits, computed without keeping any cache for backward."""
    with no_grad():
        return softmax(model(batch))


def _top_classes(probabilities, topk, categories):
    """The ``topk`` largest probabilities, best first (ties: the lower class index first)."""
    order = np.argsort(-probabilities, kind="stable")[:topk]
    return [Prediction(int(i), categories[i], float(probabilities[i])) for i in order]


def load_model(weights=None):
    """The eval-mode model for ``weights`` (as in :func:`predict`), built once per process and reused.

    With ``weights=None`` the choice depends on ``$NPMOBILENET_WEIGHTS``, which is read at
    every call, so that changing it takes effect. A path is keyed by its absolute form.
    """
    if isinstance(weights, (str, os.PathLike)) and os.path.exists(weights):
        weights = os.path.abspath(weights)
    environment = os.environ.get(ENV_WEIGHTS) if weights is None else None
    return _load_model(weights, environment)


@lru_cache(maxsize=4)
def _load_model(weights, environment):
    """``environment`` is only part of the cache key: resolve_weights reads the variable itself."""
    state_dict, spec = resolve_weights(weights)
    source = (f"weights {str(weights)!r}" if weights is not None
              else f"weights from {ENV_WEIGHTS}={environment!r}" if environment else f"weights {spec.name}")
    return model_from_state_dict(state_dict, spec, source=source, num_classes=len(spec.categories)).eval()
