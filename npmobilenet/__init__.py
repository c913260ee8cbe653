"""npmobilenet: MobileNetV2 in plain NumPy, every forward and backward pass written out by hand.

The pieces, from the bottom up:

* :mod:`npmobilenet.functional`: one forward/backward pair per operation (conv2d, depthwise
  conv2d, batch norm, ReLU/ReLU6, dropout, linear, global average pooling, cross-entropy);
* :mod:`npmobilenet.reference`: the naive loop versions of the convolutions, to compare with;
* :mod:`npmobilenet.nn`: ``Module``, ``Sequential`` and layers named as in ``torch.nn``;
* :mod:`npmobilenet.gradcheck`: numerical gradients to check any backward pass;
* :mod:`npmobilenet.errors`: the exception types.

Only NumPy is imported here (and Pillow, where images are read): never torch or matplotlib.
"""

from . import errors, functional, gradcheck, nn, reference
from .errors import BackwardError, ImageError, ShapeError, UnsafeCheckpointError, WeightsError
from .grad_mode import is_grad_enabled, no_grad

__version__ = "0.1.0"

__all__ = [
    "errors", "functional", "gradcheck", "nn", "reference",
    "BackwardError", "ImageError", "ShapeError", "UnsafeCheckpointError", "WeightsError",
    "no_grad", "is_grad_enabled",
    "__version__",
]
