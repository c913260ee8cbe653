"""Softmax cross-entropy by loops: one image, one class at a time. Slow, and obviously right.

The same pair as :mod:`npmobilenet.functional.loss`, taking and returning the same things.
"""

import math

import numpy as np


def softmax_cross_entropy_forward(logits, targets, label_smoothing=0.0):
    """``loss = -(1/N) * sum_n sum_k q[n, k] * log(exp(z[n, k]) / sum_j exp(z[n, j]))``, by loops.

    ``q[n, k] = (1 - eps) * (1 if k == targets[n] else 0) + eps / K`` with ``eps =
    label_smoothing``. Each row's largest logit is subtracted before ``exp`` (it cancels in the
    ratio, and keeps ``exp`` from overflowing).
    """
    n_images, n_classes = logits.shape
    probs, q = np.zeros_like(logits), np.zeros_like(logits)
    total = 0.0
    for n in range(n_images):
        largest = max(logits[n, k] for k in range(n_classes))
        denominator = sum(math.exp(logits[n, k] - largest) for k in range(n_classes))
        for k in range(n_classes):
            probs[n, k] = math.exp(logits[n, k] - largest) / denominator
            q[n, k] = (1 - label_smoothing) * (1.0 if k == targets[n] else 0.0) + label_smoothing / n_classes
            log_prob = (logits[n, k] - largest) - math.log(denominator)
            total += q[n, k] * log_prob
    loss = -total / n_images
    return np.asarray(loss, dtype=logits.dtype), (probs, q)


def softmax_cross_entropy_backward(dloss, cache):
    """``dlogits[n, k] = dloss * (softmax(z)[n, k] - q[n, k]) / N``, value by value."""
    probs, q = cache
    n_images, n_classes = probs.shape
    dlogits = np.zeros_like(probs)
    for n in range(n_images):
        for k in range(n_classes):
            dlogits[n, k] = dloss * (probs[n, k] - q[n, k]) / n_images
    return dlogits
