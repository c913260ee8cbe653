"""2-D convolution (``groups=1``), fast: what :mod:`npmobilenet.nn` runs.

It computes what :mod:`npmobilenet.functional.conv` computes (im2col, then one matrix product;
col2im for the backward pass), with these differences, each for speed:

* **Channels-last memory** (see :mod:`npmobilenet.functional.fast.layout`). The input is read
  as its ``(N*H*W, C)`` matrix of pixels and the matrix product gives one row of ``F`` values
  per output pixel, which is already channels-last: no transposes before or after.
* **1x1 convolutions copy nothing.** For a 1x1 kernel with stride 1 (most of MobileNetV2's
  work) the im2col matrix *is* the input's matrix of pixels, a view. Only the stem's 3x3 conv
  builds columns.
* **Columns from one strided view, gradients as planes.** Where columns are needed (the
  stem), the windows view of the padded channels-last input is copied into rows once. col2im
  (:func:`col2im_planes`) makes each image's ``dcols`` transposed, so that each kernel
  position's gradient for one channel is a whole plane, added back into the padded gradient
  in NCHW memory: the stem's three channels would otherwise be read three values at a time
  (the stem's backward pass at batch 8: 12 ms instead of 25).
* **The bias gradient** is an accurate channel sum
  (:func:`~npmobilenet.functional.fast.layout.channel_sums`).
* The cache keeps the input and the weight, not the columns, which are cheap to make again
  and can be big.
* **Matrix products on every thread** (:func:`npmobilenet.parallel.matmul`): the rows of each
  product are shared among npmobilenet's threads, BLAS on one thread inside each.
* **For inference, one pass** (:func:`conv2d_inference`): the product goes a cache-sized block
  of output rows at a time, each block's im2col rows copied just before it, and each block
  gets its bias and its activation (ReLU6 after a folded batch norm) before it leaves the
  processor's cache. Done layer after layer, the columns, the bias and the activation would
  each read and write a whole array once more.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ... import parallel
from ...parallel import parallel_map
from ..._checks import check_conv_arguments
from .layout import (
    channel_sums,
    for_each_block,
    from_nhwc,
    nhwc,
    padded_column_phases,
    pixels_by_channels,
)


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass, PyTorch's ``F.conv2d(x, w, b, stride, padding)``, as :func:`npmobilenet.functional.conv.conv2d_forward`.

    ``out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    computed as ``cols @ W.T`` with ``cols`` of shape ``(N*OH*OW, KH*KW*C)`` (channels fastest)
    and the weight as the ``(F, KH*KW*C)`` matrix ``W`` with its columns in the same order.
    """
    stride, padding, out_size = check_conv_arguments("conv2d", x, w, b, stride, padding)
    kernel_size, f = w.shape[2:], w.shape[0]
    cols = im2col(x, kernel_size, stride, padding, out_size)
    out = parallel.matmul(cols, weight_matrix(w).T)  # (N*OH*OW, KH*KW*C) @ (KH*KW*C, F)
    if b is not None:
        out += b
    cache = (x, w, b is not None, stride, padding)
    return from_nhwc(out.reshape(x.shape[0], *out_size, f)), cache


def conv2d_inference(x, w, b=None, stride=1, padding=0, activation=None):
    """``activation(conv2d(x, w, b))`` for inference: the output alone, no cache for a backward pass.

    The same product as :func:`conv2d_forward`, ``cols @ W.T``, a block of output rows at a
    time (:func:`~npmobilenet.functional.fast.layout.for_each_block`), the blocks shared among
    the threads. A block's rows of ``cols`` are copied from the windows view just before its
    product (for a 1x1 kernel they are a view of the input), so im2col too happens in cache
    and on every thread. Each block gets ``+ b`` and ``activation`` (None, or a function
    that changes a block in place, such as
    :func:`~npmobilenet.functional.fast.activation.relu6_in_place`) while it is in cache.
    """
    stride, padding, (oh, ow) = check_conv_arguments("conv2d", x, w, b, stride, padding)
    kernel_size, f = w.shape[2:], w.shape[0]
    if is_pointwise(kernel_size, stride, padding):
        windows = nhwc(x)  # (N, H, W, C): a pixel's window is the pixel
    else:
        padded = padded_column_phases(nhwc(x), padding, 1)[0]
        windows = windows_view(padded, kernel_size, stride, (oh, ow))  # (N, OH, OW, KH, KW, C)
    w_columns = weight_matrix(w).T  # (KH*KW*C, F)
    out = np.empty((x.shape[0], oh, ow, f), dtype=x.dtype)

    def output_block(images, rows):
        cols = windows[images, rows].reshape(-1, w_columns.shape[0])  # this block's rows of im2col
        block = out[images, rows].reshape(-1, f)  # a block is one image's rows or whole images: a view
        np.matmul(cols, w_columns, out=block)
        if b is not None:
            block += b
        if activation is not None:
            activation(block)

    for_each_block(output_block, x.shape[0], oh, ow * (w_columns.shape[0] + f))  # a row: its columns and outputs
    return from_nhwc(out)


def conv2d_backward(dout, cache):
    """Backward pass of :func:`conv2d_forward`: returns ``(dx, dw, db)``, ``db`` None without bias.

    As :func:`npmobilenet.functional.conv.conv2d_backward`: ``dW = dout.T @ cols``,
    ``db = sum(dout)``, ``dcols = dout @ W`` and col2im (:func:`col2im_planes`), with
    ``dout`` as its ``(N*OH*OW, F)`` matrix of pixels.
    """
    x, w, has_bias, stride, padding = cache
    kernel_size, out_size = w.shape[2:], dout.shape[2:]
    dout_rows = pixels_by_channels(dout)  # (N*OH*OW, F)
    cols = im2col(x, kernel_size, stride, padding, out_size)
    w_matrix = weight_matrix(w)
    dw_matrix = parallel.matmul(dout_rows.T, cols)  # (F, KH*KW*C)
    dw = np.ascontiguousarray(dw_matrix.reshape(w.shape[0], *kernel_size, w.shape[1]).transpose(0, 3, 1, 2))
    db = channel_sums(dout_rows) if has_bias else None
    if is_pointwise(kernel_size, stride, padding):  # dcols is dx's matrix of pixels
        dx = from_nhwc(parallel.matmul(dout_rows, w_matrix).reshape(nhwc(x).shape))
    else:
        dx = col2im_planes(dout_rows, w_matrix, x.shape, kernel_size, stride, padding, out_size)
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
    order of :func:`weight_matrix`'s columns. For a 1x1 kernel at stride 1 it is the input's
    matrix of pixels, with no copy. Otherwise it is the plain version's strided view of every
    window, taken over the padded channels-last input (one padding, as every fast operation
    pads: :func:`~npmobilenet.functional.fast.layout.padded_column_phases` with one phase), then
    copied into rows once: one copy of whole runs of ``KW*C`` values, 3.5 times faster for the
    stem than nine copies of a tap each.
    """
    if is_pointwise(kernel_size, stride, padding):
        return pixels_by_channels(x)
    padded = padded_column_phases(nhwc(x), padding, 1)[0]
    windows = windows_view(padded, kernel_size, stride, out_size)
    return windows.reshape(-1, kernel_size[0] * kernel_size[1] * x.shape[1])  # the one copy


def windows_view(xp, kernel_size, stride, out_size):
    """Every kernel window of a padded ``(N, H, W, C)`` array as a read-only view ``(N, OH, OW, KH, KW, C)``.

    ``windows[n, i, j, p, q, c] == xp[n, i*sh + p, j*sw + q, c]``. Moving one step along ``p``
    moves one row in memory, and so does moving ``1/sh`` of a step along ``i``: the view's
    strides are the input's row and column strides, used twice, the first time multiplied by
    the convolution's stride. Nothing is copied.
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel_size, stride, out_size
    n, c = xp.shape[0], xp.shape[3]
    step_n, step_row, step_col, step_c = xp.strides
    return as_strided(
        xp,
        shape=(n, oh, ow, kh, kw, c),
        strides=(step_n, step_row * sh, step_col * sw, step_row, step_col, step_c),
        writeable=False,
    )


def col2im_planes(dout_rows, w_matrix, x_shape, kernel_size, stride, padding, out_size):
    """``dx = col2im(dout @ W)``, made one image at a time as planes of channels (NCHW memory).

    ``dcols = dout @ W`` has one column per kernel position and channel ``(p, q, c)``: the
    gradient of the input values that position read, one per output pixel. Channels-last,
    those are runs of ``C`` values (3 for the stem) with gaps between them, and adding them
    back would make NumPy step through three values at a time. So each image's ``dcols`` is
    made transposed, ``W.T @ dout.T``: its row ``(p, q, c)`` is a whole ``OH x OW`` plane,
    added into the strided view of the padded gradient's channel ``c`` that position read.
    The model returns ``dL/dx`` in NCHW memory anyway. The images are shared among the
    threads, the kernel positions go in order within each: the same bits on any number of
    threads.
    """
    n, c, height, width = x_shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel_size, stride, padding, out_size
    dxp = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=dout_rows.dtype)
    dout_images = dout_rows.reshape(n, oh * ow, -1)

    def add_image(image):
        dcols_t = np.matmul(w_matrix.T, dout_images[image].T).reshape(kh, kw, c, oh, ow)
        for p in range(kh):
            for q in range(kw):
                dxp[image, :, p : p + sh * (oh - 1) + 1 : sh, q : q + sw * (ow - 1) + 1 : sw] += dcols_t[p, q]

    parallel_map(add_image, range(n))
    return dxp[:, :, ph : ph + height, pw : pw + width]
