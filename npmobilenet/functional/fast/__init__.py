"""Stateless forward/backward pairs, one per operation, in the CS231n style.

Every operation has a pair::

    out, cache = conv2d_forward(x, w, b, stride, padding)
    dx, dw, db = conv2d_backward(dout, cache)

The forward returns its output and a ``cache`` holding exactly what the backward needs; the
backward takes the upstream gradient ``dout = dL/dout`` and returns the gradient of the loss
with respect to each input, in the order the forward took them. A pair reads no global state
(batch norm updates the running statistics it is given, in place, as PyTorch's does). Arrays
have NCHW shapes, and every op keeps the dtype it is given. Each op accepts either memory
order and stores its output channels-last, PyTorch's ``channels_last`` memory format (see
:mod:`npmobilenet.functional.fast.layout`): same shape, same values, faster to compute with.

For inference there are also ``relu(x)`` and ``relu6(x)`` (the activation without a mask for
backward) and ``fold_batchnorm`` (the weights of one convolution that equals a convolution
followed by batch norm in eval mode).
"""

from .layout import channels_last
from .activation import (
    relu,
    relu6,
    relu6_backward,
    relu6_forward,
    relu_backward,
    relu_forward,
)
from .conv import conv2d_backward, conv2d_forward
from .depthwise import depthwise_conv2d_backward, depthwise_conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .linear import (
    global_avg_pool_backward,
    global_avg_pool_forward,
    linear_backward,
    linear_forward,
)
from .loss import (
    log_softmax,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from .norm import batchnorm2d_backward, batchnorm2d_forward, fold_batchnorm

__all__ = [
    "conv2d_forward", "conv2d_backward",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward",
    "batchnorm2d_forward", "batchnorm2d_backward", "fold_batchnorm",
    "relu", "relu6", "relu_forward", "relu_backward", "relu6_forward", "relu6_backward",
    "dropout_forward", "dropout_backward",
    "linear_forward", "linear_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
    "softmax", "log_softmax",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "channels_last",
]
