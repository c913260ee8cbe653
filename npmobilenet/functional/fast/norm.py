"""Batch normalisation, fast: what :mod:`npmobilenet.nn` runs.

It computes what :mod:`npmobilenet.functional.norm` computes (``x_hat = (x - mean) / sqrt(var +
eps)``, ``out = gamma * x_hat + beta``; the simplified backward formula), with these
differences, each for speed or memory:

* **Channels-last memory** (see :mod:`npmobilenet.functional.fast.layout`): the work is done on
  the ``(M, C)`` matrix of pixels (``M = N*H*W``), a view of the input; a channel is a column,
  and its statistics are column sums.
* **No x_hat is made or kept.** The output is one multiply-add per value,
  ``x * scale + shift`` with per-channel ``scale = gamma * inv_std`` and
  ``shift = beta - mean * scale``, and so is ``dx``. The cache holds the input and two
  vectors, not another activation.
* **One sweep over memory per pass**, a cache-sized block of rows at a time
  (:func:`~npmobilenet.functional.fast.layout.row_blocks`): the mean and variance of each
  block combine exactly (Chan's formula); the two gradient sums come from one reading of
  ``dout``.
* **The blocks are shared among threads** (:mod:`npmobilenet.parallel`); their sums are
  added in the blocks' order, so the result does not depend on the number of threads.
* **Accurate sums** (:func:`~npmobilenet.functional.fast.layout.channel_sums`), accumulated
  across blocks in float64: float32 keeps its digits however many values a channel has.
* **The activation after it in the same sweep**, in training
  (:func:`batchnorm2d_activation_forward`, :func:`batchnorm2d_activation_backward`): ReLU6's
  mask and clipping are applied to each block of the output while it is in cache, and in the
  backward pass ``dout * mask`` is made a block at a time where it is first read, and kept in
  the block of ``dx`` that the second sweep turns into the gradient.
* In evaluation mode under ``no_grad()``, :class:`npmobilenet.nn.FoldingSequential` folds
  batch norm into the convolution before it (:func:`~npmobilenet.functional.norm.fold_batchnorm`),
  and this code does not run at all.
"""

import numpy as np

from ...parallel import parallel_map
from ..norm import check_batchnorm_arguments, fold_batchnorm, update_running_stats
from .layout import channel_sums, from_nhwc, pixels_by_channels, row_blocks

__all__ = [
    "batchnorm2d_activation_backward", "batchnorm2d_activation_forward", "batchnorm2d_backward", "batchnorm2d_forward",
    "fold_batchnorm",
]


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Forward pass, PyTorch's ``F.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)``.

    The same arguments, modes and running-statistics update as
    :func:`npmobilenet.functional.norm.batchnorm2d_forward`. Returns ``out`` and the cache for
    :func:`batchnorm2d_backward`: the input and the two per-channel vectors ``mean`` and
    ``1 / sqrt(var + eps)``.
    """
    rows, mean, inv_std, scale, shift = normalization(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    out = np.empty_like(rows)

    def output_block(block):  # a cache-sized block at a time: one trip to memory
        np.multiply(rows[block], scale, out=out[block])
        out[block] += shift

    parallel_map(output_block, blocks_of_rows(rows))
    cache = (x, mean, inv_std, gamma, training)
    return from_nhwc(out.reshape(nhwc_shape(x))), cache


def batchnorm2d_activation_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5,
                                   upper=6.0):
    """``relu6(batchnorm(x))`` (``upper=6``) or ``relu(batchnorm(x))`` (``upper=None``), in one sweep over memory.

    Returns ``out``, the batch norm's cache (as :func:`batchnorm2d_forward`'s) and the
    activation's (its mask, as :func:`~npmobilenet.functional.fast.activation.relu6_forward`'s):
    each block of the normalised output gets its mask and its clipping while it is in cache,
    instead of being written whole and read back by the activation. Every value is the two
    layers' own, bit for bit. :class:`npmobilenet.nn.FoldingSequential` runs it in training.
    """
    rows, mean, inv_std, scale, shift = normalization(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    out, mask = np.empty_like(rows), np.empty(rows.shape, dtype=bool)

    def output_block(block):
        normalised, slope_is_one = out[block], mask[block]
        np.multiply(rows[block], scale, out=normalised)
        normalised += shift
        np.greater(normalised, 0, out=slope_is_one)
        if upper is None:
            np.maximum(normalised, 0, out=normalised)
        else:
            slope_is_one &= normalised < upper
            np.clip(normalised, 0, upper, out=normalised)

    parallel_map(output_block, blocks_of_rows(rows))
    shape = nhwc_shape(x)
    return from_nhwc(out.reshape(shape)), (x, mean, inv_std, gamma, training), from_nhwc(mask.reshape(shape))


def normalization(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """The ``(M, C)`` matrix of ``x`` and the per-channel ``mean``, ``inv_std``, ``scale``, ``shift`` (running statistics updated in training)."""
    count = check_batchnorm_arguments(x, gamma, beta, running_mean, running_var, training)
    rows = pixels_by_channels(x)  # (M, C)
    if training:
        mean, var = mean_and_variance(rows)
        if running_mean is not None and running_var is not None:
            update_running_stats(running_mean, running_var, mean, var, count, momentum)
    else:
        mean, var = running_mean.copy(), running_var  # a copy: the running mean may change later
    inv_std = 1.0 / np.sqrt(var + eps)
    # gamma * (x - mean) * inv_std + beta is one multiply-add per value: x * scale + shift
    scale = gamma * inv_std
    shift = beta - mean * scale
    return rows, mean, inv_std, scale, shift


def mean_and_variance(rows):
    """Per-channel mean and biased variance of an ``(M, C)`` matrix, in one sweep over its rows.

    Each cache-sized block of rows gives its count ``n_k``, mean ``m_k`` and sum of squares
    about its own mean ``q_k = sum (x - m_k)**2`` (centring first keeps float32 accurate when a
    channel's mean is large next to its spread). The blocks then combine exactly (Chan, Golub
    and LeVeque's formula), in float64:

    ``mean = sum_k n_k m_k / M``, ``var = (sum_k q_k + sum_k n_k (m_k - mean)**2) / M``.
    """

    def block_statistics(block):  # the block stays in the cache for its three steps
        values = rows[block]
        block_mean = channel_sums(values) / values.shape[0]
        centered = values - block_mean
        return values.shape[0], block_mean, channel_sums(centered, centered)

    counts, means, squares = zip(*parallel_map(block_statistics, blocks_of_rows(rows)))
    counts = np.array(counts, dtype=np.float64)[:, None]
    means, squares = np.array(means, dtype=np.float64), np.array(squares, dtype=np.float64)
    mean = (counts * means).sum(axis=0) / counts.sum()
    var = (squares.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)) / counts.sum()
    return mean.astype(rows.dtype), var.astype(rows.dtype)


def nhwc_shape(x):
    """The ``(N, H, W, C)`` shape of an NCHW-shaped array."""
    n, c, height, width = x.shape
    return n, height, width, c


def batchnorm2d_backward(dout, cache):
    """Backward pass of :func:`batchnorm2d_forward`: returns ``(dx, dgamma, dbeta)``.

    The simplified formula of :func:`npmobilenet.functional.norm.batchnorm2d_backward`,
    ``dx = gamma * inv_std / M * (M * dout - dbeta - x_hat * dgamma)`` in training mode and
    ``dx = gamma * inv_std * dout`` in evaluation mode, rearranged so that no ``x_hat`` is made.
    """
    return batchnorm2d_activation_backward(dout, None, cache)


def batchnorm2d_activation_backward(dout, mask, cache):
    """Backward pass of :func:`batchnorm2d_activation_forward`: ``(dx, dgamma, dbeta)`` from the activation's ``dout``.

    The activation's backward is ``dout * mask``; here it is made a block at a time, in cache,
    while the batch norm's first sweep reads the block for its two sums, and written into the
    block of ``dx``, where the second sweep turns it into the gradient in place. ``mask=None`` is the batch norm alone (:func:`batchnorm2d_backward`).
    """
    x, mean, inv_std, gamma, training = cache
    rows, dout_rows = pixels_by_channels(x), pixels_by_channels(dout)
    mask_rows = None if mask is None else pixels_by_channels(mask)
    dx = np.empty_like(dout_rows)

    def upstream(block):
        """The batch norm's upstream gradient on a block, ``dout * mask``, kept in ``dx`` for the second sweep."""
        if mask_rows is None:
            return dout_rows[block]
        return np.multiply(dout_rows[block], mask_rows[block], out=dx[block])

    count = rows.shape[0]
    dbeta, dout_dot_x = gradient_sums(upstream, rows)
    # sum(dout * x_hat) = (sum(dout * x) - mean * sum(dout)) * inv_std, without making x_hat
    dgamma = (dout_dot_x - mean * dbeta) * inv_std
    scale = gamma * inv_std
    if training:
        # dx = scale * (dout - dbeta / M - x_hat * dgamma / M), grouped per channel as
        # dx = scale * dout + x * slope + offset, three passes over memory
        slope = -scale * inv_std * dgamma / count
        offset = -scale * dbeta / count - mean * slope
    upstream_in_dx = mask_rows is not None  # the first sweep left dout * mask in dx

    def gradient_block(block):  # a cache-sized block at a time: one trip to memory
        dx_block = np.multiply(dx[block] if upstream_in_dx else dout_rows[block], scale, out=dx[block])
        if training:
            dx_block += rows[block] * slope
            dx_block += offset

    parallel_map(gradient_block, blocks_of_rows(rows))
    return from_nhwc(dx.reshape(nhwc_shape(x))), dgamma, dbeta


def gradient_sums(upstream, rows):
    """``sum_m dout[m, c]`` and ``sum_m dout[m, c] * x[m, c]`` per channel, in one sweep over the rows.

    ``upstream(block)`` gives ``dout`` on a block of rows. Both sums read it; taking them a
    cache-sized block at a time reads it from memory once. The blocks' sums add up in float64.
    """
    dout_sum = np.zeros(rows.shape[1], dtype=np.float64)
    dout_dot_x = np.zeros(rows.shape[1], dtype=np.float64)

    def block_sums(block):
        dout_block = upstream(block)
        return channel_sums(dout_block), channel_sums(dout_block, rows[block])

    for block_sum, block_dot in parallel_map(block_sums, blocks_of_rows(rows)):  # in the blocks' order
        dout_sum += block_sum
        dout_dot_x += block_dot
    return dout_sum.astype(rows.dtype), dout_dot_x.astype(rows.dtype)


def blocks_of_rows(rows):
    """Slices of cache-sized blocks of an ``(M, C)`` matrix's rows (the batch's pixels, taken as one image of ``M`` rows)."""
    return [row_slice for _, row_slice in row_blocks(1, *rows.shape)]
