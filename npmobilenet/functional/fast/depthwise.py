"""Depthwise 2-D convolution (``groups = channels``), fast: what :mod:`npmobilenet.nn` runs.

It computes what :mod:`npmobilenet.functional.depthwise` computes (one shifted multiply-add
per kernel position, over strided views), with these differences, each for speed:

* **Channels-last memory** (see :mod:`npmobilenet.functional.fast.layout`): a pixel's ``C``
  values are side by side, so a tap's multiply-add runs over long contiguous stretches
  instead of short rows of ``OW`` values per channel.
* **Column phases at stride 2**: the input is copied once, with its padding, into its even
  and its odd columns (:func:`~npmobilenet.functional.fast.layout.padded_column_phases`), so
  every tap reads whole contiguous rows. The backward pass reuses these phases as its cache.
* **Weights repeated along the row** (:func:`tap_weights`), so NumPy multiplies flat runs of
  ``OW*C`` values.
* **Cache-sized blocks** (:func:`~npmobilenet.functional.fast.layout.row_blocks`): the nine
  taps add into a block of output rows that stays in the processor's cache.
* **One temporary**, reused by every tap, instead of a new array per multiplication.
* **The weight and bias gradients** are accurate channel sums
  (:func:`~npmobilenet.functional.fast.layout.channel_sums`), added up across blocks in float64.
* **The blocks are shared among threads** (:mod:`npmobilenet.parallel`). In the forward pass
  every block writes its own output rows. In the backward pass neighbouring blocks add into
  the input rows between them, so the blocks go in two waves, every other one at a time
  (:func:`apart`), and their ``dw`` shares are added in the blocks' order: the same bits on
  any number of threads.
* **For inference, the activation in the same pass** (:func:`depthwise_conv2d_inference`):
  ReLU6 is applied to each block of output rows while the block is still in cache.
"""

import numpy as np

from ..._checks import check_conv_arguments
from ...parallel import parallel_map
from .layout import (
    channel_sums,
    for_each_block,
    from_nhwc,
    nhwc,
    padded_column_phases,
    row_blocks,
    tap_view,
    unpadded_columns,
)


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass, PyTorch's ``F.conv2d(x, w, b, stride, padding, groups=C)``, as :func:`npmobilenet.functional.depthwise.depthwise_conv2d_forward`.

    ``out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    Returns ``out`` and the cache for the backward pass: the padded input's column phases,
    which the backward pass reads tap by tap as the forward pass did.
    """
    stride, padding, out_size = check_conv_arguments("depthwise_conv2d", x, w, b, stride, padding, depthwise=True)
    out, phases = output_and_phases(x, w, b, stride, padding, out_size)
    return out, (phases, w, b is not None, stride, padding)


def depthwise_conv2d_inference(x, w, b=None, stride=1, padding=0, activation=None):
    """``activation(depthwise_conv2d(x, w, b))`` for inference: the output alone, no cache.

    Each block of output rows gets ``activation`` (None, or a function that changes a block
    in place, such as :func:`~npmobilenet.functional.fast.activation.relu6_in_place`) right
    after its taps and bias, while it is still in the processor's cache.
    """
    stride, padding, out_size = check_conv_arguments("depthwise_conv2d", x, w, b, stride, padding, depthwise=True)
    return output_and_phases(x, w, b, stride, padding, out_size, activation)[0]


def output_and_phases(x, w, b, stride, padding, out_size, activation=None):
    """The output (blocks of rows shared among the threads) and the padded input's column phases."""
    (n, channels), (oh, ow) = x.shape[:2], out_size
    phases = padded_column_phases(nhwc(x), padding, stride[1])
    taps = tap_weights(w, ow)
    out = np.empty((n, oh, ow, channels), dtype=x.dtype)

    for_each_block(lambda images, rows: output_rows(out[images, rows], phases, images, rows, taps, stride, b,
                                                    activation), n, oh, ow * channels)
    return from_nhwc(out), phases


def output_rows(block, phases, images, rows, taps, stride, b=None, activation=None):
    """One block of output rows, in cache: the taps (:func:`add_taps`), then ``+ b`` and ``activation`` if given."""
    add_taps(block, [phase[images] for phase in phases], taps, stride, rows.start)
    if b is not None:
        block += b
    if activation is not None:
        activation(block)


def tap_weights(w, out_cols):
    """The ``(C, 1, KH, KW)`` weight as ``(KH, KW, OW, C)``: ``taps[p, q]`` holds kernel position
    ``(p, q)``'s ``C`` weights once for every output column.

    The repetition is there for speed alone. A row of output pixels is ``OW * C`` contiguous
    values, and so is a row of a tap view; with a weight row of the same length, NumPy
    multiplies the three as flat runs of ``OW * C`` values, instead of ``OW`` short runs of ``C``.
    """
    taps = w[:, 0].transpose(1, 2, 0)  # (KH, KW, C)
    return np.ascontiguousarray(np.broadcast_to(taps[:, :, None, :], (*taps.shape[:2], out_cols, taps.shape[2])))


def add_taps(block, phases, taps, stride, first_row):
    """``block = sum_{p, q} taps[p, q] * (input under kernel position (p, q))`` for a block of output rows.

    Two passes a tap, a multiply into a temporary and an add, over a block small enough to
    stay in the processor's cache.
    """
    rows, cols = block.shape[1:3]
    product = np.empty_like(block)  # one temporary, reused by every tap
    for p in range(taps.shape[0]):
        for q in range(taps.shape[1]):
            view = tap_view(phases, p, q, stride, rows, cols, first_row)
            if p == 0 and q == 0:
                np.multiply(view, taps[p, q], out=block)
            else:
                np.multiply(view, taps[p, q], out=product)
                block += product


def depthwise_conv2d_backward(dout, cache):
    """Backward pass of :func:`depthwise_conv2d_forward`: returns ``(dx, dw, db)``.

    Each forward step ``out += w[c, p, q] * view_pq`` has two gradients, taken tap by tap:

    * ``dw[c, 0, p, q] = sum_{n, i, j} dout[n, c, i, j] * view_pq[n, c, i, j]``;
    * ``dxp[view_pq] += w[c, 0, p, q] * dout``: the upstream gradient flows back into the same
      strided slice it was read from. Overlapping windows add up over the ``KH*KW`` steps.

    ``db[c] = sum_{n, i, j} dout[n, c, i, j]``; ``db`` is None without bias. The work goes a
    block of output rows at a time, as in the forward pass; the blocks' sums for ``dw`` add up.
    The gradient is gathered in column phases like the input's, then put back in column order
    without its padding, contiguous (:func:`~npmobilenet.functional.fast.layout.unpadded_columns`).
    """
    phases, w, has_bias, stride, padding = cache
    channels, _, kh, kw = w.shape
    dout_h = np.ascontiguousarray(nhwc(dout))
    n, oh, ow = dout_h.shape[:3]
    taps = tap_weights(w, ow)
    dphases = [np.zeros_like(phase) for phase in phases]

    def gradient_block(block):
        """This block's share of dw, and its gradient added into the input rows it read."""
        images, rows = block
        dout_block = dout_h[images, rows]
        block_phases = [phase[images] for phase in phases]
        block_dphases = [dphase[images] for dphase in dphases]
        product = np.empty_like(dout_block)
        dtaps = np.empty((kh, kw, channels), dtype=np.float64)
        for p in range(kh):
            for q in range(kw):
                view = tap_view(block_phases, p, q, stride, dout_block.shape[1], ow, rows.start)
                dtaps[p, q] = channel_sums(view, dout_block)
                np.multiply(dout_block, taps[p, q], out=product)
                tap_view(block_dphases, p, q, stride, dout_block.shape[1], ow, rows.start)[...] += product
        return dtaps

    blocks = list(row_blocks(n, oh, ow * channels))
    shares = [None] * len(blocks)
    for wave in apart(blocks, kh, stride[0]):  # blocks of a wave write to rows no other block of it writes to
        for k, share in zip(wave, parallel_map(gradient_block, [blocks[k] for k in wave])):
            shares[k] = share
    dtaps = np.zeros((kh, kw, channels), dtype=np.float64)  # the blocks' sums add up in float64, in order
    for share in shares:
        dtaps += share
    dw = np.ascontiguousarray(dtaps.astype(w.dtype).transpose(2, 0, 1))[:, None]
    db = channel_sums(dout_h) if has_bias else None
    return from_nhwc(unpadded_columns(dphases, padding)), dw, db



def apart(blocks, kernel_rows, row_stride):
    """The indices of ``blocks`` in waves whose blocks' input rows do not overlap.

    A block of ``k`` output rows reads (and its gradient writes) ``(k - 1) * stride + KH``
    input rows, so neighbouring blocks of one image share the rows between them. Every other
    block is apart from the next but one when ``KH <= (k + 1) * stride``: then the even blocks
    form one wave and the odd ones the next. Otherwise the blocks go one at a time.
    """
    rows_per_block = min(rows.stop - rows.start for _, rows in blocks)
    if len(blocks) > 1 and kernel_rows > (rows_per_block + 1) * row_stride:
        return [[k] for k in range(len(blocks))]
    return [list(range(0, len(blocks), 2)), list(range(1, len(blocks), 2))]
