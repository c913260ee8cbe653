"""The fast versions of the operations: what :mod:`npmobilenet.nn` runs.

Each file computes what the plain version of the same name in :mod:`npmobilenet.functional`
computes, and its docstring lists only what differs and why that is faster: channels-last
memory, column phases, cache-sized blocks, accurate channel sums, batch norm folded into the
convolution for inference. The speed layer they share is :mod:`npmobilenet.functional.fast.layout`.
For inference only, the ``*_inference`` functions apply a layer's activation in the same pass
and :mod:`npmobilenet.functional.fast.fused` runs an inverted residual block's three
convolutions with fewer passes over memory.
Where the plain version is already as fast as it gets (dropout, linear, the loss), the fast
file says so and uses it as it is.
"""

from .activation import (
    relu, relu6, relu6_backward, relu6_forward, relu6_in_place, relu_backward, relu_forward, relu_in_place,
)
from .conv import conv2d_backward, conv2d_forward, conv2d_inference
from .depthwise import depthwise_conv2d_backward, depthwise_conv2d_forward, depthwise_conv2d_inference
from .dropout import dropout_backward, dropout_forward
from .fused import depthwise_pointwise_inference, inverted_residual_inference
from .layout import channels_last
from .linear import linear_backward, linear_forward
from .loss import log_softmax, softmax, softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .norm import (
    batchnorm2d_activation_backward, batchnorm2d_activation_forward, batchnorm2d_backward, batchnorm2d_forward,
    fold_batchnorm,
)
from .pooling import global_avg_pool_backward, global_avg_pool_forward

__all__ = [
    "conv2d_forward", "conv2d_backward", "conv2d_inference",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward", "depthwise_conv2d_inference",
    "depthwise_pointwise_inference", "inverted_residual_inference",
    "batchnorm2d_forward", "batchnorm2d_backward", "fold_batchnorm",
    "batchnorm2d_activation_forward", "batchnorm2d_activation_backward",
    "relu", "relu6", "relu_forward", "relu_backward", "relu6_forward", "relu6_backward",
    "relu_in_place", "relu6_in_place",
    "dropout_forward", "dropout_backward",
    "linear_forward", "linear_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
    "softmax", "log_softmax",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "channels_last",
]
