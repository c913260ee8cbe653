"""ReLU and ReLU6, the activations of MobileNetV2, the plain way: elementwise, with NumPy's comparisons.

``relu(x) = max(x, 0)``; ``relu6(x) = min(max(x, 0), 6)``. Their slope is 1 where the input
passes through unchanged and 0 where it is cut off; at the kinks themselves (``x = 0`` and
``x = 6``) PyTorch takes the slope to be 0, and so does every version here.
"""

import numpy as np

from .._checks import check_float_array


def relu_forward(x):
    """``out = max(x, 0)``. The cache is the input, for the backward pass."""
    check_float_array("input", x, "relu")
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """``dx = dout`` where ``x > 0``, else 0 (PyTorch's choice at exactly 0: gradient 0)."""
    x = cache
    return dout * (x > 0)


def relu6_forward(x):
    """``out = min(max(x, 0), 6)``. The cache is the input, for the backward pass."""
    check_float_array("input", x, "relu6")
    return np.clip(x, 0, 6), x


def relu6_backward(dout, cache):
    """``dx = dout`` where ``0 < x < 6``, else 0: at exactly 0 and 6 the gradient is 0, as PyTorch's gives."""
    x = cache
    return dout * ((x > 0) & (x < 6))
