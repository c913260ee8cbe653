"""Padding and strided views shared by conv2d and depthwise conv2d.

A convolution reads, for every output pixel ``(i, j)``, the input window that starts at
``(i * stride, j * stride)`` in the zero-padded input. Two equivalent ways to look at that:

* :func:`tap_view` fixes one kernel position ``(p, q)`` and returns, for every output pixel,
  the input value under that kernel position: ``xp[..., p + i*sh, q + j*sw]``. It is a plain
  strided slice, a view with no copy. A 3x3 kernel has nine such views.
* :func:`windows_view` returns all the taps at once as a 6-D view of shape
  ``(N, C, KH, KW, OH, OW)``, built with ``numpy.lib.stride_tricks.as_strided``: still no copy.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided


def pad_spatial(x, padding):
    """Zero-pad the two spatial axes of an NCHW array; return ``x`` itself when there is no padding."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def unpad_spatial(xp, padding):
    """The inverse of :func:`pad_spatial`: cut the padding off again (a contiguous copy)."""
    ph, pw = padding
    height, width = xp.shape[2] - 2 * ph, xp.shape[3] - 2 * pw
    return np.ascontiguousarray(xp[:, :, ph : ph + height, pw : pw + width])


def tap_view(xp, p, q, stride, out_size):
    """``xp[:, :, p + i*sh, q + j*sw]`` for every output pixel ``(i, j)``: a strided view."""
    (sh, sw), (oh, ow) = stride, out_size
    return xp[:, :, p : p + sh * (oh - 1) + 1 : sh, q : q + sw * (ow - 1) + 1 : sw]


def windows_view(xp, kernel_size, stride, out_size):
    """Every kernel window of ``xp`` as a read-only view of shape ``(N, C, KH, KW, OH, OW)``.

    ``windows[n, c, p, q, i, j] == xp[n, c, i*sh + p, j*sw + q]``. Moving one step along
    ``p`` moves one row in memory, and so does moving ``1/sh`` of a step along ``i``; so the
    strides of the view are the input's row and column strides, used twice, the second time
    multiplied by the convolution's stride. Nothing is copied.
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel_size, stride, out_size
    n, c = xp.shape[:2]
    stride_n, stride_c, stride_row, stride_col = xp.strides
    return as_strided(
        xp,
        shape=(n, c, kh, kw, oh, ow),
        strides=(stride_n, stride_c, stride_row, stride_col, stride_row * sh, stride_col * sw),
        writeable=False,
    )
