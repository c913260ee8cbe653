"""ReLU and ReLU6, fast: what :mod:`npmobilenet.nn` runs.

They compute what :mod:`npmobilenet.functional.activation` computes, with these differences:

* **The cache is a bool mask** (where the slope is 1), a quarter of the memory of the float32
  input the plain version keeps; and it is made in the forward pass, so the backward pass is
  one multiplication.
* **In place**: with ``inplace=True`` the result is written over ``x`` (PyTorch's
  ``nn.ReLU6(inplace=True)``, which torchvision's MobileNetV2 uses): no new array, one pass
  over memory less. Only use it on an array nothing else needs afterwards.
* **No mask for inference**: ``relu(x)`` and ``relu6(x)`` compute the activation alone, for a
  forward pass under ``no_grad()`` that no backward pass follows.
* **On a block, for a fused layer** (:func:`relu_in_place`, :func:`relu6_in_place`): a
  convolution run for inference applies its activation to each block of its output while the
  block is still in the processor's cache, instead of one more pass over the whole output.
* **Blocks shared among threads** (:func:`elementwise`): a 4-D array goes a block of rows at
  a time, the blocks on npmobilenet's threads (:mod:`npmobilenet.parallel`).
"""

import numpy as np

from ..._checks import check_float_array
from .layout import for_each_block, nhwc


def elementwise(step, out, *arrays):
    """``step(out, *arrays)`` for 4-D NCHW-shaped arrays, a block of rows at a time on every thread.

    ``step`` writes its block of ``out`` from the same blocks of ``arrays``; a block of one
    array never depends on another block, so the blocks can run in any order, at once. Other
    arrays go in one call.
    """
    if out.ndim != 4:
        step(out, *arrays)
        return out
    n, height, width, channels = nhwc(out).shape
    views = [nhwc(a) for a in (out, *arrays)]
    for_each_block(lambda images, rows: step(*(view[images, rows] for view in views)), n, height, width * channels)
    return out


def relu(x, inplace=False):
    """``max(x, 0)``, over ``x`` itself when ``inplace``."""
    check_float_array("input", x, "relu")
    return elementwise(lambda out, x: np.maximum(x, 0, out=out), x if inplace else np.empty_like(x), x)


def relu6(x, inplace=False):
    """``min(max(x, 0), 6)``, over ``x`` itself when ``inplace``."""
    check_float_array("input", x, "relu6")
    return elementwise(lambda out, x: np.clip(x, 0, 6, out=out), x if inplace else np.empty_like(x), x)


def relu_in_place(block):
    """``block = max(block, 0)``: what :func:`relu` does, on one block of a fused layer's output."""
    np.maximum(block, 0, out=block)


def relu6_in_place(block):
    """``block = min(max(block, 0), 6)``: what :func:`relu6` does, on one block of a fused layer's output."""
    np.clip(block, 0, 6, out=block)


def relu_forward(x, inplace=False):
    """``out = max(x, 0)``. The cache is the mask ``x > 0`` (a bool array, a quarter of the memory of x).

    The mask and the output are made block by block in one sweep, while each block of ``x``
    is in cache.
    """
    check_float_array("input", x, "relu")
    out = x if inplace else np.empty_like(x)

    def mask_and_output(mask, out, x):
        np.greater(x, 0, out=mask)  # before the output, which may be x itself
        np.maximum(x, 0, out=out)

    mask = np.empty_like(x, dtype=bool)
    elementwise(mask_and_output, mask, out, x)
    return out, mask


def relu_backward(dout, cache):
    """``dx = dout`` where ``x > 0``, else 0 (PyTorch's choice at exactly 0: gradient 0)."""
    return elementwise(lambda dx, dout, mask: np.multiply(dout, mask, out=dx), np.empty_like(dout), dout, cache)


def relu6_forward(x, inplace=False):
    """``out = min(max(x, 0), 6)``. The cache is the mask ``0 < x < 6`` where the slope is 1."""
    check_float_array("input", x, "relu6")
    out = x if inplace else np.empty_like(x)

    def mask_and_output(mask, out, x):  # one sweep: each block of x is read while it is in cache
        np.greater(x, 0, out=mask)  # before the output, which may be x itself
        mask &= x < 6
        np.clip(x, 0, 6, out=out)

    mask = np.empty_like(x, dtype=bool)
    elementwise(mask_and_output, mask, out, x)
    return out, mask


def relu6_backward(dout, cache):
    """``dx = dout`` where ``0 < x < 6``, else 0: at exactly 0 and 6 the gradient is 0, as PyTorch's hardtanh gives."""
    return elementwise(lambda dx, dout, mask: np.multiply(dout, mask, out=dx), np.empty_like(dout), dout, cache)
