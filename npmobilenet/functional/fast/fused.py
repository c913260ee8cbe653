"""An inverted residual block's three convolutions with fewer passes over memory, for inference.

In an inverted residual block the depthwise convolution's output (expanded: 6 times the
block's channels) goes straight into the 1x1 *projection* that shrinks it again. Layer by
layer, that wide output is written to main memory whole, then read back whole by the
projection's matrix product. Here it never leaves the processor's cache: for each block of
output rows (:func:`~npmobilenet.functional.fast.layout.row_blocks`) the depthwise taps, its
bias and ReLU6 fill a small array, which is multiplied by the projection's weight at once.
Each value is computed as the two layers compute it, in the same order, so the result is bit
for bit theirs: this file saves one write and one read of the widest array in the block.

Before them, the 1x1 *expansion* writes its output a block at a time straight into the padded
column phases the depthwise convolution reads (:func:`inverted_residual_inference`), instead
of writing it whole and copying it again into its zero padding.

Only for inference (no cache is kept): training needs the depthwise output for the backward
pass anyway. :class:`npmobilenet.nn.FoldingSequential` runs it under ``no_grad()`` in eval
mode, with both batch norms folded into the convolutions.
"""

import numpy as np

from ..._checks import check_conv_arguments
from ...errors import ShapeError
from .depthwise import output_rows, tap_weights
from .layout import for_each_block, from_nhwc, nhwc, padded_column_phases, phases_from_blocks


def depthwise_pointwise_inference(x, dw_weight, dw_bias, stride, padding, activation, pw_weight, pw_bias=None):
    """``conv1x1(activation(depthwise_conv2d(x)))``: the depthwise output of each block goes into the 1x1 product from cache.

    ``dw_weight`` is ``(C, 1, KH, KW)`` and ``pw_weight`` is ``(F, C, 1, 1)``; ``activation``
    is None or changes a block in place
    (:func:`~npmobilenet.functional.fast.activation.relu6_in_place`). Returns the
    ``(N, F, OH, OW)`` output, channels-last.
    """
    stride, padding, out_size = check_conv_arguments("depthwise_conv2d", x, dw_weight, dw_bias, stride, padding,
                                                     depthwise=True)
    check_projection(pw_weight, x.shape[1], x.dtype)
    phases = padded_column_phases(nhwc(x), padding, stride[1])
    return depthwise_pointwise_from_phases(phases, out_size, dw_weight, dw_bias, stride, activation, pw_weight, pw_bias)


def inverted_residual_inference(x, expand_weight, expand_bias, expand_activation, dw_weight, dw_bias, stride, padding,
                                activation, pw_weight, pw_bias=None):
    """``conv1x1(activation(depthwise(expand_activation(conv1x1(x)))))``: an inverted residual block without its sum.

    The expansion (``expand_weight``, ``(E, C, 1, 1)``) goes a block of rows at a time, and
    each block, with its bias and activation, is copied from cache straight into the padded
    column phases the depthwise convolution reads
    (:func:`~npmobilenet.functional.fast.layout.phases_from_blocks`): the expanded array is
    written once, already padded, instead of written, then read and copied into its padding.
    The depthwise convolution and the projection follow as in
    :func:`depthwise_pointwise_inference`.
    """
    check_conv_arguments("conv2d", x, expand_weight, expand_bias, 1, 0)
    if expand_weight.shape[2:] != (1, 1):
        raise ShapeError(f"inverted_residual: expected a 1x1 expansion weight, got shape {expand_weight.shape}")
    (n, channels, height, width), hidden = x.shape, expand_weight.shape[0]
    expanded_stand_in = np.broadcast_to(np.zeros((), x.dtype), (n, hidden, height, width))  # its shape, no memory
    stride, padding, out_size = check_conv_arguments("depthwise_conv2d", expanded_stand_in, dw_weight, dw_bias, stride,
                                                     padding, depthwise=True)
    check_projection(pw_weight, hidden, x.dtype)
    pixels = nhwc(x)
    expand_columns = expand_weight.reshape(hidden, channels).T  # (C, E)

    def expanded_rows(images, rows):
        block = pixels[images, rows]  # a block is one image's rows or whole images: one matrix of pixels
        expanded = np.matmul(block.reshape(-1, channels), expand_columns)
        if expand_bias is not None:
            expanded += expand_bias
        if expand_activation is not None:
            expand_activation(expanded)
        return expanded.reshape(*block.shape[:3], hidden)

    phases = phases_from_blocks((n, height, width, hidden), padding, stride[1], x.dtype, expanded_rows)
    return depthwise_pointwise_from_phases(phases, out_size, dw_weight, dw_bias, stride, activation, pw_weight, pw_bias)


def depthwise_pointwise_from_phases(phases, out_size, dw_weight, dw_bias, stride, activation, pw_weight, pw_bias):
    """The depthwise convolution (from the padded input's column phases) and the projection, a block of rows at a time."""
    (n, channels), (oh, ow), f = (phases[0].shape[0], phases[0].shape[3]), out_size, pw_weight.shape[0]
    taps = tap_weights(dw_weight, ow)
    pw_columns = pw_weight.reshape(f, channels).T  # (C, F)
    out = np.empty((n, oh, ow, f), dtype=phases[0].dtype)

    def output_block(images, rows):
        middle = np.empty((images.stop - images.start, rows.stop - rows.start, ow, channels), dtype=out.dtype)
        output_rows(middle, phases, images, rows, taps, stride, dw_bias, activation)
        # a block is one image's rows or whole images: its output rows are one contiguous matrix
        target = out[images, rows].reshape(-1, f)
        np.matmul(middle.reshape(-1, channels), pw_columns, out=target)
        if pw_bias is not None:
            target += pw_bias

    for_each_block(output_block, n, oh, ow * channels)
    return from_nhwc(out)


def check_projection(pw_weight, channels, dtype):
    """The projection's weight must be ``(F, channels, 1, 1)`` of the input's dtype."""
    f = pw_weight.shape[0] if np.ndim(pw_weight) == 4 else "F"
    if np.ndim(pw_weight) != 4 or pw_weight.shape[1:] != (channels, 1, 1) or pw_weight.dtype != dtype:
        raise ShapeError(f"depthwise_pointwise: expected a 1x1 weight of shape ({f}, {channels}, 1, 1) and dtype "
                         f"{dtype}, got shape {np.shape(pw_weight)} and dtype {getattr(pw_weight, 'dtype', None)}")

