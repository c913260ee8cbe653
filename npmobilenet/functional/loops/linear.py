"""The linear layer by loops: one dot product at a time. Slow, and obviously right.

The same pair as :mod:`npmobilenet.functional.linear`. ``x`` may have leading axes
``(..., in_features)``; they are flattened into rows first.
"""

import numpy as np


def linear_forward(x, w, b=None):
    """``out[n, o] = b[o] + sum_k x[n, k] * w[o, k]``, by loops over every row ``n`` and output ``o``."""
    rows = x.reshape(-1, x.shape[-1])
    n_out, n_in = w.shape
    out = np.zeros((rows.shape[0], n_out), dtype=x.dtype)
    for n in range(rows.shape[0]):
        for o in range(n_out):
            total = 0.0 if b is None else b[o]
            for k in range(n_in):
                total += rows[n, k] * w[o, k]
            out[n, o] = total
    return out.reshape(*x.shape[:-1], n_out), (x, w, b is not None)


def linear_backward(dout, cache):
    """Each term ``x[n, k] * w[o, k]`` sends ``dout[n, o]`` times the other factor to each factor; ``db[o]`` sums ``dout[:, o]``."""
    x, w, has_bias = cache
    rows, dout_rows = x.reshape(-1, x.shape[-1]), dout.reshape(-1, w.shape[0])
    dx, dw = np.zeros_like(rows), np.zeros_like(w)
    db = np.zeros(w.shape[0], dtype=w.dtype) if has_bias else None
    n_out, n_in = w.shape
    for n in range(rows.shape[0]):
        for o in range(n_out):
            g = dout_rows[n, o]
            if has_bias:
                db[o] += g
            for k in range(n_in):
                dx[n, k] += g * w[o, k]
                dw[o, k] += g * rows[n, k]
    return dx.reshape(x.shape), dw, db
