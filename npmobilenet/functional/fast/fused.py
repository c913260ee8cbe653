"""The depthwise convolution and the 1x1 convolution after it, in one pass, for inference.

In an inverted residual block the depthwise convolution's output (expanded: 6 times the
block's channels) goes straight into the 1x1 *projection* that shrinks it again. Layer by
layer, that wide output is written to main memory whole, then read back whole by the
projection's matrix product. Here it never leaves the processor's cache: for each block of
output rows (:func:`~npmobilenet.functional.fast.layout.row_blocks`) the depthwise taps, its
bias and ReLU6 fill a small array, which is multiplied by the projection's weight at once.
Each value is computed as the two layers compute it, in the same order, so the result is bit
for bit theirs: this file saves one write and one read of the widest array in the block.

Only for inference (no cache is kept): training needs the depthwise output for the backward
pass anyway. :class:`npmobilenet.nn.FoldingSequential` runs it under ``no_grad()`` in eval
mode, with both batch norms folded into the convolutions.
"""

import numpy as np

from ..._checks import check_conv_arguments
from ...errors import ShapeError
from .depthwise import add_taps, tap_weights
from .layout import for_each_block, from_nhwc, nhwc, padded_column_phases


def depthwise_pointwise_inference(x, dw_weight, dw_bias, stride, padding, activation, pw_weight, pw_bias=None):
    """``conv1x1(activation(depthwise_conv2d(x)))``: the depthwise output of each block goes into the 1x1 product from cache.

    ``dw_weight`` is ``(C, 1, KH, KW)`` and ``pw_weight`` is ``(F, C, 1, 1)``; ``activation``
    is None or changes a block in place
    (:func:`~npmobilenet.functional.fast.activation.relu6_in_place`). Returns the
    ``(N, F, OH, OW)`` output, channels-last.
    """
    stride, padding, (oh, ow) = check_conv_arguments("depthwise_conv2d", x, dw_weight, dw_bias, stride, padding,
                                                     depthwise=True)
    n, channels = x.shape[:2]
    f = pw_weight.shape[0]
    if pw_weight.shape[1:] != (channels, 1, 1) or pw_weight.dtype != x.dtype:
        raise ShapeError(f"depthwise_pointwise: expected a 1x1 weight of shape ({f}, {channels}, 1, 1) and dtype "
                         f"{x.dtype}, got shape {pw_weight.shape} and dtype {pw_weight.dtype}")
    phases = padded_column_phases(nhwc(x), padding, stride[1])
    taps = tap_weights(dw_weight, ow)
    pw_columns = pw_weight.reshape(f, channels).T  # (C, F)
    out = np.empty((n, oh, ow, f), dtype=x.dtype)

    def output_block(images, rows):
        middle = np.empty((images.stop - images.start, rows.stop - rows.start, ow, channels), dtype=x.dtype)
        add_taps(middle, [phase[images] for phase in phases], taps, stride, rows.start)
        if dw_bias is not None:
            middle += dw_bias
        if activation is not None:
            activation(middle)
        # a block is one image's rows or whole images: its output rows are one contiguous matrix
        target = out[images, rows].reshape(-1, f)
        np.matmul(middle.reshape(-1, channels), pw_columns, out=target)
        if pw_bias is not None:
            target += pw_bias

    for_each_block(output_block, n, oh, ow * channels)
    return from_nhwc(out)
