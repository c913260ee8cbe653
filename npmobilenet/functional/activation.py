"""The activations MobileNetV2 uses: ReLU and ReLU6, elementwise."""

import numpy as np

from .._checks import check_float_array


def relu_forward(x):
    """``out = max(x, 0)``. The cache is the mask ``x > 0`` (a bool array, a quarter of the memory of x)."""
    check_float_array("input", x, "relu")
    return np.maximum(x, 0), x > 0


def relu_backward(dout, cache):
    """``dx = dout`` where ``x > 0``, else 0 (PyTorch's choice at exactly 0: gradient 0)."""
    return dout * cache


def relu6_forward(x):
    """``out = min(max(x, 0), 6)``. The cache is the mask ``0 < x < 6`` where the slope is 1."""
    check_float_array("input", x, "relu6")
    return np.clip(x, 0, 6), (x > 0) & (x < 6)


def relu6_backward(dout, cache):
    """``dx = dout`` where ``0 < x < 6``, else 0: at exactly 0 and 6 the gradient is 0, as PyTorch's hardtanh gives."""
    return dout * cache
