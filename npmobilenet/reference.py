"""Naive loop versions of conv2d and depthwise conv2d: slow, and obviously right.

These are the versions a student writes first: one Python loop per index of the formula.
They take and return exactly what the vectorised pairs in :mod:`npmobilenet.functional` do,
so the tests can check one against the other, and a tutorial can show both side by side.
They check nothing about their inputs; use small arrays (a few channels, a few pixels).
"""

import numpy as np

from ._checks import conv_output_size, pair


def _pad(x, padding):
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _unpad(xp, padding):
    ph, pw = padding
    return xp[:, :, ph : xp.shape[2] - ph, pw : xp.shape[3] - pw].copy()


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """``out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]``, by loops."""
    (sh, sw), padding = pair(stride), pair(padding)
    xp = _pad(x, padding)
    n_images, _, height, width = x.shape
    n_filters, _, kh, kw = w.shape
    out_h = conv_output_size(height, kh, sh, padding[0])
    out_w = conv_output_size(width, kw, sw, padding[1])
    out = np.zeros((n_images, n_filters, out_h, out_w), dtype=x.dtype)
    for n in range(n_images):
        for f in range(n_filters):
            for i in range(out_h):
                for j in range(out_w):
                    window = xp[n, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    out[n, f, i, j] = np.sum(window * w[f])
                    if b is not None:
                        out[n, f, i, j] += b[f]
    return out, (x, w, b is not None, (sh, sw), padding)


def conv2d_backward(dout, cache):
    """Each output value sends ``dout * w`` back to its window, and ``dout * window`` to ``w``."""
    x, w, has_bias, (sh, sw), padding = cache
    xp = _pad(x, padding)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    db = np.zeros(w.shape[0], dtype=w.dtype) if has_bias else None
    n_images, n_filters, out_h, out_w = dout.shape
    kh, kw = w.shape[2:]
    for n in range(n_images):
        for f in range(n_filters):
            for i in range(out_h):
                for j in range(out_w):
                    rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
                    dxp[n, :, rows, cols] += w[f] * dout[n, f, i, j]
                    dw[f] += xp[n, :, rows, cols] * dout[n, f, i, j]
                    if has_bias:
                        db[f] += dout[n, f, i, j]
    return _unpad(dxp, padding), dw, db


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """A depthwise convolution is ``C`` separate convolutions of one channel each, so: loop over channels.

    ``out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xp[n, c, i*sh + p, j*sw + q]``
    """
    outs, caches = [], []
    for c in range(x.shape[1]):
        bias = None if b is None else b[c : c + 1]
        out, cache = conv2d_forward(x[:, c : c + 1], w[c : c + 1], bias, stride, padding)
        outs.append(out)
        caches.append(cache)
    return np.concatenate(outs, axis=1), caches


def depthwise_conv2d_backward(dout, cache):
    """Channel by channel, the backward pass of :func:`conv2d_backward`."""
    grads = [conv2d_backward(dout[:, c : c + 1], channel_cache) for c, channel_cache in enumerate(cache)]
    dx, dw, db = zip(*grads)
    db = None if db[0] is None else np.concatenate(db)
    return np.concatenate(dx, axis=1), np.concatenate(dw), db
