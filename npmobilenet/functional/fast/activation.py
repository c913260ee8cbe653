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
"""

import numpy as np

from ..._checks import check_float_array


def relu(x, inplace=False):
    """``max(x, 0)``, over ``x`` itself when ``inplace``."""
    check_float_array("input", x, "relu")
    return np.maximum(x, 0, out=x if inplace else None)


def relu6(x, inplace=False):
    """``min(max(x, 0), 6)``, over ``x`` itself when ``inplace``."""
    check_float_array("input", x, "relu6")
    return np.clip(x, 0, 6, out=x if inplace else None)


def relu_forward(x, inplace=False):
    """``out = max(x, 0)``. The cache is the mask ``x > 0`` (a bool array, a quarter of the memory of x)."""
    check_float_array("input", x, "relu")
    mask = x > 0
    return relu(x, inplace), mask


def relu_backward(dout, cache):
    """``dx = dout`` where ``x > 0``, else 0 (PyTorch's choice at exactly 0: gradient 0)."""
    return dout * cache


def relu6_forward(x, inplace=False):
    """``out = min(max(x, 0), 6)``. The cache is the mask ``0 < x < 6`` where the slope is 1."""
    check_float_array("input", x, "relu6")
    mask = (x > 0) & (x < 6)
    return relu6(x, inplace), mask


def relu6_backward(dout, cache):
    """``dx = dout`` where ``0 < x < 6``, else 0: at exactly 0 and 6 the gradient is 0, as PyTorch's hardtanh gives."""
    return dout * cache
