"""The published weights of MobileNetV2, and where weights come from.

* :data:`WEIGHTS` lists torchvision's published MobileNetV2 weights, each a
  :class:`WeightsSpec` with its URL, hash and preprocessing, as torchvision's
  ``MobileNet_V2_Weights`` enum does; :func:`get_weights_spec` looks one up by name and
  :func:`spec_for_path` finds the one a file name belongs to.
* :func:`resolve_weights` finds weights in the order DESIGN.md gives: the ``weights=``
  argument, the ``NPMOBILENET_WEIGHTS`` environment variable, the cache
  (``$NPMOBILENET_HOME``, default ``~/.cache/npmobilenet``), then a download whose SHA-256
  is checked, converted once to ``.npz`` (:mod:`npmobilenet.io.hub`).
"""

import dataclasses
import os
import re
from pathlib import Path
from types import MappingProxyType

from ..errors import WeightsError
from ..io.any_format import load_state_dict_file
from ..io.hub import ENV_WEIGHTS, cached_weights_path, download_weights
from ..io.npz import load_npz
from ..io.torch_load import load_class_names

__all__ = [
    "DEFAULT_WEIGHTS", "ENV_WEIGHTS", "WEIGHTS", "WeightsSpec", "get_weights_spec", "resolve_weights",
    "spec_for_path",
]


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    """One published set of MobileNetV2 weights, and the preprocessing it was trained with.

    ``sha256_prefix`` is the start of the file's SHA-256, the 8 hex digits in its name (torch
    hub's convention), which is how a download is checked. ``acc1`` is the published ImageNet
    top-1 accuracy in percent. Preprocessing: resize the shorter side to ``resize_size`` with
    ``interpolation``, center-crop ``crop_size``, scale to [0, 1], then ``(x - mean) / std``.
    To fetch from somewhere else, make a copy: ``dataclasses.replace(spec, url=...)``.
    """

    name: str
    url: str
    file_name: str
    sha256_prefix: str
    acc1: float
    resize_size: int
    crop_size: int = 224
    interpolation: str = "bilinear"
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    num_classes: int = 1000
    class_names: tuple = None  # a fine-tuned checkpoint's own classes; None: ImageNet's 1000

    def __post_init__(self):
        if not re.fullmatch(r"[0-9a-f]{8,64}", self.sha256_prefix):
            raise WeightsError(f"WeightsSpec {self.name}: sha256_prefix must be 8 to 64 lowercase hex digits, got {self.sha256_prefix!r}")

    @property
    def categories(self):
        """The class names, ``categories[k]`` naming output ``k``: ``class_names``, or ImageNet's (read on first use)."""
        if self.class_names is not None:
            return list(self.class_names)
        from ..imagenet import categories

        return categories()


def _torchvision_spec(name, file_name, acc1, resize_size):
    return WeightsSpec(
        name=name,
        url=f"https://download.pytorch.org/models/{file_name}",
        file_name=file_name,
        sha256_prefix=re.search(r"-([0-9a-f]{8,})\.", file_name).group(1),
        acc1=acc1,
        resize_size=resize_size,
    )


WEIGHTS = MappingProxyType({
    "IMAGENET1K_V1": _torchvision_spec("IMAGENET1K_V1", "mobilenet_v2-b0353104.pth", 71.878, 256),
    "IMAGENET1K_V2": _torchvision_spec("IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", 72.154, 232),
})
DEFAULT_WEIGHTS = "IMAGENET1K_V1"
TORCHVISION_ENUM_PREFIX = "MOBILENET_V2_WEIGHTS."


def _registry_spec(name):
    """The spec a name means (``IMAGENET1K_V1``, ``DEFAULT``, ``MobileNet_V2_Weights.IMAGENET1K_V1``;
    any case), or None."""
    key = str(name).strip().upper()
    key = key.removeprefix(TORCHVISION_ENUM_PREFIX)
    return WEIGHTS.get(DEFAULT_WEIGHTS if key == "DEFAULT" else key)


def get_weights_spec(name):
    """The :class:`WeightsSpec` of a registry name; a spec is returned as it is.

    Accepts ``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"`` (= ``DEFAULT_WEIGHTS``) and
    torchvision's spelling ``"MobileNet_V2_Weights.IMAGENET1K_V1"``, in any case. Raises
    :class:`~npmobilenet.errors.WeightsError` listing the known names for any other name.
    """
    if isinstance(name, WeightsSpec):
        return name
    spec = _registry_spec(name)
    if spec is None:
        raise _unknown_weights_error(name)
    return spec


def _unknown_weights_error(name):
    return WeightsError(
        f"unknown weights {name!r}: expected one of the names {', '.join(WEIGHTS)} or DEFAULT "
        f"(= {DEFAULT_WEIGHTS}; torchvision's MobileNet_V2_Weights.{DEFAULT_WEIGHTS} works too), "
        f"or a path to a .pth, .pt or .npz file"
    )


def spec_for_path(path):
    """The registry entry whose SHA-256 prefix appears in the file name of ``path``, else the default.

    This is how a local file gets its preprocessing: ``mobilenet_v2-7ebf99e0.pth`` (or its
    cached ``.npz``) is IMAGENET1K_V2; a file named otherwise is assumed to want the
    default entry's (IMAGENET1K_V1: resize 256, crop 224).
    """
    name = Path(path).name
    for spec in WEIGHTS.values():
        if spec.sha256_prefix in name:
            return spec
    return WEIGHTS[DEFAULT_WEIGHTS]


def spec_for_file(path):
    """:func:`spec_for_path`, with the class names of a fine-tuned checkpoint (see :func:`npmobilenet.train.fit`) when it has them."""
    spec = spec_for_path(path)
    names = load_class_names(path)
    if names is None:
        return spec
    return dataclasses.replace(spec, name=Path(path).name, class_names=tuple(names), num_classes=len(names))


# --- where weights come from: the argument, the environment, the cache, a download -----------


def _load_registry_weights(spec, progress):
    """The state dict of a registry entry: from the cache if there, else downloaded into it."""
    path = cached_weights_path(spec)
    if not path.exists():
        return load_npz(download_weights(spec, progress=progress))
    try:
        return load_npz(path)
    except WeightsError as error:
        raise WeightsError(f"{error}. This is the cache's copy of {spec.name}: delete it to download it again") from error


def _looks_like_path(text):
    return "/" in text or os.sep in text or text.lower().endswith((".pth", ".pt", ".npz")) or os.path.exists(text)


def _resolve(weights, progress):
    """``(state_dict, spec)`` for a spec, a registry name or a path."""
    if isinstance(weights, WeightsSpec):
        return _load_registry_weights(weights, progress), weights
    if isinstance(weights, str) and _registry_spec(weights) is not None:
        spec = _registry_spec(weights)
        return _load_registry_weights(spec, progress), spec
    if isinstance(weights, os.PathLike) or (isinstance(weights, str) and _looks_like_path(weights)):
        return load_state_dict_file(weights), spec_for_file(weights)
    raise _unknown_weights_error(weights)


def resolve_weights(weights=None, *, progress=True):
    """Find the weights asked for; return ``(state_dict, spec)``.

    ``weights`` is a registry name (see :func:`get_weights_spec`), a :class:`WeightsSpec`, or
    a path (``str`` or ``os.PathLike``) to a ``.pth``, ``.pt`` or ``.npz`` file. ``None``
    means the ``NPMOBILENET_WEIGHTS`` environment variable (a name or a path), and when that
    is unset or empty, :data:`DEFAULT_WEIGHTS`. A registry entry is read from the cache
    (:func:`cached_weights_path`) when it is there, without touching the network, and
    downloaded into it otherwise (:func:`download_weights`; ``progress`` shows a progress
    line). A file is read with :func:`load_state_dict_file`, and the spec returned with it,
    for its preprocessing, is :func:`spec_for_path`'s: the entry whose hash prefix is in the
    file name, else the default entry.

    Raises :class:`~npmobilenet.errors.WeightsError` for an unknown name (listing the known
    ones), a missing or unreadable file, or a failed download (naming the URL and how to pass
    a local file instead).
    """
    if weights is None and os.environ.get(ENV_WEIGHTS):
        value = os.environ[ENV_WEIGHTS]
        try:
            return _resolve(value, progress)
        except WeightsError as error:
            raise type(error)(f"from the environment variable {ENV_WEIGHTS}={value!r}: {error}") from error
    return _resolve(DEFAULT_WEIGHTS if weights is None else weights, progress)
