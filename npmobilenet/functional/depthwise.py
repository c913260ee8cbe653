"""Depthwise 2-D convolution (``groups = channels``): each channel is filtered by its own kernel.

Shapes: input ``x`` is ``(N, C, H, W)``, weight ``w`` is ``(C, 1, KH, KW)`` (PyTorch's shape for
``groups=C``), optional bias ``b`` is ``(C,)``, output is ``(N, C, OH, OW)``.

There is no sum over channels, so im2col would waste its matrix product. Instead the
convolution is ``KH*KW`` shifted multiply-adds: for each kernel position ``(p, q)``, take the
strided view of the padded input under that position (no copy) and add it, times that
position's per-channel weight, into the output. For a 3x3 kernel that is nine vectorised steps.
"""

import numpy as np

from .._checks import (
    check_channels,
    check_conv_geometry,
    check_float_array,
    check_same_dtype,
    check_shape,
    pair,
)
from ..errors import ShapeError
from ._windows import pad_spatial, tap_view, unpad_spatial


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass, PyTorch's ``F.conv2d(x, w, b, stride, padding, groups=C)``.

    ``out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    with ``xp`` the zero-padded input. Returns ``out`` and the cache for the backward pass.
    """
    op = "depthwise_conv2d"
    check_float_array("input", x, op, ndim=4)
    check_float_array("weight", w, op, ndim=4)
    check_same_dtype(op, x, weight=w, bias=b)
    channels = w.shape[0]
    if w.shape[1] != 1:
        raise ShapeError(f"{op}: expected a weight of shape (C, 1, KH, KW), got shape {w.shape}")
    check_channels(op, x, channels, f"depthwise weight shape {w.shape}")
    if b is not None:
        check_shape("bias", b, (channels,), op)
    kernel_size, stride, padding = w.shape[2:], pair(stride, "stride"), pair(padding, "padding")
    out_size = check_conv_geometry(op, x, kernel_size, stride, padding)

    xp = pad_spatial(x, padding)
    out = np.zeros((x.shape[0], channels, *out_size), dtype=x.dtype)
    for p in range(kernel_size[0]):
        for q in range(kernel_size[1]):
            out += w[:, 0, p, q, None, None] * tap_view(xp, p, q, stride, out_size)
    if b is not None:
        out += b[:, None, None]
    cache = (xp, w, b is not None, stride, padding)
    return out, cache


def depthwise_conv2d_backward(dout, cache):
    """Backward pass of :func:`depthwise_conv2d_forward`: returns ``(dx, dw, db)``.

    Each forward step ``out += w[c, p, q] * view_pq`` has two gradients, taken tap by tap:

    * ``dw[c, 0, p, q] = sum_{n, i, j} dout[n, c, i, j] * view_pq[n, c, i, j]``;
    * ``dxp[view_pq] += w[c, 0, p, q] * dout``: the upstream gradient flows back into the same
      strided slice it was read from. Overlapping windows add up over the ``KH*KW`` steps.

    ``db[c] = sum_{n, i, j} dout[n, c, i, j]``; ``db`` is None without bias.
    """
    xp, w, has_bias, stride, padding = cache
    out_size = dout.shape[2:]
    dw = np.zeros_like(w)
    dxp = np.zeros_like(xp)
    for p in range(w.shape[2]):
        for q in range(w.shape[3]):
            # 'ncij,ncij->c' multiplies elementwise and sums over all but the channel axis.
            dw[:, 0, p, q] = np.einsum("ncij,ncij->c", dout, tap_view(xp, p, q, stride, out_size))
            tap_view(dxp, p, q, stride, out_size)[...] += w[:, 0, p, q, None, None] * dout
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return unpad_spatial(dxp, padding), dw, db

