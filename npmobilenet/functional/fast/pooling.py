"""Global average pooling, fast: the same mean as :mod:`npmobilenet.functional.pooling`, read channels-last.

What differs from the plain version, and why:

* The input is read as each image's ``(H*W, C)`` matrix of pixels (a view of a channels-last
  array, see :mod:`npmobilenet.functional.fast.layout`), and each image's column sums are
  :func:`~npmobilenet.functional.fast.layout.channel_sums`: accurate in float32 however many
  pixels there are, as every reduction of the fast operations is.
* The gradient is written channels-last, the memory order the layer below works in.
"""

import numpy as np

from ..._checks import check_float_array
from .layout import channel_sums, from_nhwc, pixels_by_channels


def global_avg_pool_forward(x):
    """``out[n, c] = mean_{i, j} x[n, c, i, j]``, as :func:`npmobilenet.functional.pooling.global_avg_pool_forward`."""
    check_float_array("input", x, "global_avg_pool", ndim=4)
    n, c, height, width = x.shape
    pixels = pixels_by_channels(x).reshape(n, height * width, c)  # each image's (H*W, C) matrix
    out = np.stack([channel_sums(image) for image in pixels]) if n else np.zeros((0, c), x.dtype)
    return out / x.dtype.type(height * width), x.shape


def global_avg_pool_backward(dout, cache):
    """``dx[n, c, i, j] = dout[n, c] / (H*W)``, stored channels-last."""
    n, c, height, width = cache
    dx = np.empty((n, height, width, c), dtype=dout.dtype)
    dx[...] = (dout / (height * width))[:, None, None, :]
    return from_nhwc(dx)
