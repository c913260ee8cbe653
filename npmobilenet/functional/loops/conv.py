"""2-D convolution (``groups=1``) by loops: one Python loop per index of the formula. Slow, and obviously right.

The same pair as :mod:`npmobilenet.functional.conv`, taking and returning the same things, so
the two can be checked against each other. Use small arrays (a few channels, a few pixels).
"""

import numpy as np

from ..._checks import conv_output_size, pair


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """``out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]``, by loops."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # zeros around every image
    n_images, n_channels, height, width = x.shape
    n_filters, _, kh, kw = w.shape
    out_h, out_w = conv_output_size(height, kh, sh, ph), conv_output_size(width, kw, sw, pw)
    out = np.zeros((n_images, n_filters, out_h, out_w), dtype=x.dtype)
    for n in range(n_images):
        for f in range(n_filters):
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if b is None else b[f]
                    for c in range(n_channels):
                        for p in range(kh):
                            for q in range(kw):
                                total += w[f, c, p, q] * xp[n, c, i * sh + p, j * sw + q]
                    out[n, f, i, j] = total
    return out, (x, w, b is not None, (sh, sw), (ph, pw))


def conv2d_backward(dout, cache):
    """Every term ``w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]`` of ``out[n, f, i, j]`` sends
    ``dout[n, f, i, j]`` times the other factor to each of its two factors."""
    x, w, has_bias, (sh, sw), (ph, pw) = cache
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    db = np.zeros(w.shape[0], dtype=w.dtype) if has_bias else None
    n_images, n_filters, out_h, out_w = dout.shape
    n_channels, kh, kw = w.shape[1:]
    for n in range(n_images):
        for f in range(n_filters):
            for i in range(out_h):
                for j in range(out_w):
                    g = dout[n, f, i, j]
                    if has_bias:
                        db[f] += g
                    for c in range(n_channels):
                        for p in range(kh):
                            for q in range(kw):
                                dw[f, c, p, q] += g * xp[n, c, i * sh + p, j * sw + q]
                                dxp[n, c, i * sh + p, j * sw + q] += g * w[f, c, p, q]
    dx = dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]].copy()  # the padding's gradient is dropped
    return dx, dw, db
