"""ReLU and ReLU6 by loops: one value at a time. Slow, and obviously right.

The same pairs as :mod:`npmobilenet.functional.activation`, taking and returning the same things.
"""

import numpy as np


def relu_forward(x):
    """``out = x if x > 0 else 0``, value by value."""
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        out[index] = x[index] if x[index] > 0 else 0
    return out, x


def relu_backward(dout, cache):
    """The slope is 1 where ``x > 0`` and 0 elsewhere (at exactly 0 too): ``dx = dout * slope``."""
    x = cache
    dx = np.zeros_like(dout)
    for index in np.ndindex(x.shape):
        dx[index] = dout[index] if x[index] > 0 else 0
    return dx


def relu6_forward(x):
    """``out = 0 if x < 0, 6 if x > 6, else x``, value by value."""
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        out[index] = min(max(x[index], 0), 6)
    return out, x


def relu6_backward(dout, cache):
    """The slope is 1 where ``0 < x < 6`` and 0 elsewhere (at exactly 0 and 6 too)."""
    x = cache
    dx = np.zeros_like(dout)
    for index in np.ndindex(x.shape):
        dx[index] = dout[index] if 0 < x[index] < 6 else 0
    return dx
