"""An inverted residual block's three convolutions with fewer passes over memory, for inference.

In an inverted residual block the 1x1 *expansion* makes an array 6 times as wide as the
block's input, the depthwise convolution reads it (zero-padded) and makes another as wide, and
the 1x1 *projection* shrinks that again. Layer by layer, each wide array is written to main
memory whole, then read back whole by the next layer. Here neither leaves the processor's
cache. For each block of output rows (:func:`~npmobilenet.functional.fast.layout.row_blocks`):

1. the expansion of just the input rows the block's depthwise taps read, with its bias and
   ReLU6, padded into small column phases of the block's own
   (:func:`inverted_residual_inference`);
2. the depthwise taps, bias and ReLU6 on them, into a small array (:func:`project_rows`);
3. that array times the projection's weight, into the block's rows of the output.

Each value is computed as the layers compute it, in the same order, so the result is theirs
bit for bit, as long as BLAS sums a block's matrix product as it sums the whole layer's:
OpenBLAS has a kernel of its own for small products, so a block of very few rows can differ
from the layer in the last bit. The blocks depend on the shapes alone, so the bits are the
same on any number of threads. The first block of MobileNetV2 has no expansion: it runs steps
2 and 3, each block padding its own rows of the input (:func:`depthwise_pointwise_inference`).

Only for inference (no cache is kept): training needs the wide arrays for the backward pass
anyway. :class:`npmobilenet.nn.FoldingSequential` runs these under ``no_grad()`` in eval mode,
with the batch norms folded into the convolutions.
"""

import numpy as np

from ..._checks import check_conv_arguments
from ...errors import ShapeError
from .depthwise import output_rows, tap_weights
from .layout import BLOCK_VALUES as LAYOUT_BLOCK_VALUES
from .layout import for_each_block, from_nhwc, nhwc, padded_phases_of_rows

# The blocks of depthwise_pointwise_by_blocks: 2 MB of float32, twice the other operations'
# blocks. Measured on 2 cores, the inverted residual blocks of MobileNetV2 at batch 1, 8 and
# 32: 6-16% faster than at 1 MB, where the rows computed twice at block borders cost more.
BLOCK_VALUES = 2 * LAYOUT_BLOCK_VALUES


def depthwise_pointwise_inference(x, dw_weight, dw_bias, stride, padding, activation, pw_weight, pw_bias=None):
    """``conv1x1(activation(depthwise_conv2d(x)))``: the depthwise output of each block goes into the 1x1 product from cache.

    Each block of output rows pads the input rows it reads into column phases of its own
    (:func:`depthwise_pointwise_by_blocks`): the input is never copied whole into its padding.

    ``dw_weight`` is ``(C, 1, KH, KW)`` and ``pw_weight`` is ``(F, C, 1, 1)``; ``activation``
    is None or changes a block in place
    (:func:`~npmobilenet.functional.fast.activation.relu6_in_place`). Returns the
    ``(N, F, OH, OW)`` output, channels-last.
    """
    stride, padding, out_size = check_conv_arguments("depthwise_conv2d", x, dw_weight, dw_bias, stride, padding,
                                                     depthwise=True)
    check_projection(pw_weight, x.shape[1], x.dtype)
    pixels = nhwc(x)
    return depthwise_pointwise_by_blocks(lambda images, rows: pixels[images, rows], x.shape, stride, padding, out_size,
                                         dw_weight, dw_bias, activation, pw_weight, pw_bias)


def inverted_residual_inference(x, expand_weight, expand_bias, expand_activation, dw_weight, dw_bias, stride, padding,
                                activation, pw_weight, pw_bias=None):
    """``conv1x1(activation(depthwise(expand_activation(conv1x1(x)))))``: an inverted residual block without its sum.

    The expanded array (``expand_weight`` is ``(E, C, 1, 1)``: ``E`` is 6 times ``C``) is never
    made whole. Each block of output rows computes the expansion of just the input rows its
    depthwise taps read (:func:`expanded_rows_of_block`), pads them into column phases of its
    own (:func:`~npmobilenet.functional.fast.layout.padded_phases_of_rows`), and runs the
    depthwise convolution and the projection on them while they are in cache
    (:func:`project_rows`). Neighbouring blocks share one or two input rows (the kernel's
    reach over their border), which each computes: a few percent more multiply-adds in the
    expansion, for no trip of the wide array to main memory and back. A row of the expansion
    is the same matrix product whichever block computes it, so the result is the three
    layers' (bit for bit but for BLAS's order in a small product: see the module's docstring).
    """
    check_conv_arguments("conv2d", x, expand_weight, expand_bias, 1, 0)
    if expand_weight.shape[2:] != (1, 1):
        raise ShapeError(f"inverted_residual: expected a 1x1 expansion weight, got shape {expand_weight.shape}")
    (n, channels, height, width), hidden = x.shape, expand_weight.shape[0]
    expanded_stand_in = np.broadcast_to(np.zeros((), x.dtype), (n, hidden, height, width))  # its shape, no memory
    stride, padding, (oh, ow) = check_conv_arguments("depthwise_conv2d", expanded_stand_in, dw_weight, dw_bias, stride,
                                                     padding, depthwise=True)
    check_projection(pw_weight, hidden, x.dtype)
    pixels = nhwc(x)
    expansion = (expand_weight.reshape(hidden, channels).T, expand_bias, expand_activation)
    return depthwise_pointwise_by_blocks(lambda images, rows: expanded_rows_of_block(pixels[images, rows], *expansion),
                                         expanded_stand_in.shape, stride, padding, (oh, ow), dw_weight, dw_bias,
                                         activation, pw_weight, pw_bias)


def depthwise_pointwise_by_blocks(input_rows, input_shape, stride, padding, out_size, dw_weight, dw_bias, activation,
                                  pw_weight, pw_bias):
    """The depthwise convolution and the projection, a block of output rows at a time, each from its own padded input rows.

    ``input_rows(images, rows)`` gives rows of the ``(N, H, W, C)`` input of the depthwise
    convolution: a view of an array, or rows computed just now (the expansion). Each block of
    output rows asks for just the input rows its taps read, pads them into column phases of
    its own (:func:`~npmobilenet.functional.fast.layout.padded_phases_of_rows`) and runs
    :func:`project_rows` on them while they are in cache.
    """
    (n, channels, height, width), (oh, ow) = input_shape, out_size
    (sh, sw), (ph, pw), kh = stride, padding, dw_weight.shape[2]
    projection = (tap_weights(dw_weight, ow), dw_bias, activation, pw_weight.reshape(-1, channels).T, pw_bias)
    out = np.empty((n, oh, ow, pw_weight.shape[0]), dtype=pw_weight.dtype)  # the input's dtype (check_projection)

    def output_block(images, rows):
        top, bottom = rows.start * sh, (rows.stop - 1) * sh + kh  # the padded input rows the taps read
        first, stop = max(0, top - ph), min(height, bottom - ph)  # those of them inside the image
        phases = padded_phases_of_rows(input_rows(images, slice(first, stop)), first + ph - top, bottom - ph - stop,
                                       pw, sw)
        project_rows(out[images, rows], phases, stride, *projection)

    # a block's values: its padded input rows and its depthwise output, per output row
    for_each_block(output_block, n, oh, ((width + 2 * pw) * sh + ow) * channels, BLOCK_VALUES)
    return from_nhwc(out)


def expanded_rows_of_block(rows, expand_columns, expand_bias, expand_activation):
    """The 1x1 expansion of a block of input rows ``(N, R, W, C)``: ``activation(rows @ W.T + b)``, ``(N, R, W, E)``.

    A block is one image's rows or whole images: its pixels are one ``(N*R*W, C)`` matrix.
    """
    expanded = np.matmul(rows.reshape(-1, rows.shape[3]), expand_columns)
    if expand_bias is not None:
        expanded += expand_bias
    if expand_activation is not None:
        expand_activation(expanded)
    return expanded.reshape(*rows.shape[:3], expand_columns.shape[1])


def project_rows(target, phases, stride, taps, dw_bias, activation, pw_columns, pw_bias):
    """``target = activation(depthwise rows) @ W.T + b``: a block of depthwise output rows, then its projection, from cache.

    ``target`` is the block's ``(N, R, OW, F)`` output and ``phases`` the column phases of the
    padded input rows its taps read. A block is one image's rows or whole images: its output
    rows are one contiguous matrix.
    """
    middle = np.empty((*target.shape[:3], pw_columns.shape[0]), dtype=target.dtype)
    output_rows(middle, phases, slice(None), slice(0, target.shape[1]), taps, stride, dw_bias, activation)
    target = target.reshape(-1, pw_columns.shape[1])
    np.matmul(middle.reshape(-1, pw_columns.shape[0]), pw_columns, out=target)
    if pw_bias is not None:
        target += pw_bias


def check_projection(pw_weight, channels, dtype):
    """The projection's weight must be ``(F, channels, 1, 1)`` of the input's dtype."""
    f = pw_weight.shape[0] if np.ndim(pw_weight) == 4 else "F"
    if np.ndim(pw_weight) != 4 or pw_weight.shape[1:] != (channels, 1, 1) or pw_weight.dtype != dtype:
        raise ShapeError(f"depthwise_pointwise: expected a 1x1 weight of shape ({f}, {channels}, 1, 1) and dtype "
                         f"{dtype}, got shape {np.shape(pw_weight)} and dtype {getattr(pw_weight, 'dtype', None)}")

