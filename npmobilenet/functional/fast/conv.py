"""2-D convolution (``groups=1``) by im2col: every window becomes a row, then one matrix product.

Shapes: input ``x`` is ``(N, C, H, W)``, weight ``w`` is ``(F, C, KH, KW)``, optional bias ``b``
is ``(F,)``, output is ``(N, F, OH, OW)`` with ``OH = (H + 2*ph - KH) // sh + 1`` (same for W).
The output is stored channels-last (see :mod:`npmobilenet.functional.fast.layout`): the matrix
product gives one row of ``F`` values per output pixel, which is exactly that memory order.
"""

import numpy as np

from ..._checks import (
    check_channels,
    check_conv_geometry,
    check_float_array,
    check_same_dtype,
    check_shape,
    pair,
)
from .layout import (
    channel_sums,
    from_nhwc,
    nhwc,
    pad_nhwc,
    pixels_by_channels,
    tap_view,
    unpad_nhwc,
    windows_view,
)


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass of a convolution, PyTorch's ``F.conv2d(x, w, b, stride, padding)``.

    ``out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    where ``xp`` is ``x`` zero-padded by ``padding``. im2col lays the windows out as rows:
    ``cols`` has shape ``(N*OH*OW, KH*KW*C)``, one row per output pixel, and the weight becomes
    a ``(F, KH*KW*C)`` matrix ``W`` with its columns in the same order, so the sum above is the
    single matrix product ``cols @ W.T`` of shape ``(N*OH*OW, F)``: BLAS does the work. For a
    1x1 convolution with stride 1 (most of MobileNetV2's work) ``cols`` is the input itself,
    viewed as its ``(N*H*W, C)`` matrix of pixels, and nothing is copied.

    Returns ``out`` and the ``cache`` that :func:`conv2d_backward` needs: the input and the
    weight, not the columns, which are cheap to make again and can be big.
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

    cols = im2col(x, kernel_size, stride, padding, out_size)
    out = cols @ weight_matrix(w).T  # (N*OH*OW, KH*KW*C) @ (KH*KW*C, F)
    if b is not None:
        out += b
    cache = (x, w, b is not None, stride, padding)
    return from_nhwc(out.reshape(x.shape[0], *out_size, f)), cache


def conv2d_backward(dout, cache):
    """Backward pass of :func:`conv2d_forward`: returns ``(dx, dw, db)``, ``db`` None without bias.

    With ``out = cols @ W.T`` (``dout`` as its ``(N*OH*OW, F)`` matrix of pixels):

    * ``dW = dout.T @ cols``: one matrix product sums over every pixel of every image;
    * ``db[f] = sum_{n, i, j} dout[n, f, i, j]``;
    * ``dcols = dout @ W``, and col2im sends each entry of a row back to the input pixel it
      was read from. An input pixel sits in several windows, so its gradient is a sum.
      Summing kernel position by kernel position (nine strided slices for a 3x3 kernel)
      adds each slice in one vectorised step, with no ``np.add.at`` and no loop over pixels.
    """
    x, w, has_bias, stride, padding = cache
    kernel_size, out_size = w.shape[2:], dout.shape[2:]
    dout_rows = pixels_by_channels(dout)  # (N*OH*OW, F)
    cols = im2col(x, kernel_size, stride, padding, out_size)
    w_matrix = weight_matrix(w)
    dw_matrix = dout_rows.T @ cols  # (F, KH*KW*C)
    dw = np.ascontiguousarray(dw_matrix.reshape(w.shape[0], *kernel_size, w.shape[1]).transpose(0, 3, 1, 2))
    db = channel_sums(dout_rows) if has_bias else None
    dcols = dout_rows @ w_matrix  # (N*OH*OW, KH*KW*C)
    dx = col2im(dcols, x.shape, kernel_size, stride, padding, out_size)
    return dx, dw, db


def weight_matrix(w):
    """The ``(F, C, KH, KW)`` weight as the ``(F, KH*KW*C)`` matrix whose columns match im2col's."""
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def is_pointwise(kernel_size, stride, padding):
    """A 1x1 convolution with stride 1 and no padding: a matrix product over the pixels."""
    return tuple(kernel_size) == (1, 1) and stride == (1, 1) and padding == (0, 0)


def im2col(x, kernel_size, stride, padding, out_size):
    """The ``(N*OH*OW, KH*KW*C)`` matrix whose row ``(n, i, j)`` is the window under output pixel ``(i, j)``.

    A row lists the window's values kernel row by kernel row, channels fastest, which is the
    order of :func:`weight_matrix`'s columns.
    """
    if is_pointwise(kernel_size, stride, padding):
        return pixels_by_channels(x)
    windows = windows_view(pad_nhwc(nhwc(x), padding), kernel_size, stride, out_size)
    return windows.reshape(-1, kernel_size[0] * kernel_size[1] * x.shape[1])  # the one copy


def col2im(dcols, x_shape, kernel_size, stride, padding, out_size):
    """Sum window gradients ``(N*OH*OW, KH*KW*C)`` back into an input-shaped (channels-last) array.

    The adjoint of :func:`im2col`: for each kernel position ``(p, q)`` the ``C`` columns that
    came from it are added into the strided slice of the padded input they were read from.
    """
    n, c, height, width = x_shape
    if is_pointwise(kernel_size, stride, padding):
        return from_nhwc(dcols.reshape(n, height, width, c))
    (kh, kw), (ph, pw), (oh, ow) = kernel_size, padding, out_size
    dcols = dcols.reshape(n, oh, ow, kh, kw, c)
    dxp = np.zeros((n, height + 2 * ph, width + 2 * pw, c), dtype=dcols.dtype)
    for p in range(kh):
        for q in range(kw):
            tap_view(dxp, p, q, stride, oh, ow)[...] += dcols[:, :, :, p, q]
    return from_nhwc(np.ascontiguousarray(unpad_nhwc(dxp, padding)))
