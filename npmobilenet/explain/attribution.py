"""Attributions at the input: saliency, SmoothGrad, integrated gradients, guided backpropagation, occlusion.

All but occlusion are made of the same step, :func:`input_gradient`: one forward pass and the
whole network's backward pass, started from ``d y_c / d logits`` (1 at the target class),
give ``d y_c / d x`` for every pixel of every image at once. Occlusion needs forward passes
only.
"""

import contextlib
import itertools
from collections import namedtuple

import numpy as np

from .. import nn
from ..grad_mode import no_grad
from .inputs import as_batch, check_eval_mode, explaining, one_hot, target_classes

__all__ = [
    "IntegratedGradients", "guided_backprop", "guided_relus", "input_gradient", "integrated_gradients",
    "occlusion", "saliency", "smooth_grad",
]


def input_gradient(model, x, target=None):
    """``d y_c / d x``, ``(N, 3, H, W)``: the gradient of the target class's logit with respect to the input."""
    with explaining(model, "input_gradient"):
        return _input_gradient(model, as_batch(model, x), target)


def _input_gradient(model, x, target):
    logits = model(x)
    return model.backward(one_hot(target_classes(target, logits), logits))


def saliency(model, x, target=None):
    """Saliency (Simonyan et al., 2014): ``max_channels |d y_c / d x|``, ``(N, H, W)``."""
    return np.abs(input_gradient(model, x, target)).max(axis=1)


@contextlib.contextmanager
def guided_relus(model):
    """Inside the block, every ReLU and ReLU6 of ``model`` runs guided backpropagation's backward rule.

    Guided backpropagation changes one thing: an activation passes a gradient back only where
    it is positive (``dx = dout * mask * (dout > 0)``, see :class:`npmobilenet.nn.ReLU6`).
    With the backward passes written out, that is a switch on the layers, ``layer.guided``,
    not a hook. It is always switched back, whatever happens inside.
    """
    relus = [module for module in model.modules() if isinstance(module, (nn.ReLU, nn.ReLU6))]
    before = [relu.guided for relu in relus]
    try:
        for relu in relus:
            relu.guided = True
        yield model
    finally:
        for relu, guided in zip(relus, before):
            relu.guided = guided


def guided_backprop(model, x, target=None):
    """Guided backpropagation (Springenberg et al., 2015): ``d y_c / d x`` with guided ReLUs, ``(N, 3, H, W)``."""
    with guided_relus(model):
        return input_gradient(model, x, target)


def smooth_grad(model, x, target=None, noise_level=0.15, samples=25, seed=0, batch_size=8):
    """SmoothGrad (Smilkov et al., 2017): the saliency map averaged over noisy copies of the input, ``(N, H, W)``.

    ``mean_s saliency(x + eps_s)`` with ``eps_s ~ N(0, sigma^2)`` and ``sigma = noise_level *
    (max(x) - min(x))`` for each image. The noise comes from ``numpy.random.default_rng(seed)``;
    each draw is shared by the images of a batch, so an image's map does not depend on the
    batch it is in, and the same seed gives the same map. The class is the one of the clean
    input. Up to ``batch_size`` noisy images run in one pass (8: at 224x224, 16 were three
    times slower per image here, their arrays no longer fitting in the processor's caches).
    """
    x = as_batch(model, x)
    with explaining(model, "smooth_grad"):
        target, _ = _scores(model, x, target)
        sigma = noise_level * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
        rng = np.random.default_rng(seed)
        noisy = (x + sigma * rng.standard_normal((1, *x.shape[1:])).astype(x.dtype) for _ in range(samples))
        maps = (np.abs(gradient).max(axis=1) for gradient in _gradients_of_copies(model, noisy, target, batch_size))
        return sum(maps) / samples


class IntegratedGradients(namedtuple("IntegratedGradients", ["attributions", "score", "baseline_score"])):
    """``attributions`` ``(N, 3, H, W)``, and the target logits ``y(x)`` and ``y(baseline)`` ``(N,)``.

    Completeness says ``sum(attributions) = y(x) - y(baseline)`` exactly for the integral;
    :attr:`completeness_error` measures how far the Riemann sum is from it.
    """

    __slots__ = ()

    @property
    def completeness_error(self):
        """``|sum(attributions) - (y(x) - y(baseline))| / |y(x) - y(baseline)|`` per image."""
        change = self.score - self.baseline_score
        return np.abs(self.attributions.sum(axis=(1, 2, 3)) - change) / np.abs(change)


def integrated_gradients(model, x, target=None, baseline=0.0, steps=64, batch_size=8):
    """Integrated gradients (Sundararajan et al., 2017), the paper's Riemann sum: an :class:`IntegratedGradients`.

    ``(x - x') * (1 / m) * sum_{k=1..m} d y_c / d x (x' + (k / m) (x - x'))``, ``m = steps``,
    ``x' = baseline`` (a number or an array like ``x``; 0 is the mean image in normalised
    input). Up to ``batch_size`` points of the path run in one pass. Check
    ``completeness_error`` and raise ``steps`` when it is large: along the path from a plain
    baseline many ReLU6 switch within a few hundredths of it, where the gradient jumps about.
    """
    x = as_batch(model, x)
    baseline = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), x.shape)
    with explaining(model, "integrated_gradients"):
        target, score = _scores(model, x, target)
        _, baseline_score = _scores(model, baseline, target)
        alphas = (np.arange(1, steps + 1) / steps).astype(x.dtype)
        path = (baseline + alpha * (x - baseline) for alpha in alphas)
        mean_gradient = sum(_gradients_of_copies(model, path, target, batch_size)) / steps
    return IntegratedGradients((x - baseline) * mean_gradient, score, baseline_score)


def occlusion(model, x, target=None, patch=32, stride=16, value=0.0, batch_size=32):
    """Occlusion sensitivity (Zeiler and Fergus, 2014): how much the score drops where a patch hides the image, ``(N, H, W)``.

    A ``patch x patch`` square is set to ``value`` (0: the mean colour in normalised input) at
    top-left corners ``(stride * i, stride * j)`` that keep it inside the image; each pixel gets
    the mean of ``y_c(x) - y_c(x occluded)`` over the patches that cover it (0 where none
    does). Forward passes only, under ``no_grad()``, up to ``batch_size`` occluded images at once.
    """
    x = as_batch(model, x)
    check_eval_mode(model, "occlusion")
    count, _, height, width = x.shape
    if not (_is_int(patch) and _is_int(stride) and 0 < patch <= min(height, width) and stride > 0):
        raise ValueError(f"explain.occlusion: expected whole numbers 0 < patch <= {min(height, width)} and "
                         f"stride > 0, got patch={patch!r}, stride={stride!r}")
    corners = [(top, left) for top in range(0, height - patch + 1, stride) for left in range(0, width - patch + 1, stride)]
    total = np.zeros((count, height, width), dtype=x.dtype)
    covered = np.zeros((height, width), dtype=x.dtype)
    target, score = _scores(model, x, target)
    per_pass = max(1, batch_size // count)
    for start in range(0, len(corners), per_pass):
        chunk = corners[start:start + per_pass]
        occluded = np.repeat(x[None], len(chunk), axis=0)
        for copy, (top, left) in zip(occluded, chunk):
            copy[:, :, top:top + patch, left:left + patch] = value
        _, occluded_score = _scores(model, occluded.reshape(-1, *x.shape[1:]), np.tile(target, len(chunk)))
        for drop, (top, left) in zip(score - occluded_score.reshape(len(chunk), count), chunk):
            total[:, top:top + patch, left:left + patch] += drop[:, None, None]
            covered[top:top + patch, left:left + patch] += 1
    return total / np.maximum(covered, 1)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _scores(model, x, target):
    """``(classes, logits of those classes)`` for the batch ``x``, from a forward pass under ``no_grad()``."""
    with no_grad():
        logits = model(x)
    classes = target_classes(target, logits)
    return classes, logits[np.arange(len(classes)), classes]


def _gradients_of_copies(model, copies, target, batch_size):
    """``d y_c / d x`` for each of ``copies`` (arrays shaped like the batch), several copies in one pass."""
    copies = iter(copies)
    per_pass = max(1, batch_size // len(target))
    while chunk := list(itertools.islice(copies, per_pass)):
        gradient = _input_gradient(model, np.concatenate(chunk), np.tile(target, len(chunk)))
        yield from np.split(gradient, len(chunk))
