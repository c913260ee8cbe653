"""Softmax cross-entropy by loops: one image, one class at a time. Slow, and obviously right.

The same pair as :mod:`npmobilenet.functional.loss`, taking and returning the same things.
"""

import math

import numpy as np


def softmax_cross_entropy_forward(logits, targets):
    """``loss = -(1/N) * sum_n log(exp(z[n, t_n]) / sum_k exp(z[n, k]))``, with ``t_n = targets[n]``.

    Each row's largest logit is subtracted before ``exp`` (it cancels in the ratio, and keeps
    ``exp`` from overflowing).
    """
    n_images, n_classes = logits.shape
    probs = np.zeros_like(logits)
    total = 0.0
    for n in range(n_images):
        largest = max(logits[n, k] for k in range(n_classes))
        denominator = sum(math.exp(logits[n, k] - largest) for k in range(n_classes))
        for k in range(n_classes):
            probs[n, k] = math.exp(logits[n, k] - largest) / denominator
        total += (logits[n, targets[n]] - largest) - math.log(denominator)  # log softmax of the true class
    loss = -total / n_images
    return np.asarray(loss, dtype=logits.dtype), (probs, targets)


def softmax_cross_entropy_backward(dloss, cache):
    """``dlogits[n, k] = dloss * (softmax(z)[n, k] - (1 if k == t_n else 0)) / N``, value by value."""
    probs, targets = cache
    n_images, n_classes = probs.shape
    dlogits = np.zeros_like(probs)
    for n in range(n_images):
        for k in range(n_classes):
            one_hot = 1.0 if k == targets[n] else 0.0
            dlogits[n, k] = dloss * (probs[n, k] - one_hot) / n_images
    return dlogits
