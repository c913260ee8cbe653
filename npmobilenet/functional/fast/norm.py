"""Batch normalisation, per channel, in training and evaluation mode; and folding it into a convolution.

Shapes: input ``x`` is ``(N, C, H, W)``; ``gamma`` (PyTorch's ``weight``), ``beta`` (``bias``),
``running_mean`` and ``running_var`` are ``(C,)``. Each channel is normalised over the
``M = N*H*W`` values it has in the batch. The work is done on the ``(M, C)`` matrix of pixels,
a view of a channels-last input (see :mod:`npmobilenet.functional.fast.layout`): a channel is a
column, and its statistics are column sums. The output is stored channels-last.
"""

import numpy as np

from ..._checks import check_channels, check_float_array, check_same_dtype, check_shape
from ...errors import ShapeError
from .layout import channel_sums, from_nhwc, pixels_by_channels, row_slices


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Forward pass, PyTorch's ``F.batch_norm(x, running_mean, running_var, gamma, beta, training, momentum, eps)``.

    ``out = gamma * x_hat + beta`` with ``x_hat = (x - mean) / sqrt(var + eps)``, where

    * in training mode, ``mean`` and ``var`` are the batch's per-channel mean and *biased*
      variance (divided by ``M``), and the running statistics are updated in place, with
      PyTorch's meaning of ``momentum`` (the weight of the new value) and the *unbiased*
      batch variance (divided by ``M - 1``):
      ``running_mean = (1 - momentum) * running_mean + momentum * mean``,
      ``running_var = (1 - momentum) * running_var + momentum * var * M / (M - 1)``.
      Pass ``None`` for both running statistics to skip the update.
    * in evaluation mode, ``mean`` and ``var`` are the running statistics, and nothing changes.

    Returns ``out`` and the cache for :func:`batchnorm2d_backward`: the input and the two
    per-channel vectors ``mean`` and ``1 / sqrt(var + eps)``. ``x_hat`` is not kept; the
    backward pass makes it again from them, which costs less than storing another activation.
    """
    op = "batchnorm2d"
    check_float_array("input", x, op, ndim=4)
    channels = gamma.shape[0]
    check_channels(op, x, channels, f"the layer has {channels} features")
    for name, vector in [("weight", gamma), ("bias", beta), ("running_mean", running_mean), ("running_var", running_var)]:
        if vector is not None:
            check_shape(name, vector, (channels,), op)
    check_same_dtype(op, x, weight=gamma, bias=beta, running_mean=running_mean, running_var=running_var)

    rows = pixels_by_channels(x)  # (M, C)
    count = rows.shape[0]
    if training and count < 2:
        raise ShapeError(
            f"{op}: training mode needs more than one value per channel to compute a "
            f"variance, got input of shape {x.shape}; use a bigger batch or eval()"
        )
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: evaluation mode needs running_mean and running_var")

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
    for block in row_slices(count, channels):  # a cache-sized block at a time: one trip to memory
        np.multiply(rows[block], scale, out=out[block])
        out[block] += shift
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
    counts, means, squares = [], [], []
    for block in row_slices(*rows.shape):  # the block stays in the cache for its three steps
        values = rows[block]
        block_mean = channel_sums(values) / values.shape[0]
        centered = values - block_mean
        counts.append(values.shape[0])
        means.append(block_mean)
        squares.append(channel_sums(centered, centered))
    counts = np.array(counts, dtype=np.float64)[:, None]
    means, squares = np.array(means, dtype=np.float64), np.array(squares, dtype=np.float64)
    mean = (counts * means).sum(axis=0) / counts.sum()
    var = (squares.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)) / counts.sum()
    return mean.astype(rows.dtype), var.astype(rows.dtype)


def nhwc_shape(x):
    n, c, height, width = x.shape
    return n, height, width, c


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """Move the running statistics, in place, a step of size ``momentum`` toward the batch's."""
    unbiased_var = var * (count / (count - 1))
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * unbiased_var


def batchnorm2d_backward(dout, cache):
    """Backward pass of :func:`batchnorm2d_forward`: returns ``(dx, dgamma, dbeta)``.

    Sums run over the ``M = N*H*W`` values of each channel:

    * ``dbeta = sum(dout)`` and ``dgamma = sum(dout * x_hat)``, in both modes;
    * evaluation mode: mean and variance are constants, so ``dx = gamma * inv_std * dout``;
    * training mode: the mean and the variance depend on every ``x`` of the channel too. Chaining
      through them and simplifying gives the compact formula

      ``dx = gamma * inv_std / M * (M * dout - dbeta - x_hat * dgamma)``

      (the ``dbeta`` term is the path through the mean, the ``x_hat * dgamma`` term the path
      through the variance).
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
    for block in row_slices(count, rows.shape[1]):  # a cache-sized block at a time: one trip to memory
        dx_block = np.multiply(dout_rows[block], scale, out=dx[block])
        dx_block += rows[block] * slope
        dx_block += offset
    return from_nhwc(dx.reshape(nhwc_shape(x))), dgamma, dbeta


def gradient_sums(dout_rows, rows):
    """``sum_m dout[m, c]`` and ``sum_m dout[m, c] * x[m, c]`` per channel, in one sweep over the rows.

    Both sums read ``dout``; taking them a cache-sized block at a time reads it from memory
    once. The blocks' sums add up in float64.
    """
    dout_sum = np.zeros(rows.shape[1], dtype=np.float64)
    dout_dot_x = np.zeros(rows.shape[1], dtype=np.float64)
    for block in row_slices(*rows.shape):
        dout_sum += channel_sums(dout_rows[block])
        dout_dot_x += channel_sums(dout_rows[block], rows[block])
    return dout_sum.astype(rows.dtype), dout_dot_x.astype(rows.dtype)


def fold_batchnorm(w, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """The weight and bias of one convolution that computes ``batchnorm(conv(x))`` in evaluation mode.

    In evaluation mode batch norm is a fixed affine map per output channel ``f``:
    ``bn(y)[f] = s[f] * (y[f] - running_mean[f]) + beta[f]`` with
    ``s = gamma / sqrt(running_var + eps)``. A convolution ``y[f] = sum w[f] * window + b[f]``
    followed by it is again a convolution, with every filter scaled:

    ``w_folded[f] = s[f] * w[f]``, ``b_folded[f] = s[f] * (b[f] - running_mean[f]) + beta[f]``

    (``b = None`` counts as zero). One convolution then does the work of two layers, and the
    activation skips a pass over memory. Works for dense ``(F, C, KH, KW)`` and depthwise
    ``(C, 1, KH, KW)`` weights alike.
    """
    scale = gamma / np.sqrt(running_var + eps)
    w_folded = w * scale[:, None, None, None]
    b_folded = beta - running_mean * scale if b is None else (b - running_mean) * scale + beta
    return w_folded, b_folded
