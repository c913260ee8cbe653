"""How the operations lay out and walk their arrays: channels-last memory, padding, windows, blocks.

**Channels-last memory.** Every array here has PyTorch's NCHW *shape*, ``(N, C, H, W)``; what
differs is the order of its values in memory. A NumPy array made by ``np.zeros((N, C, H, W))``
stores each channel's ``H x W`` plane in one piece (NCHW memory). The operations of this package
store their outputs *channels-last* instead: the ``C`` values of one pixel sit next to each
other (NHWC memory), and the array is a transposed view that still has the shape
``(N, C, H, W)``. This is PyTorch's ``torch.channels_last`` memory format. Indexing, shapes and
results are the same either way; only the speed differs:

* a 1x1 convolution becomes one matrix product ``(N*H*W, C) @ (C, F)`` over the pixels, with
  no copy of its input;
* a depthwise convolution multiplies each shifted view by a vector of ``C`` weights along the
  last memory axis, where the values are contiguous, at any stride;
* batch norm's per-channel sums become column sums of an ``(N*H*W, C)`` matrix.

:func:`nhwc` gives the ``(N, H, W, C)`` view of an NCHW-shaped array, :func:`from_nhwc` goes
back, and :func:`channels_last` converts an array with NCHW memory (a copy, made once, at a
model's input). Every operation accepts either memory order.

**Blocks.** NumPy runs one operation over a whole array before the next one starts. When
several operations follow each other over a big array (the nine taps of a depthwise
convolution, the steps of batch norm), each would stream the array from main memory and back.
Done on a block of rows at a time (:func:`row_blocks`, :func:`row_slices`), the block stays
in the processor's cache between the steps, and only the first read and the last write go
to main memory.

**Channel sums.** :func:`channel_sums` adds up the rows of an ``(M, C)`` matrix, accurately.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided


def nhwc(x):
    """The ``(N, H, W, C)`` view of an ``(N, C, H, W)`` array (no copy)."""
    return x.transpose(0, 2, 3, 1)


def from_nhwc(y):
    """The ``(N, C, H, W)`` view of an ``(N, H, W, C)`` array (no copy): what the operations return."""
    return y.transpose(0, 3, 1, 2)


def channels_last(x):
    """``x`` with the same shape and values, stored channels-last; ``x`` itself when it already is."""
    return from_nhwc(np.ascontiguousarray(nhwc(x)))


def is_channels_last(x):
    """True when ``x`` (NCHW-shaped) is stored channels-last with no gaps."""
    return nhwc(x).flags.c_contiguous


def pixels_by_channels(x):
    """An NCHW-shaped array as the ``(N*H*W, C)`` matrix of its pixels: a view when channels-last, else a copy."""
    return np.ascontiguousarray(nhwc(x)).reshape(-1, x.shape[1])


# Channel sums add blocks of this many rows in float32, then the blocks' sums in float64.
SUM_BLOCK_ROWS = 8


def channel_sums(a, b=None):
    """``sum_m a[m, c]``, or ``sum_m a[m, c] * b[m, c]``, for every channel (column) ``c`` of ``(M, C)`` matrices.

    Adding ``M`` float32 numbers one after another lets the rounding error grow with ``M``
    (up to about ``M * 6e-8`` relative), and a batch norm sums ``M = N*H*W`` values, up to
    hundreds of thousands. So the rows are summed in blocks of ``SUM_BLOCK_ROWS`` in float32
    (an error of at most ``8 * 6e-8``), and the block sums are added in float64, then
    rounded once: the result is within about one float32 rounding of the exact sum, at the
    speed of a plain float32 sum (the float64 work is on 8 times fewer values).
    ``np.einsum`` multiplies and adds in one pass, without a temporary array for the products.
    Arrays of float64 are summed in float64 throughout.
    """
    rows, channels = a.shape
    blocks = rows // SUM_BLOCK_ROWS
    whole = blocks * SUM_BLOCK_ROWS
    head = a[:whole].reshape(blocks, SUM_BLOCK_ROWS, channels)
    if b is None:  # einsum "kbc->kc" adds the same rows in the same order as head.sum(axis=1), faster
        block_sums, rest = np.einsum("kbc->kc", head), a[whole:]
    else:
        head_b = b[:whole].reshape(blocks, SUM_BLOCK_ROWS, channels)
        block_sums, rest = np.einsum("kbc,kbc->kc", head, head_b), a[whole:] * b[whole:]
    total = block_sums.sum(axis=0, dtype=np.float64) + rest.sum(axis=0, dtype=np.float64)
    return total.astype(a.dtype)


def pad_nhwc(xh, padding):
    """Zero-pad the two spatial axes of an ``(N, H, W, C)`` array into a new contiguous one.

    A new array is made even without padding, so that the result is always contiguous
    channels-last, whatever the memory order of ``xh``.
    """
    (ph, pw), (n, height, width, c) = padding, xh.shape
    xp = np.empty((n, height + 2 * ph, width + 2 * pw, c), dtype=xh.dtype)
    xp[:, :ph] = xp[:, ph + height :] = 0  # the borders only: the inside is written next
    xp[:, :, :pw] = xp[:, :, pw + width :] = 0
    xp[:, ph : ph + height, pw : pw + width] = xh
    return xp


def unpad_nhwc(xp, padding):
    """The inverse of :func:`pad_nhwc`: the unpadded part of ``xp``, as a view."""
    ph, pw = padding
    return xp[:, ph : xp.shape[1] - ph, pw : xp.shape[2] - pw]


def tap_view(xp, p, q, stride, out_rows, out_cols):
    """``xp[:, p + i*sh, q + j*sw, :]`` for every output pixel ``(i, j)``: the input under kernel
    position ``(p, q)``, a strided view."""
    sh, sw = stride
    return xp[:, p : p + sh * (out_rows - 1) + 1 : sh, q : q + sw * (out_cols - 1) + 1 : sw]


def windows_view(xp, kernel_size, stride, out_size):
    """Every kernel window of an ``(N, H, W, C)`` array as a read-only view ``(N, OH, OW, KH, KW, C)``.

    ``windows[n, i, j, p, q, c] == xp[n, i*sh + p, j*sw + q, c]``. Moving one step along
    ``p`` moves one row in memory, and so does moving ``1/sh`` of a step along ``i``; so the
    view's strides are the input's row and column strides, used twice, the first time
    multiplied by the convolution's stride. Nothing is copied.
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel_size, stride, out_size
    n, c = xp.shape[0], xp.shape[3]
    stride_n, stride_row, stride_col, stride_c = xp.strides
    return as_strided(
        xp,
        shape=(n, oh, ow, kh, kw, c),
        strides=(stride_n, stride_row * sh, stride_col * sw, stride_row, stride_col, stride_c),
        writeable=False,
    )


# A block of 64K float32 values is 256 KB: with its temporary it stays in the processor's L2
# cache while the kernel's taps add into it, instead of streaming to main memory once a tap.
BLOCK_VALUES = 1 << 16


def row_blocks(images, rows, values_per_row, block_values=BLOCK_VALUES):
    """Split the ``(images, rows)`` of an output into blocks of about ``block_values`` values.

    Yields ``(image_slice, row_slice)`` pairs that cover every row of every image once: several
    whole images per block when an image is small, else one image's rows a few at a time.
    """
    rows_per_block = max(1, block_values // max(1, values_per_row))
    if rows_per_block >= rows:
        images_per_block = rows_per_block // rows
        for first in range(0, images, images_per_block):
            yield slice(first, min(images, first + images_per_block)), slice(0, rows)
    else:
        for image in range(images):
            for first in range(0, rows, rows_per_block):
                yield slice(image, image + 1), slice(first, min(rows, first + rows_per_block))


# Batch norm's sweeps take two or three steps per block: blocks of 256K values (1 MB) mean
# fewer NumPy calls, and still stay in the cache.
SWEEP_BLOCK_VALUES = 1 << 18


def row_slices(rows, values_per_row, block_values=SWEEP_BLOCK_VALUES):
    """Slices that cover ``range(rows)`` in blocks of about ``block_values`` values (at least one row each)."""
    step = max(1, block_values // max(1, values_per_row))
    return [slice(start, min(rows, start + step)) for start in range(0, rows, step)]
