"""Stateless forward/backward pairs, one per operation, in the CS231n style, each written three ways.

Every operation has a pair::

    out, cache = conv2d_forward(x, w, b, stride, padding)
    dx, dw, db = conv2d_backward(dout, cache)

The forward returns its output and a ``cache`` holding what the backward needs; the backward
takes the upstream gradient ``dout = dL/dout`` and returns the gradient of the loss with
respect to each input, in the order the forward took them. A pair reads no global state
(batch norm updates the running statistics it is given, in place, as PyTorch's does). Arrays
have NCHW shapes, and every op keeps the dtype it is given.

Each operation is written three ways, in files of the same name::

    functional/loops/x.py   the formula index by index: slow, obviously right (the yardstick)
    functional/x.py         plain vectorised NumPy, about as long as the formula (start here)
    functional/fast/x.py    channels-last memory, blocks, folding: what ``nn`` runs

for ``x`` in ``conv`` (conv2d), ``depthwise``, ``norm`` (batch norm), ``activation`` (ReLU,
ReLU6), ``dropout``, ``linear``, ``pooling`` (global average pooling) and ``loss`` (softmax
cross-entropy). The three take the same arguments and give the same results (the tests check
all three against one another and against PyTorch). This package's own names are the plain
versions; ``functional.loops`` and ``functional.fast`` hold the other two under the same
names. :mod:`npmobilenet.nn` runs the fast ones. A cache belongs to the version that made
it: pass it to the backward of the same version (each keeps what its own backward needs).
"""

from . import fast, loops
from .activation import relu6_backward, relu6_forward, relu_backward, relu_forward
from .conv import conv2d_backward, conv2d_forward
from .depthwise import depthwise_conv2d_backward, depthwise_conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .loss import log_softmax, softmax, softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .norm import batchnorm2d_backward, batchnorm2d_backward_graph, batchnorm2d_forward, fold_batchnorm
from .pooling import global_avg_pool_backward, global_avg_pool_forward

__all__ = [
    "fast", "loops",
    "conv2d_forward", "conv2d_backward",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward",
    "batchnorm2d_forward", "batchnorm2d_backward", "batchnorm2d_backward_graph", "fold_batchnorm",
    "relu_forward", "relu_backward", "relu6_forward", "relu6_backward",
    "dropout_forward", "dropout_backward",
    "linear_forward", "linear_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
    "softmax", "log_softmax",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
]
