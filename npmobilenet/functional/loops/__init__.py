"""The loop versions of the operations: every formula written index by index. Slow, and obviously right.

Each file here is the same pair as the plain version of the same name in
:mod:`npmobilenet.functional` (the same arguments, the same results), with one Python loop per
index of the formula. They are the yardstick the plain and fast versions are tested against,
and the first version a student writes. They check nothing about their inputs; use small
arrays (a few channels, a few pixels): a loop runs about a million times slower than BLAS.
"""

from .activation import relu6_backward, relu6_forward, relu_backward, relu_forward
from .conv import conv2d_backward, conv2d_forward
from .depthwise import depthwise_conv2d_backward, depthwise_conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .norm import batchnorm2d_backward, batchnorm2d_backward_graph, batchnorm2d_forward
from .pooling import global_avg_pool_backward, global_avg_pool_forward

__all__ = [
    "conv2d_forward", "conv2d_backward",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward",
    "batchnorm2d_forward", "batchnorm2d_backward", "batchnorm2d_backward_graph",
    "relu_forward", "relu_backward", "relu6_forward", "relu6_backward",
    "dropout_forward", "dropout_backward",
    "linear_forward", "linear_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
]
