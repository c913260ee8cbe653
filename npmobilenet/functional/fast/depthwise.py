"""Depthwise 2-D convolution (``groups = channels``): each channel is filtered by its own kernel.

Shapes: input ``x`` is ``(N, C, H, W)``, weight ``w`` is ``(C, 1, KH, KW)`` (PyTorch's shape for
``groups=C``), optional bias ``b`` is ``(C,)``, output is ``(N, C, OH, OW)``, stored
channels-last (see :mod:`npmobilenet.functional.fast.layout`).

There is no sum over channels, so im2col would waste its matrix product. Instead the
convolution is ``KH*KW`` shifted multiply-adds: for each kernel position ``(p, q)``, take the
strided view of the padded input under that position (no copy) and add it, times that
position's ``C`` weights, into the output. For a 3x3 kernel that is nine vectorised steps.
Channels-last memory puts the ``C`` values of a pixel side by side, so each step runs over
long contiguous stretches. At stride 2 a tap reads every other column; so the input is first
copied, with its padding, into its even and its odd columns (:func:`padded_column_phases`),
and every tap reads whole contiguous rows of one of them. The output is computed a block of
rows at a time (:func:`~npmobilenet.functional.fast.layout.row_blocks`), so that the nine steps
add into memory that stays in the processor's cache.
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
from ...errors import ShapeError
from .layout import channel_sums, from_nhwc, nhwc, row_blocks, unpad_nhwc

# The backward pass does three steps a tap (a sum for dw, a multiply and an add for dx):
# blocks of 256K values need fewer NumPy calls and still stay in the cache.
BACKWARD_BLOCK_VALUES = 1 << 18


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass, PyTorch's ``F.conv2d(x, w, b, stride, padding, groups=C)``.

    ``out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xp[n, c, i*sh + p, j*sw + q]``

    with ``xp`` the zero-padded input. Returns ``out`` and the cache for the backward pass:
    the padded input's column phases, which the backward pass reads tap by tap as the forward
    pass did.
    """
    op = "depthwise_conv2d"
    check_float_array("input", x, op, ndim=4)
    check_float_array("weight", w, op, ndim=4)
    check_same_dtype(op, x, weight=w, bias=b)
    channels = w.shape[0]
    if w.shape[1] != 1:
        raise ShapeError(f"{op}: expected a weight of shape (C, 1, KH, KW), got shape {w.shape}")
    check_channels(op, x, channels, f"depthwise weight shape {w.shape}")
    if b is not None:
        check_shape("bias", b, (channels,), op)
    kernel_size, stride, padding = w.shape[2:], pair(stride, "stride"), pair(padding, "padding")
    (oh, ow) = check_conv_geometry(op, x, kernel_size, stride, padding)

    phases = padded_column_phases(nhwc(x), padding, stride[1])
    taps = tap_weights(w, ow)
    out = np.empty((x.shape[0], oh, ow, channels), dtype=x.dtype)
    for images, rows in row_blocks(x.shape[0], oh, ow * channels):
        block = out[images, rows]
        add_taps(block, [phase[images] for phase in phases], taps, stride, rows.start)
        if b is not None:
            block += b
    cache = (phases, w, b is not None, stride, padding)
    return from_nhwc(out), cache


def padded_column_phases(xh, padding, stride_w):
    """The zero-padded ``(N, H, W, C)`` input, split by column number modulo the stride.

    ``phases[r][:, :, j] = xp[:, :, j*sw + r]``, with ``xp`` the input zero-padded by
    ``padding``. At stride 1 that is the padded input itself. At stride 2 it is its even and
    its odd columns, each a contiguous array, so that kernel column ``q`` finds the input of
    output column ``j`` at column ``j + q // sw`` of phase ``q % sw``, next to the input of
    ``j + 1``. The input is copied once, straight into the phases.
    """
    (ph, pw), (n, height, width, c) = padding, xh.shape
    padded_width = width + 2 * pw
    phases = []
    for r in range(stride_w):
        phase = np.empty((n, height + 2 * ph, len(range(r, padded_width, stride_w)), c), dtype=xh.dtype)
        first = -(-(pw - r) // stride_w)  # the first column of this phase that falls inside x
        columns = xh[:, :, first * stride_w + r - pw :: stride_w]
        last = first + columns.shape[2]
        phase[:, :ph] = phase[:, ph + height :] = 0  # the zero border; the inside is written next
        phase[:, :, :first] = phase[:, :, last:] = 0
        phase[:, ph : ph + height, first:last] = columns
        phases.append(phase)
    return phases


def phase_tap_view(phases, p, q, stride, out_rows, out_cols, first_row):
    """The input under kernel position ``(p, q)`` for output rows ``first_row ...`` and every output column.

    ``xp[:, p + i*sh, q + j*sw, :]`` read from the column phases: a strided view in which each
    output row's ``out_cols * C`` values are contiguous.
    """
    sh, sw = stride
    top = p + sh * first_row
    left = q // sw
    return phases[q % sw][:, top : top + sh * (out_rows - 1) + 1 : sh, left : left + out_cols]


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
            view = phase_tap_view(phases, p, q, stride, rows, cols, first_row)
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
    The gradient is gathered in column phases like the input's, then put back in column order.
    """
    phases, w, has_bias, stride, padding = cache
    channels, _, kh, kw = w.shape
    dout_h = np.ascontiguousarray(nhwc(dout))
    oh, ow = dout_h.shape[1:3]
    taps = tap_weights(w, ow)
    dtaps = np.zeros((kh, kw, channels), dtype=w.dtype)
    dphases = [np.zeros_like(phase) for phase in phases]
    for images, rows in row_blocks(dout_h.shape[0], oh, ow * channels, BACKWARD_BLOCK_VALUES):
        dout_block = dout_h[images, rows]
        block_phases = [phase[images] for phase in phases]
        block_dphases = [dphase[images] for dphase in dphases]
        product = np.empty_like(dout_block)
        for p in range(kh):
            for q in range(kw):
                view = phase_tap_view(block_phases, p, q, stride, dout_block.shape[1], ow, rows.start)
                dtaps[p, q] += np.einsum("nijc,nijc->c", view, dout_block)  # this block's share of dw
                np.multiply(dout_block, taps[p, q], out=product)
                phase_tap_view(block_dphases, p, q, stride, dout_block.shape[1], ow, rows.start)[...] += product
    dw = np.ascontiguousarray(dtaps.transpose(2, 0, 1))[:, None]
    db = channel_sums(dout_h.reshape(-1, channels)) if has_bias else None
    return from_nhwc(unpad_nhwc(interleave_columns(dphases), padding)), dw, db  # a view of the padded gradient


def interleave_columns(phases):
    """The inverse of :func:`padded_column_phases`, padding kept: column ``j*sw + r`` is column ``j`` of ``phases[r]``."""
    if len(phases) == 1:
        return phases[0]
    n, height, _, c = phases[0].shape
    width = sum(phase.shape[2] for phase in phases)
    whole = np.empty((n, height, width, c), dtype=phases[0].dtype)
    for r, phase in enumerate(phases):
        whole[:, :, r :: len(phases)] = phase
    return whole
