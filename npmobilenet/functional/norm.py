"""Batch normalisation of each channel, in training and evaluation mode, the plain way; and folding it into a convolution.

Shapes: input ``x`` is ``(N, C, H, W)``; ``gamma`` (PyTorch's ``weight``), ``beta``
(``bias``), ``running_mean`` and ``running_var`` are ``(C,)``. Each channel is normalised over
the ``M = N*H*W`` values it has in the batch: the sums run over the axes ``(0, 2, 3)``.

The backward pass comes in two forms, as CS231n teaches it:
:func:`batchnorm2d_backward_graph` walks back through the computation graph one node at a
time; :func:`batchnorm2d_backward` uses the formula those steps simplify to.
"""

import numpy as np

from .._checks import check_channels, check_float_array, check_same_dtype, check_shape
from ..errors import ShapeError

CHANNEL_AXES = (0, 2, 3)  # every axis but the channels: a channel's statistics sum over these


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

    Returns ``out`` and the cache for the backward pass.
    """
    count = check_batchnorm_arguments(x, gamma, beta, running_mean, running_var, training)
    if training:
        mean, var = x.mean(axis=CHANNEL_AXES), x.var(axis=CHANNEL_AXES)
        if running_mean is not None and running_var is not None:
            update_running_stats(running_mean, running_var, mean, var, count, momentum)
    else:
        mean, var = running_mean.copy(), running_var.copy()  # copies: the running statistics may change later
    x_hat = (x - channels(mean)) / channels(np.sqrt(var + eps))
    out = channels(gamma) * x_hat + channels(beta)
    return out, (x, x_hat, mean, var, eps, gamma, training)


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """Move the running statistics, in place, a step of size ``momentum`` toward the batch's (variance unbiased)."""
    unbiased_var = var * (count / (count - 1))
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * unbiased_var


def batchnorm2d_backward(dout, cache):
    """Backward pass of :func:`batchnorm2d_forward` by the simplified formula: returns ``(dx, dgamma, dbeta)``.

    Sums run over the ``M`` values of each channel:

    * ``dbeta = sum(dout)`` and ``dgamma = sum(dout * x_hat)``, in both modes;
    * evaluation mode: mean and variance are constants, so ``dx = gamma / sqrt(var + eps) * dout``;
    * training mode: the mean and the variance depend on every ``x`` of the channel too. Follow
      the graph (:func:`batchnorm2d_backward_graph`), collect the terms, and it all simplifies to

      ``dx = gamma / sqrt(var + eps) / M * (M * dout - dbeta - x_hat * dgamma)``

      (the ``dbeta`` term is the path through the mean, the ``x_hat * dgamma`` term the path
      through the variance).
    """
    x, x_hat, mean, var, eps, gamma, training = cache
    count = x.size // x.shape[1]
    dbeta = dout.sum(axis=CHANNEL_AXES)
    dgamma = (dout * x_hat).sum(axis=CHANNEL_AXES)
    scale = channels(gamma / np.sqrt(var + eps))
    if not training:
        return scale * dout, dgamma, dbeta
    dx = scale / count * (count * dout - channels(dbeta) - x_hat * channels(dgamma))
    return dx, dgamma, dbeta


def batchnorm2d_backward_graph(dout, cache):
    """Backward pass of :func:`batchnorm2d_forward`, one node of the computation graph at a time.

    The training-mode forward pass, as a graph of small steps (per channel; ``M`` values)::

        mu = mean(x)           xmu = x - mu          sq = xmu ** 2
        var = mean(sq)         std = sqrt(var + eps) inv_std = 1 / std
        x_hat = xmu * inv_std  out = gamma * x_hat + beta

    Going back, each step turns the gradient of its output into the gradients of its inputs
    (the chain rule), and a node used twice (``xmu`` feeds ``sq`` and ``x_hat``; ``x`` feeds
    ``mu`` and ``xmu``) adds the gradients of both paths. The result equals
    :func:`batchnorm2d_backward`'s formula. In evaluation mode mean and variance are
    constants: the graph is the affine map alone, and the two forms are the same.
    """
    x, x_hat, mean, var, eps, gamma, training = cache
    if not training:
        return batchnorm2d_backward(dout, cache)
    count = x.size // x.shape[1]
    xmu = x - channels(mean)
    std = np.sqrt(var + eps)
    inv_std = 1.0 / std
    # out = gamma * x_hat + beta
    dbeta = dout.sum(axis=CHANNEL_AXES)
    dgamma = (dout * x_hat).sum(axis=CHANNEL_AXES)
    dx_hat = dout * channels(gamma)
    # x_hat = xmu * inv_std: both factors get a gradient
    dinv_std = (dx_hat * xmu).sum(axis=CHANNEL_AXES)
    dxmu = dx_hat * channels(inv_std)
    # inv_std = 1 / std, std = sqrt(var + eps)
    dstd = -dinv_std / std**2
    dvar = 0.5 * dstd / std
    # var = mean(sq): every sq gets 1/M of dvar; sq = xmu ** 2
    dsq = np.broadcast_to(channels(dvar / count), x.shape)
    dxmu = dxmu + 2 * xmu * dsq  # the second path into xmu
    # xmu = x - mu: x gets dxmu, mu gets -sum(dxmu); mu = mean(x): every x gets 1/M of dmu
    dmu = -dxmu.sum(axis=CHANNEL_AXES)
    dx = dxmu + channels(dmu / count)
    return dx, dgamma, dbeta


def fold_batchnorm(w, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """The weight and bias of one convolution that computes ``batchnorm(conv(x))`` in evaluation mode.

    In evaluation mode batch norm is a fixed affine map per output channel ``f``:
    ``bn(y)[f] = s[f] * (y[f] - running_mean[f]) + beta[f]`` with
    ``s = gamma / sqrt(running_var + eps)``. A convolution ``y[f] = sum w[f] * window + b[f]``
    followed by it is again a convolution, with every filter scaled:

    ``w_folded[f] = s[f] * w[f]``, ``b_folded[f] = s[f] * (b[f] - running_mean[f]) + beta[f]``

    (``b = None`` counts as zero). One convolution then does the work of two layers. Works for
    dense ``(F, C, KH, KW)`` and depthwise ``(C, 1, KH, KW)`` weights alike.
    """
    scale = gamma / np.sqrt(running_var + eps)
    w_folded = w * scale[:, None, None, None]
    b_folded = beta - running_mean * scale if b is None else (b - running_mean) * scale + beta
    return w_folded, b_folded


def channels(vector):
    """A ``(C,)`` vector shaped ``(1, C, 1, 1)``, so that it acts on each channel of an NCHW array."""
    return vector[None, :, None, None]


def check_batchnorm_arguments(x, gamma, beta, running_mean, running_var, training):
    """Check the arguments of a batch norm forward pass (every version runs this); returns ``M``, the values per channel."""
    op = "batchnorm2d"
    check_float_array("input", x, op, ndim=4)
    check_channels(op, x, gamma.shape[0], f"the layer has {gamma.shape[0]} features")
    vectors = {"weight": gamma, "bias": beta, "running_mean": running_mean, "running_var": running_var}
    for name, vector in vectors.items():
        if vector is not None:
            check_shape(name, vector, gamma.shape, op)
    check_same_dtype(op, x, **vectors)
    count = x.size // x.shape[1]
    if training and count < 2:
        raise ShapeError(
            f"{op}: training mode needs more than one value per channel to compute a "
            f"variance, got input of shape {x.shape}; use a bigger batch or eval()"
        )
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: evaluation mode needs running_mean and running_var")
    return count
