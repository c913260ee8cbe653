"""npmobilenet: MobileNetV2 in plain NumPy, every forward and backward pass written out by hand.

The pieces, from the bottom up:

* :mod:`npmobilenet.functional`: one forward/backward pair per operation (conv2d, depthwise
  conv2d, batch norm, ReLU/ReLU6, dropout, linear, global average pooling, cross-entropy), each
  written three ways: ``functional.loops`` (index by index), ``functional`` itself (plain
  NumPy: start reading here) and ``functional.fast`` (what ``nn`` runs);
* :mod:`npmobilenet.nn`: ``Module``, ``Sequential`` and layers named as in ``torch.nn``;
* :mod:`npmobilenet.optim`: SGD, Adam, AdamW, RMSprop and learning-rate schedules, torch.optim's rules;
* :mod:`npmobilenet.train`: ``fit`` and ``evaluate``, checkpoints and resuming, ``finetune``;
* :mod:`npmobilenet.data`: ``ImageFolder`` and ``DataLoader`` (needs Pillow);
* :mod:`npmobilenet.models`: the network, with torchvision's module tree and keys
  (:mod:`~npmobilenet.models.mobilenetv2`), and beside it the registry of torchvision's
  ImageNet weights and where weights come from (:mod:`~npmobilenet.models.weights`);
* :mod:`npmobilenet.io`: torch checkpoints read and written without torch, ``.npz``, atomic
  writes, the download cache: one job a module;
* :mod:`npmobilenet.transforms` and :mod:`npmobilenet.imagenet`: torchvision's preprocessing
  with Pillow, and the 1000 class names;
* :mod:`npmobilenet.prediction`: ``predict("cat.jpg")``;
* :mod:`npmobilenet.gradcheck`: numerical gradients to check any backward pass;
* :mod:`npmobilenet.parallel`: how many threads the fast operations share their work among
  (``set_num_threads``, ``get_num_threads``);
* :mod:`npmobilenet.errors`: the exception types;
* :mod:`npmobilenet.cli` and :mod:`npmobilenet.bench`: the ``npmobilenet`` command and its
  benchmark against torchvision.

``import npmobilenet`` needs NumPy alone: the image code (``transforms``, ``data``,
``imagenet``, ``predict``, ``Prediction``), which needs Pillow, is imported the first time it is used
(:func:`__getattr__`). Never torch or matplotlib.
"""

import importlib

from . import errors, functional, gradcheck, io, models, nn, optim, parallel, train
from .errors import BackwardError, ImageError, ShapeError, UnsafeCheckpointError, WeightsError
from .grad_mode import is_grad_enabled, no_grad
from .io import load_npz, load_torch_checkpoint, save_npz, save_torch_checkpoint
from .models import MobileNetV2, mobilenet_v2
from .parallel import get_num_threads, set_num_threads

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it from here

# name -> (module, attribute in it, or None for the module itself): the names that need Pillow,
# imported on first use.
_IMAGE_NAMES = {
    "transforms": ("npmobilenet.transforms", None),
    "data": ("npmobilenet.data", None),
    "imagenet": ("npmobilenet.imagenet", None),
    "predict": ("npmobilenet.prediction", "predict"),
    "Prediction": ("npmobilenet.prediction", "Prediction"),
}

__all__ = [
    "data", "errors", "functional", "gradcheck", "imagenet", "io", "models", "nn", "optim", "parallel", "train",
    "transforms", "set_num_threads", "get_num_threads",
    "BackwardError", "ImageError", "ShapeError", "UnsafeCheckpointError", "WeightsError",
    "no_grad", "is_grad_enabled",
    "MobileNetV2", "mobilenet_v2",
    "Prediction", "predict",
    "load_torch_checkpoint", "save_torch_checkpoint", "load_npz", "save_npz",
    "__version__",
]


def __getattr__(name):
    """Import the image code the first time one of its names is used (PEP 562).

    ``npmobilenet.predict``, ``Prediction``, ``transforms`` and ``imagenet`` are looked up here
    only until then: the value is stored in the package, so Python finds it directly afterwards.
    """
    if name not in _IMAGE_NAMES:
        raise AttributeError(f"module 'npmobilenet' has no attribute {name!r}")
    module_name, attribute = _IMAGE_NAMES[name]
    module = _import_image_module(module_name, name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    """The names of the package, the ones imported on first use included."""
    return sorted(set(globals()) | set(_IMAGE_NAMES))


def _import_image_module(module_name, name):
    """Import ``module_name``; without Pillow, an ImportError that says to install it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        if (error.name or "").partition(".")[0] != "PIL":
            raise
        raise ImportError(
            f"npmobilenet.{name} needs Pillow to read images, and Pillow cannot be imported "
            f"({error}). Install it with: pip install Pillow. The rest of npmobilenet "
            f"(functional, nn, MobileNetV2, the weights files) needs NumPy alone.",
            name=error.name,
        ) from None
