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
* In evaluation mode under ``no_grad()``, :class:`npmobilenet.nn.FoldingSequential` folds
  batch norm into the convolution before it (:func:`~npmobilenet.functional.norm.fold_batchnorm`),
  and this code does not run at all.
"""

import numpy as np

from ...parallel import parallel_map
from ..norm import check_batchnorm_arguments, fold_batchnorm, update_running_stats
from .layout import channel_sums, from_nhwc, pixels_by_channels, row_blocks

__all__ = ["batchnorm2d_forward", "batchnorm2d_backward", "fold_batchnorm"]


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Forward pass, PyTorch's ``F.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)``.

    The same arguments, modes and running-statistics update as
    :func:`npmobilenet.functional.norm.batchnorm2d_forward`. Returns ``out`` and the cache for
    :func:`batchnorm2d_backward`: the input and the two per-channel vectors ``mean`` and
    ``1 / sqrt(var + eps)``.
    """
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
    out = np.empty_like(rows)

    def output_block(block):  # a cache-sized block at a time: one trip to memory
        np.multiply(rows[block], scale, out=out[block])
        out[block] += shift

    parallel_map(output_block, blocks_of_rows(rows))
    cache = (x, mean, inv_std, gamma, training)
    return from_nhwc(out.reshape(nhwc_shape(x))), cache


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
    x, mean, inv_std, gamma, training = cache
    rows, dout_rows = pixels_by_channels(x), pixels_by_channels(dout)
    count = rows.shape[0]
    dbeta, dout_dot_x = gradient_sums(dout_rows, rows)
    # sum(dout * x_hat) = (sum(dout * x) - mean * sum(dout)) * inv_std, without making x_hat
    dgamma = (dout_dot_x - mean * dbeta) * inv_std
    scale = gamma * inv_std
    if not training:
        return from_nhwc((dout_rows * scale).reshape(nhwc_shape(x))), dgamma, dbeta
    # dx = scale * (dout - dbeta / M - x_hat * dgamma / M), grouped per channel as
    # dx = scale * dout + x * slope + offset, three passes over memory
    slope = -scale * inv_std * dgamma / count
    offset = -scale * dbeta / count - mean * slope
    dx = np.empty_like(dout_rows)

    def gradient_block(block):  # a cache-sized block at a time: one trip to memory
        dx_block = np.multiply(dout_rows[block], scale, out=dx[block])
        dx_block += rows[block] * slope
        dx_block += offset

    parallel_map(gradient_block, blocks_of_rows(rows))
    return from_nhwc(dx.reshape(nhwc_shape(x))), dgamma, dbeta


def gradient_sums(dout_rows, rows):
    """``sum_m dout[m, c]`` and ``sum_m dout[m, c] * x[m, c]`` per channel, in one sweep over the rows.

    Both sums read ``dout``; taking them a cache-sized block at a time reads it from memory
    once. The blocks' sums add up in float64.
    """
    dout_sum = np.zeros(rows.shape[1], dtype=np.float64)
    dout_dot_x = np.zeros(rows.shape[1], dtype=np.float64)
    shares = parallel_map(lambda block: (channel_sums(dout_rows[block]), channel_sums(dout_rows[block], rows[block])),
                          blocks_of_rows(rows))
    for block_sum, block_dot in shares:  # in the blocks' order, whatever the threads
        dout_sum += block_sum
        dout_dot_x += block_dot
    return dout_sum.astype(rows.dtype), dout_dot_x.astype(rows.dtype)


def blocks_of_rows(rows):
    """Slices of cache-sized blocks of an ``(M, C)`` matrix's rows (the batch's pixels, taken as one image of ``M`` rows)."""
    return [row_slice for _, row_slice in row_blocks(1, *rows.shape)]
