"""2-D convolution (``groups=1``), the plain way: im2col by strides, then one matrix product.

Shapes: input ``x`` is ``(N, C, H, W)``, weight ``w`` is ``(F, C, KH, KW)``, optional bias ``b``
is ``(F,)``, output is ``(N, F, OH, OW)`` with ``OH = (H + 2*ph - KH) // sh + 1`` (same for W).

The idea: every output value is a dot product between one filter and one window of the
input. Lay every window out as a row of a matrix (*im2col*), every filter as a row of another,
and the whole convolution is one matrix product, which BLAS computes at the machine's full
speed. The loops in :mod:`npmobilenet.functional.loops.conv` compute the same sums one at a
time; :mod:`npmobilenet.functional.fast.conv` is what :mod:`npmobilenet.nn` runs.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._checks import check_conv_arguments


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass, PyTorch's ``F.conv2d(x, w, b, stride, padding)``.

    ``out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    where ``xp`` is ``x`` zero-padded by ``padding``. With ``cols = im2col(x)``, of shape
    ``(N*OH*OW, C*KH*KW)``, and the weight as the ``(F, C*KH*KW)`` matrix ``W``, the sum is
    ``cols @ W.T``: one row per output pixel, one column per filter.

    Returns ``out`` and the cache for :func:`conv2d_backward`.
    """
    stride, padding, (oh, ow) = check_conv_arguments("conv2d", x, w, b, stride, padding)
    n, f = x.shape[0], w.shape[0]
    cols = im2col(x, w.shape[2:], stride, padding, (oh, ow))
    out = cols @ w.reshape(f, -1).T  # (N*OH*OW, C*KH*KW) @ (C*KH*KW, F)
    if b is not None:
        out += b
    out = out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2)  # the rows were pixels: back to NCHW
    return np.ascontiguousarray(out), (x, w, b is not None, stride, padding)


def conv2d_backward(dout, cache):
    """Backward pass of :func:`conv2d_forward`: returns ``(dx, dw, db)``, ``db`` None without bias.

    ``out = cols @ W.T`` is a matrix product, so with ``dout`` as its ``(N*OH*OW, F)`` matrix:

    * ``dW = dout.T @ cols`` (one product sums over every pixel of every image);
    * ``db[f] = sum_{n, i, j} dout[n, f, i, j]``;
    * ``dcols = dout @ W``; then :func:`col2im` adds each entry back into the input pixel it
      was copied from. A pixel sits in several windows, so its gradient is a sum.
    """
    x, w, has_bias, stride, padding = cache
    f, out_size = w.shape[0], dout.shape[2:]
    dout_rows = dout.transpose(0, 2, 3, 1).reshape(-1, f)  # (N*OH*OW, F)
    cols = im2col(x, w.shape[2:], stride, padding, out_size)
    dw = (dout_rows.T @ cols).reshape(w.shape)
    db = dout_rows.sum(axis=0) if has_bias else None
    dcols = dout_rows @ w.reshape(f, -1)  # (N*OH*OW, C*KH*KW)
    dx = col2im(dcols, x.shape, w.shape[2:], stride, padding, out_size)
    return dx, dw, db


def im2col(x, kernel_size, stride, padding, out_size):
    """The ``(N*OH*OW, C*KH*KW)`` matrix whose row ``(n, i, j)`` is the window under output pixel ``(i, j)``.

    First a *view* of every window, ``windows[n, i, j, c, p, q] = xp[n, c, i*sh + p, j*sw + q]``,
    made without copying anything: ``as_strided`` only says how far to move in memory for one
    step along each axis. One step along ``p`` moves one row of ``xp``; one step along ``i``
    moves ``sh`` rows. So the strides of the view are the strides of ``xp``, the row and column
    strides used twice. ``reshape`` then copies the windows into rows (``C*KH*KW`` values each,
    in the order of ``w.reshape(F, -1)``'s columns).
    """
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel_size, stride, padding, out_size
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c = x.shape[:2]
    step_n, step_c, step_row, step_col = xp.strides
    windows = as_strided(
        xp,
        shape=(n, oh, ow, c, kh, kw),
        strides=(step_n, step_row * sh, step_col * sw, step_c, step_row, step_col),
        writeable=False,
    )
    return windows.reshape(n * oh * ow, c * kh * kw)


def col2im(dcols, x_shape, kernel_size, stride, padding, out_size):
    """Add window gradients ``(N*OH*OW, C*KH*KW)`` back into an input of shape ``x_shape``: the adjoint of :func:`im2col`.

    For each kernel position ``(p, q)``, the gradients of that position in every window go to
    the strided slice ``xp[:, :, p::sh, q::sw]`` they were read from: ``KH*KW`` vectorised
    additions, overlapping windows adding up.
    """
    (n, c, height, width), (kh, kw), (sh, sw), (ph, pw), (oh, ow) = x_shape, kernel_size, stride, padding, out_size
    dwindows = dcols.reshape(n, oh, ow, c, kh, kw)
    dxp = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=dcols.dtype)
    for p in range(kh):
        for q in range(kw):
            dxp[:, :, p : p + sh * oh : sh, q : q + sw * ow : sw] += dwindows[:, :, :, :, p, q].transpose(0, 3, 1, 2)
    return dxp[:, :, ph : ph + height, pw : pw + width].copy()
