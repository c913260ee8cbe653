"""2-D convolution (``groups=1``) by im2col: every window becomes a column, then one matrix product.

Shapes: input ``x`` is ``(N, C, H, W)``, weight ``w`` is ``(F, C, KH, KW)``, optional bias ``b``
is ``(F,)``, output is ``(N, F, OH, OW)`` with ``OH = (H + 2*ph - KH) // sh + 1`` (same for W).
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
from ._windows import pad_spatial, tap_view, unpad_spatial, windows_view


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass of a convolution, PyTorch's ``F.conv2d(x, w, b, stride, padding)``.

    ``out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    where ``xp`` is ``x`` zero-padded by ``padding``. im2col lays the windows out as columns:
    ``cols[n]`` has shape ``(C*KH*KW, OH*OW)``, one column per output pixel, so the sum above is
    the matrix product ``w.reshape(F, C*KH*KW) @ cols[n]`` for every image ``n``. The columns
    come from a strided view of ``xp`` (no copy); the reshape copies them once, right before
    the product. For a 1x1 convolution with stride 1 the reshape copies nothing at all.

    Returns ``out`` and the ``cache`` that :func:`conv2d_backward` needs.
    """
    op = "conv2d"
    check_float_array("input", x, op, ndim=4)
    check_float_array("weight", w, op, ndim=4)
    check_same_dtype(op, x, weight=w, bias=b)
    check_channels(op, x, w.shape[1], f"weight shape {w.shape}")
    f = w.shape[0]
    if b is not None:
        check_shape("bias", b, (f,), op)
    kernel_size, stride, padding = w.shape[2:], pair(stride, "stride"), pair(padding, "padding")
    out_size = check_conv_geometry(op, x, kernel_size, stride, padding)

    n, c = x.shape[:2]
    windows = windows_view(pad_spatial(x, padding), kernel_size, stride, out_size)
    cols = windows.reshape(n, c * kernel_size[0] * kernel_size[1], out_size[0] * out_size[1])
    out = np.matmul(w.reshape(f, -1), cols)  # (F, CKK) @ (N, CKK, L) -> (N, F, L)
    if b is not None:
        out += b[:, None]
    cache = (x.shape, cols, w, b is not None, stride, padding)
    return out.reshape(n, f, *out_size), cache


def conv2d_backward(dout, cache):
    """Backward pass of :func:`conv2d_forward`: returns ``(dx, dw, db)``, ``db`` None without bias.

    With ``out[n] = W @ cols[n]`` (``W`` the weight as an ``(F, C*KH*KW)`` matrix):

    * ``dW = sum_n dout[n] @ cols[n].T``: one matrix product over all images at once;
    * ``db[f] = sum_{n, i, j} dout[n, f, i, j]``;
    * ``dcols[n] = W.T @ dout[n]``, and col2im sends each column entry back to the input pixel
      it was read from. An input pixel sits in several windows, so its gradient is a sum. Summing
      kernel position by kernel position (nine strided slices for a 3x3 kernel) adds each slice
      in one vectorised step, with no ``np.add.at`` and no loop over pixels.
    """
    x_shape, cols, w, has_bias, stride, padding = cache
    n, f = dout.shape[:2]
    dout_mat = dout.reshape(n, f, -1)  # (N, F, L)
    dw = np.tensordot(dout_mat, cols, axes=([0, 2], [0, 2])).reshape(w.shape)
    db = dout_mat.sum(axis=(0, 2)) if has_bias else None
    dcols = np.matmul(w.reshape(f, -1).T, dout_mat)  # (N, C*KH*KW, L)
    dx = col2im(dcols, x_shape, w.shape[2:], stride, padding, dout.shape[2:])
    return dx, dw, db


def col2im(dcols, x_shape, kernel_size, stride, padding, out_size):
    """Sum column gradients ``(N, C*KH*KW, OH*OW)`` back into an input-shaped array.

    The adjoint of the im2col in :func:`conv2d_forward`: for each kernel position ``(p, q)``
    the ``OH x OW`` values of that row of the columns are added into the strided slice of the
    padded input that they were read from.
    """
    n, c, height, width = x_shape
    (kh, kw), (ph, pw) = kernel_size, padding
    dcols = dcols.reshape(n, c, kh, kw, *out_size)
    dxp = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=dcols.dtype)
    for p in range(kh):
        for q in range(kw):
            tap_view(dxp, p, q, stride, out_size)[...] += dcols[:, :, p, q]
    return unpad_spatial(dxp, padding)

