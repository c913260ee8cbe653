"""Depthwise 2-D convolution (``groups = channels``) by loops: each channel filtered by its own kernel. Slow, and obviously right.

The same pair as :mod:`npmobilenet.functional.depthwise`, taking and returning the same
things. Compare with :mod:`npmobilenet.functional.loops.conv`: there is no loop over input
channels, because output channel ``c`` reads input channel ``c`` alone.
"""

import numpy as np

from ..._checks import conv_output_size, pair


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """``out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xp[n, c, i*sh + p, j*sw + q]``, by loops."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n_images, n_channels, height, width = x.shape
    kh, kw = w.shape[2:]
    out_h, out_w = conv_output_size(height, kh, sh, ph), conv_output_size(width, kw, sw, pw)
    out = np.zeros((n_images, n_channels, out_h, out_w), dtype=x.dtype)
    for n in range(n_images):
        for c in range(n_channels):
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if b is None else b[c]
                    for p in range(kh):
                        for q in range(kw):
                            total += w[c, 0, p, q] * xp[n, c, i * sh + p, j * sw + q]
                    out[n, c, i, j] = total
    return out, (x, w, b is not None, (sh, sw), (ph, pw))


def depthwise_conv2d_backward(dout, cache):
    """Each term ``w[c, 0, p, q] * xp[n, c, i*sh + p, j*sw + q]`` sends ``dout[n, c, i, j]`` times
    the other factor to each of its two factors; ``db[c]`` sums ``dout`` over the channel."""
    x, w, has_bias, (sh, sw), (ph, pw) = cache
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    db = np.zeros(w.shape[0], dtype=w.dtype) if has_bias else None
    n_images, n_channels, out_h, out_w = dout.shape
    kh, kw = w.shape[2:]
    for n in range(n_images):
        for c in range(n_channels):
            for i in range(out_h):
                for j in range(out_w):
                    g = dout[n, c, i, j]
                    if has_bias:
                        db[c] += g
                    for p in range(kh):
                        for q in range(kw):
                            dw[c, 0, p, q] += g * xp[n, c, i * sh + p, j * sw + q]
                            dxp[n, c, i * sh + p, j * sw + q] += g * w[c, 0, p, q]
    dx = dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]].copy()
    return dx, dw, db
