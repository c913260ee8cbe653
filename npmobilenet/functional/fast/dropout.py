"""Dropout, fast: the plain version is already as fast as it gets, so it is used as it is.

Dropout runs once in MobileNetV2, on the ``(N, 1280)`` features before the classifier: one
random draw and one multiplication over a small array. There is nothing to gain from another
memory order or from blocks, so :mod:`npmobilenet.nn` runs :mod:`npmobilenet.functional.dropout`.
"""

from ..dropout import dropout_backward, dropout_forward

__all__ = ["dropout_forward", "dropout_backward"]
