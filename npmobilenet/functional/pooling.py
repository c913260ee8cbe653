"""Global average pooling, the plain way: the mean of each channel's pixels.

``(N, C, H, W) -> (N, C)``. torchvision's MobileNetV2 pools its last ``1280 x 7 x 7`` features
this way before the classifier (``F.adaptive_avg_pool2d(x, 1).flatten(1)``).
"""

import numpy as np

from .._checks import check_float_array


def global_avg_pool_forward(x):
    """``out[n, c] = 1/(H*W) * sum_{i, j} x[n, c, i, j]``. The cache is the input's shape."""
    check_float_array("input", x, "global_avg_pool", ndim=4)
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool_backward(dout, cache):
    """Each of the ``H*W`` inputs of an average gets ``1/(H*W)`` of its output's gradient: ``dx[n, c, i, j] = dout[n, c] / (H*W)``."""
    n, c, height, width = cache
    return np.broadcast_to((dout / (height * width))[:, :, None, None], cache).copy()
