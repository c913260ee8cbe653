"""What every method takes, and the promises every method keeps.

* :func:`as_batch`: an ``(N, 3, H, W)`` array as it is, or images (a path, a PIL image, an
  ``(H, W, 3)`` uint8 array, or a list of them) through torchvision's preprocessing
  (:mod:`npmobilenet.transforms`, with the settings of the model's weights).
* :func:`target_classes` and :func:`one_hot`: the class ``c`` of each image (the predicted one
  by default) and the upstream gradient ``d y_c / d logits`` that starts every backward pass:
  1 at ``(n, c_n)``, 0 elsewhere. ``y_c`` is the logit, before the softmax, as in
  pytorch-grad-cam.
* :func:`explaining`: the model in eval mode (a ``ValueError`` otherwise: in training mode batch
  norm would use the batch's statistics and update its running ones, and dropout would drop
  features at random), gradients enabled, and every parameter's ``.grad`` left exactly as it
  was. That last promise is kept by *freezing* the parameters for the duration
  (``requires_grad = False``, each flag restored afterwards): a backward pass then adds nothing
  into ``.grad`` (:meth:`npmobilenet.nn.Parameter.accumulate`), and no copy is needed. The
  caches the explanation's forward passes leave in the layers are dropped at the end.
"""

import contextlib

import numpy as np

from .._checks import check_float_array
from ..errors import ShapeError
from ..grad_mode import is_grad_enabled

__all__ = ["as_batch", "check_eval_mode", "explaining", "model_dtype", "one_hot", "target_classes"]


def model_dtype(model):
    """The dtype of the model's parameters: float32, or float64 after ``model.astype(np.float64)``."""
    return next(model.parameters()).dtype


def as_batch(model, x):
    """``x`` as an ``(N, 3, H, W)`` array of the model's dtype.

    A float array must already be ``(N, 3, H, W)`` and of the model's dtype (nothing is cast
    silently). Images (a path, a PIL image, an ``(H, W, 3)`` uint8 array, or a list of them) go
    through :func:`npmobilenet.transforms.preprocess` with the preprocessing of the model's
    weights (``model.weights_spec``; torchvision's resize 256, crop 224 for a model without).
    """
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        check_float_array("x", x, "explain", ndim=4)
        if x.shape[1] != 3 or x.dtype != model_dtype(model):
            raise ShapeError(f"explain: expected x of shape (N, 3, H, W) and the model's dtype {model_dtype(model)}, "
                             f"got shape {x.shape} and dtype {x.dtype}")
        return x
    from ..transforms import preprocess_batch

    images = list(x) if isinstance(x, (list, tuple)) else [x]
    spec = getattr(model, "weights_spec", None)
    settings = {} if spec is None else dict(resize_size=spec.resize_size, crop_size=spec.crop_size,
                                            mean=spec.mean, std=spec.std, interpolation=spec.interpolation)
    return preprocess_batch(images, **settings).astype(model_dtype(model), copy=False)


def target_classes(target, logits):
    """The class of each image as an int array ``(N,)``: ``target`` (an int, or one per image), or the predicted class."""
    count, classes = logits.shape
    if target is None:
        return np.argmax(logits, axis=1)
    target = np.asarray(target)
    if target.dtype.kind not in "iu" or target.ndim > 1 or (target.ndim == 1 and len(target) != count):
        raise ValueError(f"explain: expected target to be a class index or one per image ({count}), got {target.tolist()!r}")
    if np.any(target < 0) or np.any(target >= classes):
        raise ValueError(f"explain: expected target classes between 0 and {classes - 1}, got {target.tolist()!r}")
    return np.broadcast_to(target, (count,)).astype(np.int64)


def one_hot(target, logits):
    """``d y_c / d logits``: 1 at ``(n, target[n])``, 0 elsewhere, in the logits' dtype."""
    dlogits = np.zeros_like(logits)
    dlogits[np.arange(len(target)), target] = 1
    return dlogits


def check_eval_mode(model, method):
    """Raise a ValueError that says why, unless every module of ``model`` is in eval mode."""
    if any(module.training for module in model.modules()):
        raise ValueError(
            f"explain.{method}: expected the model in eval mode (call model.eval() first): in training "
            f"mode batch norm would use the batch's statistics and change its running ones, and "
            f"dropout would drop features at random"
        )


@contextlib.contextmanager
def explaining(model, method):
    """Check eval mode and gradient mode; inside, backward passes leave every ``.grad`` alone.

    The parameters are frozen inside the block and each ``requires_grad`` flag is restored
    after it, whatever happens; the caches of the block's forward passes are dropped.
    """
    check_eval_mode(model, method)
    if not is_grad_enabled():
        raise RuntimeError(f"explain.{method} runs backward passes: call it outside no_grad()")
    parameters = list(model.parameters())
    flags = [parameter.requires_grad for parameter in parameters]
    try:
        for parameter in parameters:
            parameter.requires_grad = False
        yield
    finally:
        for parameter, flag in zip(parameters, flags):
            parameter.requires_grad = flag
        model.clear_cache()
