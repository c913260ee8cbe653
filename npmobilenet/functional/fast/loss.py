"""Softmax cross-entropy, fast: the plain version is used as it is.

It runs once per step on the ``(N, num_classes)`` logits, a tiny array next to the network's
activations, and it is already vectorised and numerically stable. :mod:`npmobilenet.nn` runs
:mod:`npmobilenet.functional.loss`.
"""

from ..loss import log_softmax, softmax, softmax_cross_entropy_backward, softmax_cross_entropy_forward

__all__ = ["log_softmax", "softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]
