"""Every method by its command-line name, and one picture-ready map from each.

:func:`explanation_map` turns what a method returns (a map at a layer's resolution, a map at
the input's, or an attribution per colour channel) into the same thing for every method: an
``(N, H, W)`` map at the input's size, scaled to [0, 1] per image, which
:func:`~npmobilenet.explain.plots.plot_heatmap` draws over the photo.
"""

import numpy as np

from .attribution import integrated_gradients, occlusion, saliency, smooth_grad
from .cam import DEFAULT_LAYER, grad_cam, grad_cam_plus_plus, guided_grad_cam, hires_cam, scale_cam
from .inputs import as_batch

__all__ = ["CAM_METHODS", "METHODS", "compare_methods", "explanation_map"]

# name: the function, called as function(model, x, target, layer); layer is None for the input methods
METHODS = {
    "gradcam": grad_cam,
    "gradcam++": grad_cam_plus_plus,
    "hirescam": hires_cam,
    "guided-gradcam": guided_grad_cam,
    "saliency": lambda model, x, target, layer: saliency(model, x, target),
    "smoothgrad": lambda model, x, target, layer: smooth_grad(model, x, target),
    "integrated-gradients": lambda model, x, target, layer: integrated_gradients(model, x, target).attributions,
    "occlusion": lambda model, x, target, layer: occlusion(model, x, target),
}
CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "guided-gradcam")  # the ones that look at a layer


def explanation_map(model, x, method="gradcam", target=None, layer=None):
    """``(N, H, W)`` in [0, 1]: ``method``'s explanation of each image, at the input's size.

    A class activation map is upsampled (:func:`~npmobilenet.explain.cam.scale_cam`); an
    attribution per colour channel (guided Grad-CAM, integrated gradients) becomes
    ``max_channels |attribution|``; occlusion keeps the drops of the score (where hiding the
    patch lowered it). Then each map is scaled to [0, 1]. ``layer`` (default ``features.18``)
    is for the CAM methods only.
    """
    if method not in METHODS:
        raise ValueError(f"explain: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if layer is not None and method not in CAM_METHODS:
        raise ValueError(f"explain: a layer applies to the CAM methods ({', '.join(CAM_METHODS)}); "
                         f"{method} explains the input, so leave the layer out")
    x = as_batch(model, x)
    raw = METHODS[method](model, x, target, layer or DEFAULT_LAYER)
    if raw.ndim == 4:
        raw = np.abs(raw).max(axis=1)
    if method == "occlusion":
        raw = np.maximum(raw, 0)
    return scale_cam(raw, x.shape[2:])


def compare_methods(model, x, methods=tuple(METHODS), target=None):
    """``{method: (N, H, W) map}`` from :func:`explanation_map`, for :func:`~npmobilenet.explain.plots.plot_methods`."""
    x = as_batch(model, x)
    return {method: explanation_map(model, x, method, target) for method in methods}
