"""Batch normalisation by loops: each channel's statistics, then each value, one at a time. Slow, and obviously right.

The same pair as :mod:`npmobilenet.functional.norm`, taking and returning the same things.
A channel ``c`` has ``M = N*H*W`` values ``x[n, c, i, j]``; the loops below walk over them with
``np.ndindex(N, H, W)``, which yields every ``(n, i, j)`` in turn. The backward pass comes in
the two forms CS231n teaches: :func:`batchnorm2d_backward_graph`, one node of the computation
graph at a time, and :func:`batchnorm2d_backward`, the simplified formula.
"""

import math

import numpy as np

from ..norm import update_running_stats


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """``out = gamma * (x - mean) / sqrt(var + eps) + beta`` per channel, by loops.

    In training mode ``mean`` and ``var`` (biased: divided by ``M``) come from the batch, and the
    running statistics move toward them (unbiased variance); in evaluation mode they are the
    running statistics.
    """
    n_images, n_channels, height, width = x.shape
    count = n_images * height * width
    mean, var = np.zeros(n_channels, dtype=x.dtype), np.zeros(n_channels, dtype=x.dtype)
    for c in range(n_channels):
        if training:
            total = 0.0
            for n, i, j in np.ndindex(n_images, height, width):
                total += x[n, c, i, j]
            mean[c] = total / count
            squares = 0.0
            for n, i, j in np.ndindex(n_images, height, width):
                squares += (x[n, c, i, j] - mean[c]) ** 2
            var[c] = squares / count
        else:
            mean[c], var[c] = running_mean[c], running_var[c]
    if training and running_mean is not None and running_var is not None:
        update_running_stats(running_mean, running_var, mean, var, count, momentum)
    out = np.zeros_like(x)
    for c in range(n_channels):
        for n, i, j in np.ndindex(n_images, height, width):
            x_hat = (x[n, c, i, j] - mean[c]) / math.sqrt(var[c] + eps)
            out[n, c, i, j] = gamma[c] * x_hat + beta[c]
    return out, (x, mean, var, eps, gamma, training)


def batchnorm2d_backward(dout, cache):
    """The simplified formula, value by value: ``dx = gamma / sqrt(var + eps) / M * (M * dout - dbeta - x_hat * dgamma)``.

    ``dbeta = sum(dout)`` and ``dgamma = sum(dout * x_hat)`` over the channel's values; in
    evaluation mode ``dx = gamma / sqrt(var + eps) * dout``.
    """
    x, mean, var, eps, gamma, training = cache
    n_images, n_channels, height, width = x.shape
    count = n_images * height * width
    dx = np.zeros_like(x)
    dgamma, dbeta = np.zeros_like(gamma), np.zeros_like(gamma)
    for c in range(n_channels):
        inv_std = 1.0 / math.sqrt(var[c] + eps)
        for n, i, j in np.ndindex(n_images, height, width):
            x_hat = (x[n, c, i, j] - mean[c]) * inv_std
            dbeta[c] += dout[n, c, i, j]
            dgamma[c] += dout[n, c, i, j] * x_hat
        for n, i, j in np.ndindex(n_images, height, width):
            if training:
                x_hat = (x[n, c, i, j] - mean[c]) * inv_std
                dx[n, c, i, j] = gamma[c] * inv_std / count * (count * dout[n, c, i, j] - dbeta[c] - x_hat * dgamma[c])
            else:
                dx[n, c, i, j] = gamma[c] * inv_std * dout[n, c, i, j]
    return dx, dgamma, dbeta


def batchnorm2d_backward_graph(dout, cache):
    """One node of the computation graph at a time, each value by a loop (training mode; see below for eval).

    Forward, per channel::

        mu = sum(x) / M        xmu = x - mu          sq = xmu ** 2
        var = sum(sq) / M      std = sqrt(var + eps) inv_std = 1 / std
        x_hat = xmu * inv_std  out = gamma * x_hat + beta

    Backward, from the last node to the first, each node turning the gradient of its output
    into gradients of its inputs; ``xmu`` and ``x`` are used twice, so they add two gradients.
    In evaluation mode mean and variance are constants and this is :func:`batchnorm2d_backward`.
    """
    x, mean, var, eps, gamma, training = cache
    if not training:
        return batchnorm2d_backward(dout, cache)
    n_images, n_channels, height, width = x.shape
    count = n_images * height * width
    pixels = list(np.ndindex(n_images, height, width))
    dx = np.zeros_like(x)
    dgamma, dbeta = np.zeros_like(gamma), np.zeros_like(gamma)
    for c in range(n_channels):
        std = math.sqrt(var[c] + eps)
        inv_std = 1.0 / std
        xmu = {pixel: x[pixel[0], c, pixel[1], pixel[2]] - mean[c] for pixel in pixels}
        # out = gamma * x_hat + beta
        dx_hat = {}
        for n, i, j in pixels:
            dbeta[c] += dout[n, c, i, j]
            dgamma[c] += dout[n, c, i, j] * xmu[n, i, j] * inv_std
            dx_hat[n, i, j] = dout[n, c, i, j] * gamma[c]
        # x_hat = xmu * inv_std
        dinv_std = sum(dx_hat[pixel] * xmu[pixel] for pixel in pixels)
        dxmu = {pixel: dx_hat[pixel] * inv_std for pixel in pixels}
        # inv_std = 1 / std; std = sqrt(var + eps)
        dstd = -dinv_std / std**2
        dvar = 0.5 * dstd / std
        # var = sum(sq) / M; sq = xmu ** 2: the second path into xmu
        for pixel in pixels:
            dxmu[pixel] += 2 * xmu[pixel] * dvar / count
        # xmu = x - mu; mu = sum(x) / M: the second path into x
        dmu = -sum(dxmu.values())
        for n, i, j in pixels:
            dx[n, c, i, j] = dxmu[n, i, j] + dmu / count
    return dx, dgamma, dbeta
