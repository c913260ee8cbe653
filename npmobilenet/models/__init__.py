"""The networks: MobileNetV2 with torchvision's module tree, and :func:`mobilenet_v2` to build one with weights."""

from .mobilenetv2 import (
    Conv2dNormActivation,
    InvertedResidual,
    MobileNetV2,
    make_divisible,
    mobilenet_v2,
    model_from_state_dict,
)

__all__ = [
    "Conv2dNormActivation", "InvertedResidual", "MobileNetV2", "make_divisible", "mobilenet_v2",
    "model_from_state_dict",
]
