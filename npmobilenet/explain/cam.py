"""Class activation maps: Grad-CAM, Grad-CAM++, HiResCAM and guided Grad-CAM, at any layer.

Each starts from the same two arrays at a layer (:func:`activation_and_gradient`): its
activation ``A`` of shape ``(N, K, h, w)`` and the gradient ``G = d y_c / d A`` of the target
class's logit, which :func:`~npmobilenet.explain.layers.backward_to` gets from the network's own
backward passes. They differ only in how they weigh the ``K`` channels of ``A``. The raw maps
have the layer's resolution ``(N, h, w)`` (7x7 at ``features.18`` for a 224x224 input);
:func:`scale_cam` brings one to the input's size and to [0, 1] for a picture.

The formulas are pytorch-grad-cam's (``GradCAM``, ``GradCAMPlusPlus``, ``HiResCAM``,
``scale_cam_image``), which the tests compute again with PyTorch's autograd.
"""

from collections import namedtuple

import numpy as np

from .inputs import as_batch, explaining, one_hot, target_classes
from .layers import backward_to, forward_keeping

__all__ = [
    "DEFAULT_LAYER", "LayerGradient", "activation_and_gradient", "grad_cam", "grad_cam_plus_plus",
    "guided_grad_cam", "hires_cam", "scale_cam", "upsample",
]

DEFAULT_LAYER = "features.18"  # the last 1280-channel activation, where pytorch-grad-cam puts MobileNetV2's target layer
GRAD_CAM_PLUS_PLUS_EPS = 1e-6  # pytorch-grad-cam's, in the denominator of Grad-CAM++'s alpha
SCALE_EPS = 1e-7               # pytorch-grad-cam's, in scale_cam_image

LayerGradient = namedtuple("LayerGradient", ["activation", "gradient", "target"])
LayerGradient.__doc__ = """``A`` (N, K, h, w), ``d y_c / d A`` (same shape) and the target classes ``c`` (N,)."""


def activation_and_gradient(model, x, target=None, layer=DEFAULT_LAYER):
    """The activation ``A`` at ``layer`` and ``d y_c / d A``: one forward pass, and the backward pass of the tail.

    ``y_c`` is the logit of class ``target`` (an int, one per image, or None for the predicted
    class). Returns a :class:`LayerGradient`.
    """
    with explaining(model, "activation_and_gradient"):
        x = as_batch(model, x)
        logits, kept = forward_keeping(model, x, [layer])
        target = target_classes(target, logits)
        gradient = backward_to(model, one_hot(target, logits), layer)
    activation = kept[layer]
    if activation.ndim != 4:
        raise ValueError(f"explain: a class activation map needs a layer with a spatial map (N, C, h, w); "
                         f"{layer!r} gives shape {activation.shape}")
    return LayerGradient(activation, gradient, target)


def grad_cam(model, x, target=None, layer=DEFAULT_LAYER):
    """Grad-CAM (Selvaraju et al., 2017): ``(N, h, w)`` at the layer's resolution.

    ``alpha_k = mean_ij d y_c / d A_k(i, j)`` (the channel's average gradient), then
    ``cam = ReLU(sum_k alpha_k A_k)``.
    """
    activation, gradient, _ = activation_and_gradient(model, x, target, layer)
    alpha = gradient.mean(axis=(2, 3))
    return _relu(np.einsum("nk,nkij->nij", alpha, activation))


def grad_cam_plus_plus(model, x, target=None, layer=DEFAULT_LAYER):
    """Grad-CAM++ (Chattopadhay et al., 2018), pytorch-grad-cam's ``GradCAMPlusPlus``: ``(N, h, w)``.

    With ``g = d y_c / d A`` and ``S_k = sum_ij A_k(i, j)``::

        a_k(i, j) = g^2 / (2 g^2 + S_k g^3 + eps)    (eps = 1e-6, so a = 0 where g = 0)
        w_k       = sum_ij a_k(i, j) ReLU(g_k(i, j))
        cam       = ReLU(sum_k w_k A_k)

    This is the paper's closed form for an exponential of the score, in which higher
    derivatives are powers of the first; pytorch-grad-cam applies it to the logit, and so does
    this function.
    """
    activation, g, _ = activation_and_gradient(model, x, target, layer)
    g2 = g * g
    sums = activation.sum(axis=(2, 3))[:, :, None, None]
    a = g2 / (2 * g2 + sums * g2 * g + GRAD_CAM_PLUS_PLUS_EPS)
    weights = (a * _relu(g)).sum(axis=(2, 3))
    return _relu(np.einsum("nk,nkij->nij", weights, activation))


def hires_cam(model, x, target=None, layer=DEFAULT_LAYER):
    """HiResCAM (Draelos and Carin, 2020): ``cam(i, j) = ReLU(sum_k g_k(i, j) A_k(i, j))``, ``(N, h, w)``.

    Grad-CAM with each pixel's own gradient instead of the channel's average: the map shows
    exactly which locations raised the score.
    """
    activation, gradient, _ = activation_and_gradient(model, x, target, layer)
    return _relu(np.einsum("nkij,nkij->nij", gradient, activation))


def guided_grad_cam(model, x, target=None, layer=DEFAULT_LAYER):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM, ``(N, 3, H, W)``.

    ``guided_backprop(x) * scale_cam(grad_cam(x), (H, W))``, the Grad-CAM map scaled to
    [0, 1] as pytorch-grad-cam's example does (the paper multiplies by the upsampled map; the
    scale of each image's map only scales its picture).
    """
    from .attribution import guided_backprop

    x = as_batch(model, x)
    cam = grad_cam(model, x, target, layer)
    return guided_backprop(model, x, target) * scale_cam(cam, x.shape[2:])[:, None]


def scale_cam(cam, size=None):
    """Each map of ``cam`` ``(N, h, w)`` scaled to [0, 1], then upsampled to ``size`` ``(H, W)``: pytorch-grad-cam's ``scale_cam_image``.

    ``(cam - min) / (max - min + 1e-7)`` per map, then :func:`upsample` (bilinear). In that
    order, as pytorch-grad-cam does: bilinear values lie between their neighbours, so the
    result stays in [0, 1].
    """
    cam = np.asarray(cam)
    low = cam.min(axis=(1, 2), keepdims=True)
    scaled = (cam - low) / (cam.max(axis=(1, 2), keepdims=True) - low + SCALE_EPS)
    return scaled if size is None else upsample(scaled, size)


def upsample(maps, size):
    """Bilinear resize of ``maps`` ``(N, h, w)`` to ``size = (H, W)``, as ``F.interpolate(..., mode="bilinear", align_corners=False)``.

    Bilinear interpolation is separable, so it is two matrix products:
    ``out[n] = R @ maps[n] @ C.T``, with ``R`` ``(H, h)`` and ``C`` ``(W, w)`` from
    :func:`bilinear_matrix`.
    """
    maps = np.asarray(maps)
    rows = bilinear_matrix(maps.shape[1], int(size[0]), maps.dtype)
    columns = bilinear_matrix(maps.shape[2], int(size[1]), maps.dtype)
    return rows @ maps @ columns.T


def bilinear_matrix(source, target, dtype=np.float64):
    """``(target, source)``: row ``t`` holds the weights of linear interpolation at output pixel ``t``.

    "Half-pixel centres" (``align_corners=False``): output pixel ``t`` sits at source position
    ``s = (t + 0.5) * source / target - 0.5``, clamped at 0; it takes ``1 - f`` of pixel
    ``floor(s)`` and ``f = s - floor(s)`` of the next one (the last pixel, at the edge).
    """
    position = np.maximum((np.arange(target) + 0.5) * (source / target) - 0.5, 0.0)
    left = np.floor(position).astype(np.int64)
    right = np.minimum(left + 1, source - 1)
    fraction = position - left
    matrix = np.zeros((target, source), dtype=dtype)
    np.add.at(matrix, (np.arange(target), left), 1 - fraction)
    np.add.at(matrix, (np.arange(target), right), fraction)
    return matrix


def _relu(x):
    return np.maximum(x, 0)
