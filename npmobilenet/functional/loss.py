"""Softmax and the softmax cross-entropy loss, numerically stable for large logits."""

import numpy as np

from .._checks import check_float_array
from ..errors import ShapeError


def log_softmax(logits, axis=-1):
    """``log(softmax(logits))`` computed as ``z - log(sum(exp(z)))`` with ``z = logits - max(logits)``.

    Subtracting the maximum changes nothing mathematically (it cancels in the ratio) and keeps
    ``exp`` from overflowing: the largest exponent is ``exp(0) = 1``.
    """
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """``softmax(z)_k = exp(z_k) / sum_j exp(z_j)``, computed stably (see :func:`log_softmax`)."""
    return np.exp(log_softmax(logits, axis=axis))


def softmax_cross_entropy_forward(logits, targets, label_smoothing=0.0):
    """Mean cross-entropy loss, PyTorch's ``F.cross_entropy(logits, targets, label_smoothing=...)``.

    ``loss = -(1/N) * sum_n sum_k q[n, k] * log softmax(logits[n])[k]``

    where the target distribution ``q`` puts ``1 - label_smoothing`` on the true class
    ``targets[n]`` and spreads ``label_smoothing`` evenly over all ``K`` classes:
    ``q[n, k] = (1 - eps) * [k == targets[n]] + eps / K``. With ``eps = 0`` (the default) this
    is ``-(1/N) * sum_n log softmax(logits[n])[targets[n]]``. Smoothing keeps the network
    from pushing one logit toward infinity to reach a probability of exactly 1.

    ``logits`` is ``(N, num_classes)`` float, ``targets`` is ``(N,)`` integer class indices.
    Returns the loss (a 0-d array of the logits' dtype) and the cache for the backward pass.
    """
    check_cross_entropy_arguments(logits, targets, label_smoothing)
    targets = np.asarray(targets)
    log_probs = log_softmax(logits, axis=1)
    target_distribution = smoothed_targets(targets, logits.shape[1], label_smoothing, logits.dtype)
    loss = -(target_distribution * log_probs).sum(axis=1).mean()
    return np.asarray(loss, dtype=logits.dtype), (np.exp(log_probs), target_distribution)


def softmax_cross_entropy_backward(dloss, cache):
    """``dlogits = dloss * (softmax(logits) - q) / N``, with ``q`` the target distribution (one-hot without smoothing)."""
    probs, target_distribution = cache
    return (probs - target_distribution) * (np.asarray(dloss, dtype=probs.dtype) / len(probs))


def smoothed_targets(targets, num_classes, label_smoothing, dtype):
    """The ``(N, K)`` target distribution: ``1 - eps`` on each true class, plus ``eps / K`` everywhere."""
    distribution = np.full((len(targets), num_classes), label_smoothing / num_classes, dtype=dtype)
    distribution[np.arange(len(targets)), targets] += 1 - label_smoothing
    return distribution


def check_cross_entropy_arguments(logits, targets, label_smoothing):
    """Check the logits, the class indices and the smoothing, as every version of the loss does."""
    op = "softmax_cross_entropy"
    check_float_array("logits", logits, op, ndim=2)
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu" or targets.shape != logits.shape[:1]:
        raise ShapeError(
            f"{op}: expected targets of {logits.shape[0]} integer class indices, shape "
            f"({logits.shape[0]},), got shape {targets.shape} and dtype {targets.dtype}"
        )
    num_classes = logits.shape[1]
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ShapeError(
            f"{op}: expected class indices in [0, {num_classes - 1}], "
            f"got values from {targets.min()} to {targets.max()}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: expected label_smoothing between 0 and 1, got {label_smoothing}")
