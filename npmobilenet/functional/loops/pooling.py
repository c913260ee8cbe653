"""Global average pooling by loops. Slow, and obviously right: the same pair as :mod:`npmobilenet.functional.pooling`."""

import numpy as np


def global_avg_pool_forward(x):
    """``out[n, c] = sum_{i, j} x[n, c, i, j] / (H*W)``, by loops."""
    n_images, n_channels, height, width = x.shape
    out = np.zeros((n_images, n_channels), dtype=x.dtype)
    for n in range(n_images):
        for c in range(n_channels):
            total = 0.0
            for i in range(height):
                for j in range(width):
                    total += x[n, c, i, j]
            out[n, c] = total / (height * width)
    return out, x.shape


def global_avg_pool_backward(dout, cache):
    """Every pixel of channel ``c`` of image ``n`` gets ``dout[n, c] / (H*W)``."""
    n_images, n_channels, height, width = cache
    dx = np.zeros(cache, dtype=dout.dtype)
    for n, c, i, j in np.ndindex(cache):
        dx[n, c, i, j] = dout[n, c] / (height * width)
    return dx
