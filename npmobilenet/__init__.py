"""npmobilenet: MobileNetV2 in plain NumPy, every forward and backward pass written out by hand.

The pieces, from the bottom up:

* :mod:`npmobilenet.functional`: one forward/backward pair per operation (conv2d, depthwise
  conv2d, batch norm, ReLU/ReLU6, dropout, linear, global average pooling, cross-entropy);
* :mod:`npmobilenet.nn`: ``Module``, ``Sequential`` and layers named as in ``torch.nn``;
* :mod:`npmobilenet.mobilenetv2`: the network, with torchvision's module tree and keys;
* :mod:`npmobilenet.weights`: torch checkpoints read and written without torch, ``.npz``,
  the registry of torchvision's ImageNet weights, the download cache;
* :mod:`npmobilenet.transforms` and :mod:`npmobilenet.imagenet`: torchvision's preprocessing
  with Pillow, and the 1000 class names;
* :mod:`npmobilenet.predict`: ``predict("cat.jpg")``;
* :mod:`npmobilenet.gradcheck`: numerical gradients to check any backward pass;
* :mod:`npmobilenet.errors`: the exception types.

Only NumPy and Pillow are imported here: never torch or matplotlib.
"""

from . import errors, functional, gradcheck, imagenet, nn, transforms, weights
from .errors import BackwardError, ImageError, ShapeError, UnsafeCheckpointError, WeightsError
from .grad_mode import is_grad_enabled, no_grad
from .models import MobileNetV2, mobilenet_v2
from .predict import Prediction, predict
from .weights import load_npz, load_torch_checkpoint, save_npz, save_torch_checkpoint

__version__ = "0.1.0"

__all__ = [
    "errors", "functional", "gradcheck", "imagenet", "nn", "transforms", "weights",
    "BackwardError", "ImageError", "ShapeError", "UnsafeCheckpointError", "WeightsError",
    "no_grad", "is_grad_enabled",
    "MobileNetV2", "mobilenet_v2",
    "Prediction", "predict",
    "load_torch_checkpoint", "save_torch_checkpoint", "load_npz", "save_npz",
    "__version__",
]
