"""The speed layer under the fast operations: memory order, padding, tap views, blocks, channel sums.

Every fast operation is built from these few pieces, one way each:

**Channels-last memory.** Every array here has PyTorch's NCHW *shape*, ``(N, C, H, W)``; what
differs is the order of its values in memory. A NumPy array made by ``np.zeros((N, C, H, W))``
stores each channel's ``H x W`` plane in one piece (NCHW memory). The fast operations store
their outputs *channels-last* instead: the ``C`` values of one pixel sit next to each other
(NHWC memory), and the array is a transposed view that still has the shape ``(N, C, H, W)``.
This is PyTorch's ``torch.channels_last`` memory format. Indexing, shapes and results are the
same either way; only the speed differs:

* a 1x1 convolution becomes one matrix product ``(N*H*W, C) @ (C, F)`` over the pixels, with
  no copy of its input;
* a depthwise convolution multiplies each shifted view by a vector of ``C`` weights along the
  last memory axis, where the values are contiguous, at any stride;
* batch norm's per-channel sums become column sums of an ``(N*H*W, C)`` matrix.

:func:`nhwc` gives the ``(N, H, W, C)`` view of an NCHW-shaped array, :func:`from_nhwc` goes
back, and :func:`channels_last` converts an array with NCHW memory (a copy, made once, at a
model's input). Every operation accepts either memory order.

**Padding, in column phases** (:func:`padded_column_phases`). A convolution reads the input
zero-padded. At stride 2 a kernel position reads every other column, which splits each row's
contiguous run of ``W*C`` values into short pieces. So the input is copied, with its padding,
straight into its even and its odd columns; then every kernel position reads whole contiguous
rows of one of them. At stride 1 there is a single phase: the padded input.

**Tap views** (:func:`tap_view`). The input under one kernel position ``(p, q)``, for every
output pixel at once, read from the phases: a strided view, no copy.

**Blocks** (:func:`row_blocks`). NumPy runs one operation over a whole array before the next
one starts. When several operations follow each other over a big array (the nine taps of a
depthwise convolution, the steps of batch norm), each would stream the array from main memory
and back. Done on a block of rows at a time, the block stays in the processor's cache between
the steps, and only the first read and the last write go to main memory.

**Channel sums** (:func:`channel_sums`). Every reduction of the fast operations (batch norm's
statistics and gradients, the bias and depthwise weight gradients, pooling) adds up values
per channel with this one function, accurately in float32.
"""

import numpy as np

from ...parallel import parallel_map


def nhwc(x):
    """The ``(N, H, W, C)`` view of an ``(N, C, H, W)`` array (no copy)."""
    return x.transpose(0, 2, 3, 1)


def from_nhwc(y):
    """The ``(N, C, H, W)`` view of an ``(N, H, W, C)`` array (no copy): what the operations return."""
    return y.transpose(0, 3, 1, 2)


def channels_last(x):
    """``x`` with the same shape and values, stored channels-last; ``x`` itself when it already is.

    The copy goes a block of rows at a time on the threads (a transposing copy is slow, and
    a model's input is the largest array it converts).
    """
    if is_channels_last(x):
        return x
    source = nhwc(x)
    out = np.empty(source.shape, dtype=x.dtype)

    def copy_rows(images, rows):
        out[images, rows] = source[images, rows]

    for_each_block(copy_rows, *source.shape[:2], source.shape[2] * source.shape[3])
    return from_nhwc(out)


def is_channels_last(x):
    """True when ``x`` (NCHW-shaped) is stored channels-last with no gaps."""
    return nhwc(x).flags.c_contiguous


def pixels_by_channels(x):
    """An NCHW-shaped array as the ``(N*H*W, C)`` matrix of its pixels: a view when channels-last, else a copy."""
    return np.ascontiguousarray(nhwc(x)).reshape(-1, x.shape[1])


# --- channel sums ---------------------------------------------------------------------------

# Channel sums add groups of this many values in float32, then the groups' sums in float64.
SUM_GROUP = 8


def channel_sums(a, b=None):
    """``sum a[..., c]``, or ``sum a[..., c] * b[..., c]``, over every axis but the last (the channels).

    Adding ``M`` float32 numbers one after another lets the rounding error grow with ``M``
    (up to about ``M * 6e-8`` relative), and a batch norm sums ``M = N*H*W`` values, up to
    hundreds of thousands. So the values are added in groups of ``SUM_GROUP`` along the
    second-to-last axis in float32 (an error of at most ``8 * 6e-8``), and the groups' sums
    are added in float64, then rounded once: the result is within about one float32 rounding
    of the exact sum, at the speed of a plain float32 sum (the float64 work is on 8 times
    fewer values). ``np.einsum`` multiplies and adds in one pass, without a temporary array
    for the products. ``a`` and ``b`` may be strided views (a tap view, a block of rows);
    nothing is copied. Arrays of float64 are summed in float64 throughout.
    """
    length, channels = a.shape[-2:]
    whole = length // SUM_GROUP * SUM_GROUP
    grouped = a.shape[:-2] + (whole // SUM_GROUP, SUM_GROUP, channels)  # a view: one axis split in two
    head, tail = a[..., :whole, :].reshape(grouped), a[..., whole:, :]
    if b is None:  # einsum "...gc->...c" adds the same values in the same order as head.sum(axis=-2), faster
        group_sums = np.einsum("...gc->...c", head)
    else:
        group_sums = np.einsum("...gc,...gc->...c", head, b[..., :whole, :].reshape(grouped))
        tail = tail * b[..., whole:, :]
    leading = tuple(range(a.ndim - 1))
    total = group_sums.sum(axis=leading, dtype=np.float64) + tail.sum(axis=leading, dtype=np.float64)
    return total.astype(a.dtype)


# --- padding and tap views ------------------------------------------------------------------


def padded_column_phases(xh, padding, column_stride):
    """The zero-padded ``(N, H, W, C)`` input, split by column number modulo ``column_stride``.

    ``phases[r][:, :, j] = xp[:, :, j*sw + r]``, with ``xp`` the input zero-padded by
    ``padding``. At stride 1 that is the padded input itself. At stride 2 it is its even and
    its odd columns, each a contiguous array, so that kernel column ``q`` finds the input of
    output column ``j`` at column ``j + q // sw`` of phase ``q % sw``, next to the input of
    ``j + 1``. The input is copied once, straight into the phases, a block of rows at a time on
    the threads.
    """
    (ph, pw), (n, height, width, channels) = padding, xh.shape
    phases = empty_phases(xh.shape, padding, column_stride, xh.dtype)
    places = column_places(width, pw, column_stride)
    for phase, (first, last, _) in zip(phases, places):
        phase[:, :ph] = phase[:, ph + height :] = 0  # the zero border; the inside is written next
        phase[:, :, :first] = phase[:, :, last:] = 0

    def copy_block(images, rows):
        for phase, (first, last, source) in zip(phases, places):
            phase[images, ph + rows.start : ph + rows.stop, first:last] = xh[images, rows, source::column_stride]

    for_each_block(copy_block, n, height, width * channels)
    return phases


def column_places(width, pad, column_stride):
    """Where a row's ``width`` columns go in its column phases, padded by ``pad`` columns each side.

    One ``(first, last, source)`` per phase ``r``: its columns ``first:last`` hold the input's
    columns ``source, source + sw, ...``; its other columns are zero padding.
    """
    places = []
    for r in range(column_stride):
        first = -(-(pad - r) // column_stride)  # the first column of this phase that falls inside the input
        source = first * column_stride + r - pad
        places.append((first, first + len(range(source, width, column_stride)), source))
    return places


def padded_phases_of_rows(rows, pad_above, pad_below, pad_columns, column_stride):
    """The column phases of a block of rows ``(N, R, W, C)``, zero-padded around it.

    ``pad_above`` and ``pad_below`` zero rows (a block at the top or the bottom of an image has
    the image's padding there, a block inside it none) and ``pad_columns`` zero columns each
    side. The arrays :func:`padded_column_phases` would make of an image that is just these
    rows; nothing else is copied.
    """
    n, count, width, c = rows.shape
    height, padded_width = pad_above + count + pad_below, width + 2 * pad_columns
    phases = []
    for r, (first, last, source) in enumerate(column_places(width, pad_columns, column_stride)):
        phase = np.empty((n, height, len(range(r, padded_width, column_stride)), c), dtype=rows.dtype)
        phase[:, :pad_above] = phase[:, pad_above + count :] = 0
        inside = phase[:, pad_above : pad_above + count]
        inside[:, :, :first] = inside[:, :, last:] = 0
        inside[:, :, first:last] = rows[:, :, source::column_stride]
        phases.append(phase)
    return phases


def empty_phases(nhwc_shape, padding, column_stride, dtype, zeros=False):
    """Arrays of the shapes :func:`padded_column_phases` makes, uninitialised (or zeros, to add gradients into)."""
    (ph, pw), (n, height, width, c) = padding, nhwc_shape
    padded_width = width + 2 * pw
    make = np.zeros if zeros else np.empty
    return [
        make((n, height + 2 * ph, len(range(r, padded_width, column_stride)), c), dtype)
        for r in range(column_stride)
    ]


def unpadded_columns(phases, padding):
    """The inverse of :func:`padded_column_phases`: the phases' inside, put back in column order, as a new array.

    Column ``j*sw + r`` of the padded array is column ``j`` of ``phases[r]``; the padding is
    left out. One copy, a block of rows at a time on the threads, into a contiguous
    ``(N, H, W, C)`` array that the next layer reads as its matrix of pixels without another.
    """
    (ph, pw), column_stride = padding, len(phases)
    n, padded_height, _, c = phases[0].shape
    height, width = padded_height - 2 * ph, sum(phase.shape[2] for phase in phases) - 2 * pw
    whole = np.empty((n, height, width, c), dtype=phases[0].dtype)
    places = column_places(width, pw, column_stride)

    def copy_rows(images, rows):
        for phase, (first, last, source) in zip(phases, places):
            whole[images, rows, source::column_stride] = phase[images, ph + rows.start : ph + rows.stop, first:last]

    for_each_block(copy_rows, n, height, width * c)
    return whole


def tap_view(phases, p, q, stride, out_rows, out_cols, first_row=0):
    """The input under kernel position ``(p, q)`` for ``out_rows`` output rows from ``first_row``, every output column.

    ``xp[:, p + i*sh, q + j*sw, :]`` read from the column phases: a strided view in which each
    output row's ``out_cols * C`` values are contiguous.
    """
    sh, sw = stride
    top = p + sh * first_row
    left = q // sw
    return phases[q % sw][:, top : top + sh * (out_rows - 1) + 1 : sh, left : left + out_cols]


# --- blocks ----------------------------------------------------------------------------------

# A block of 256K values is 1 MB of float32: with the one or two temporaries a step makes, it
# stays in the processor's L2 cache (2 MB a core here) between the steps, and it is big enough
# that the Python cost of a NumPy call is small next to its work.
BLOCK_VALUES = 1 << 18


def for_each_block(work, images, rows, values_per_row, block_values=BLOCK_VALUES):
    """``[work(image_slice, row_slice) for each block of row_blocks(...)]``, the blocks shared among the threads.

    The blocks depend on the shape alone (see :mod:`npmobilenet.parallel`), so the results,
    returned in the blocks' order, are the same whatever the number of threads. ``work`` must
    write only inside its own block.
    """
    return parallel_map(lambda block: work(*block), list(row_blocks(images, rows, values_per_row, block_values)))


def row_blocks(images, rows, values_per_row, block_values=BLOCK_VALUES):
    """Split the ``(images, rows)`` of an array into blocks of about ``block_values`` values.

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
