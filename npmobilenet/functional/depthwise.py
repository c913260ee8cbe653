"""Depthwise 2-D convolution (``groups = channels``), the plain way: one shifted multiply-add per kernel position.

Shapes: input ``x`` is ``(N, C, H, W)``, weight ``w`` is ``(C, 1, KH, KW)`` (PyTorch's shape
for ``groups=C``), optional bias ``b`` is ``(C,)``, output is ``(N, C, OH, OW)``.

Each channel is filtered by its own ``KH x KW`` kernel; channels never mix. There is no sum
over channels, so im2col's matrix product would be wasted. Instead: for each kernel position
``(p, q)``, the input values that position sees, for every output pixel at once, form a
strided slice of the padded input, ``xp[:, :, p::sh, q::sw]`` (cut to ``OH x OW``). Multiply
it by that position's weight (one number per channel) and add it to the output. For a 3x3
kernel, nine vectorised steps compute the whole convolution.
"""

import numpy as np

from .._checks import check_conv_arguments


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass, PyTorch's ``F.conv2d(x, w, b, stride, padding, groups=C)``.

    ``out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    computed as ``out = b + sum_{p, q} w[:, 0, p, q] * tap(p, q)``, where ``tap(p, q)`` is the
    strided view of the padded input under kernel position ``(p, q)`` (:func:`tap`).
    Returns ``out`` and the cache for :func:`depthwise_conv2d_backward`.
    """
    stride, padding, out_size = check_conv_arguments("depthwise_conv2d", x, w, b, stride, padding, depthwise=True)
    (ph, pw), kh, kw = padding, w.shape[2], w.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((x.shape[0], x.shape[1], *out_size), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            out += channel_vector(w[:, 0, p, q]) * tap(xp, p, q, stride, out_size)
    if b is not None:
        out += channel_vector(b)
    return out, (xp, w, b is not None, stride, padding)


def depthwise_conv2d_backward(dout, cache):
    """Backward pass of :func:`depthwise_conv2d_forward`: returns ``(dx, dw, db)``, ``db`` None without bias.

    Each step ``out += w[c, 0, p, q] * tap(p, q)`` has two gradients:

    * ``dw[c, 0, p, q] = sum_{n, i, j} dout[n, c, i, j] * tap(p, q)[n, c, i, j]``;
    * ``dxp[tap(p, q)] += w[c, 0, p, q] * dout``: the gradient flows back into the slice the
      values were read from; overlapping windows add up over the ``KH*KW`` steps.

    ``db[c] = sum_{n, i, j} dout[n, c, i, j]``.
    """
    xp, w, has_bias, stride, padding = cache
    (ph, pw), kh, kw, out_size = padding, w.shape[2], w.shape[3], dout.shape[2:]
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for p in range(kh):
        for q in range(kw):
            dw[:, 0, p, q] = (dout * tap(xp, p, q, stride, out_size)).sum(axis=(0, 2, 3))
            tap(dxp, p, q, stride, out_size)[...] += channel_vector(w[:, 0, p, q]) * dout
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    dx = dxp[:, :, ph : xp.shape[2] - ph, pw : xp.shape[3] - pw].copy()
    return dx, dw, db


def tap(xp, p, q, stride, out_size):
    """``xp[:, :, p + i*sh, q + j*sw]`` for every output pixel ``(i, j)``: a strided view, no copy."""
    (sh, sw), (oh, ow) = stride, out_size
    return xp[:, :, p : p + sh * (oh - 1) + 1 : sh, q : q + sw * (ow - 1) + 1 : sw]


def channel_vector(values):
    """A ``(C,)`` vector shaped ``(1, C, 1, 1)``, so that it multiplies each channel of an NCHW array."""
    return values[None, :, None, None]
