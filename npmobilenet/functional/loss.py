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


def softmax_cross_entropy_forward(logits, targets):
    """Mean cross-entropy loss, PyTorch's ``F.cross_entropy(logits, targets)``.

    ``loss = -(1/N) * sum_n log softmax(logits[n])[targets[n]]``

    ``logits`` is ``(N, num_classes)`` float, ``targets`` is ``(N,)`` integer class indices.
    Returns the loss (a 0-d array of the logits' dtype) and the cache for the backward pass.
    """
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
    log_probs = log_softmax(logits, axis=1)
    rows = np.arange(logits.shape[0])
    loss = -log_probs[rows, targets].mean()
    return np.asarray(loss, dtype=logits.dtype), (np.exp(log_probs), targets)


def softmax_cross_entropy_backward(dloss, cache):
    """``dlogits = dloss * (softmax(logits) - onehot(targets)) / N``."""
    probs, targets = cache
    dlogits = probs.copy()
    dlogits[np.arange(len(targets)), targets] -= 1
    dlogits *= np.asarray(dloss, dtype=probs.dtype) / len(targets)
    return dlogits
