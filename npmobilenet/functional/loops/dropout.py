"""Inverted dropout by loops: one value at a time. Slow, and obviously right.

The same pair as :mod:`npmobilenet.functional.dropout`. The random draws are the same too:
one ``rng.random(x.shape)`` call, so that the same seed drops the same values in both.
"""

import numpy as np


def dropout_forward(x, p, training, rng=None):
    """Each value is dropped (0) with probability ``p`` and kept otherwise, times ``1 / (1 - p)``; eval mode keeps all."""
    if not training or p == 0.0:
        return x, None
    if rng is None:
        rng = np.random.default_rng()
    draws = rng.random(x.shape) if p < 1.0 else np.zeros(x.shape)  # p = 1 drops everything, no draw needed
    scale = np.zeros_like(x)
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        if p < 1.0 and draws[index] >= p:  # kept: probability 1 - p
            scale[index] = 1.0 / (1.0 - p)
        out[index] = x[index] * scale[index]
    return out, scale


def dropout_backward(dout, cache):
    """``dx = dout * scale``, value by value: dropped values pass no gradient, kept ones are scaled as in the forward pass."""
    scale = cache
    if scale is None:
        return dout
    dx = np.zeros_like(dout)
    for index in np.ndindex(dout.shape):
        dx[index] = dout[index] * scale[index]
    return dx
