"""Batch normalisation over NCHW arrays, per channel, in training and evaluation mode.

Shapes: input ``x`` is ``(N, C, H, W)``; ``gamma`` (PyTorch's ``weight``), ``beta`` (``bias``),
``running_mean`` and ``running_var`` are ``(C,)``. Each channel is normalised over the
``M = N*H*W`` values it has in the batch.
"""

import numpy as np

from .._checks import check_channels, check_float_array, check_same_dtype, check_shape
from ..errors import ShapeError


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

    Returns ``out`` and the cache for :func:`batchnorm2d_backward`.
    """
    op = "batchnorm2d"
    check_float_array("input", x, op, ndim=4)
    channels = gamma.shape[0]
    check_channels(op, x, channels, f"the layer has {channels} features")
    for name, vector in [("weight", gamma), ("bias", beta), ("running_mean", running_mean), ("running_var", running_var)]:
        if vector is not None:
            check_shape(name, vector, (channels,), op)
    check_same_dtype(op, x, weight=gamma, bias=beta, running_mean=running_mean, running_var=running_var)

    if training:
        count = x.shape[0] * x.shape[2] * x.shape[3]
        if count < 2:
            raise ShapeError(
                f"{op}: training mode needs more than one value per channel to compute a "
                f"variance, got input of shape {x.shape}; use a bigger batch or eval()"
            )
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
        if running_mean is not None and running_var is not None:
            update_running_stats(running_mean, running_var, mean, var, count, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: evaluation mode needs running_mean and running_var")
        mean, var = running_mean, running_var

    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean[:, None, None]) * inv_std[:, None, None]
    out = gamma[:, None, None] * x_hat + beta[:, None, None]
    cache = (x_hat, gamma, inv_std, training)
    return out, cache


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
    x_hat, gamma, inv_std, training = cache
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = np.einsum("nchw,nchw->c", dout, x_hat)  # sum over all but the channel axis
    scale = gamma * inv_std
    if not training:
        return scale[:, None, None] * dout, dgamma, dbeta
    count = dout.shape[0] * dout.shape[2] * dout.shape[3]
    dx = (scale / count)[:, None, None] * (
        count * dout - dbeta[:, None, None] - x_hat * dgamma[:, None, None]
    )
    return dx, dgamma, dbeta
