"""Assignment 2, depthwise convolution and batch norm: the graded checks.

The notebook's functions, graded against :mod:`npmobilenet.functional` and by finite
differences, on inputs the notebook does not show:

* ``depthwise_conv2d_forward(x, w, b, stride, padding) -> (out, cache)`` and
  ``depthwise_conv2d_backward(dout, cache) -> (dx, dw, db)``;
* ``batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
  eps=1e-5) -> (out, cache)``, the running statistics updated in place in training mode;
* ``batchnorm2d_backward(dout, cache) -> (dx, dgamma, dbeta)`` by the simplified formula, and
  ``batchnorm2d_backward_graph(dout, cache)``, node by node.

Batch-norm inputs are never the easy ones: channels with their own mean and spread, running
statistics that are not the defaults (mean 0, variance 1 would hide a mistake), a momentum
that is not the default, a random upstream gradient (an all-ones ``dout`` gives batch norm a
zero gradient, right or wrong).
"""

import functools

import numpy as np

from .. import functional as F
from .checks import Check, CheckFailed, Task
from .compare import expect_close, forward_result, on
from .pairs import (Pair, backward_matches, both, convolution_checks, flipped_kernel, forward_matches,
                    copies, gradients_match_numerically)

ID = "02-depthwise-batchnorm"
TITLE = "Depthwise convolution and batch norm, forward and backward"

# --- Task 1: depthwise convolution -----------------------------------------------------------------

DEPTHWISE_CASES = {
    "basic": ("stride 1, padding 1, with bias", dict(x=(2, 3, 6, 5), w=(3, 1, 3, 3), b=(3,), stride=1, padding=1)),
    "strided": ("stride 2, padding 1, odd sizes, one image",
                dict(x=(1, 4, 7, 9), w=(4, 1, 3, 3), b=(4,), stride=2, padding=1)),
    "float32": ("a 3x2 kernel, no padding", dict(x=(2, 3, 5, 6), w=(3, 1, 3, 2), b=None, stride=1, padding=0)),
    "backward": ("stride 1, padding 1", dict(x=(2, 3, 5, 6), w=(3, 1, 3, 3), b=(3,), stride=1, padding=1)),
    "strided_backward": ("stride 2, padding 1, odd sizes, one image",
                         dict(x=(1, 2, 7, 8), w=(2, 1, 3, 3), b=(2,), stride=2, padding=1)),
    "numerical": ("stride 1, padding 1", dict(x=(2, 2, 4, 5), w=(2, 1, 3, 3), b=(2,), stride=1, padding=1)),
    "speed": ("x (4, 32, 48, 48), w (32, 1, 3, 3)",
              dict(x=(4, 32, 48, 48), w=(32, 1, 3, 3), b=(32,), stride=1, padding=1)),
}

def depthwise_mistakes(arguments):
    """What a flipped kernel gives, and what summing over the input channels (as a dense convolution does) gives."""
    x, w, b, stride, padding = arguments.values()
    every_channel = np.broadcast_to(x.sum(axis=1, keepdims=True), x.shape)
    summed = F.depthwise_conv2d_forward(np.ascontiguousarray(every_channel), w, b, stride, padding)[0]
    return flipped_kernel(F.depthwise_conv2d_forward)(arguments) + [
        (summed, "Yours sums over the input channels, as a dense convolution does: in a depthwise convolution, "
                 "output channel c reads input channel c alone."),
    ]


DEPTHWISE = Task("depthwise", "1. Depthwise convolution, forward and backward", convolution_checks(
    Pair("depthwise_conv2d_forward", "depthwise_conv2d_backward", F.depthwise_conv2d_forward,
         F.depthwise_conv2d_backward, ("dx", "dw", "db"), depthwise_mistakes),
    DEPTHWISE_CASES,
    dict(basic=4, strided=4, float32=3, forward_speed=2, dx=4, dw=4, db=3, strided_backward=5, numerical=4,
         backward_speed=2),
    reference=(F.depthwise_conv2d_forward, F.depthwise_conv2d_backward),
))

# --- Task 2: batch norm forward --------------------------------------------------------------------

def other_mode(arguments):
    """``mistakes`` for batch norm's forward: the output of the other mode (batch or running statistics)."""
    values = [value.copy() if isinstance(value, np.ndarray) else value for value in arguments.values()]
    training = values[5]
    values[5] = not training
    other = F.batchnorm2d_forward(*values)[0]
    if training:
        return [(other, "Yours normalises with the running statistics: in training mode use the batch's.")]
    return [(other, "Yours normalises with the batch's statistics: in evaluation mode use the running ones.")]


BATCHNORM = Pair("batchnorm2d_forward", "batchnorm2d_backward", F.batchnorm2d_forward, F.batchnorm2d_backward,
                 ("dx", "dgamma", "dbeta"), other_mode)
BATCHNORM_GRAPH = Pair("batchnorm2d_forward", "batchnorm2d_backward_graph", F.batchnorm2d_forward,
                       F.batchnorm2d_backward_graph, ("dx", "dgamma", "dbeta"))

MOMENTUM_NOTE = ("momentum is the weight of the new batch statistic, as in PyTorch: "
                 "running = (1 - momentum) * running + momentum * batch.")
UNBIASED_NOTE = ("The running variance takes the unbiased batch variance, sum((x - mean)**2) / (M - 1) with "
                 "M = N*H*W, while the normalisation uses the biased one, divided by M.")
EVAL_NOTE = "In evaluation mode the running statistics normalise, not the batch's."


def batchnorm_arguments(shape=(3, 4, 5, 3), training=True, momentum=None, dtype=np.float64, seed=0):
    """Arguments of ``batchnorm2d_forward``: each channel its own mean and spread; running statistics not the defaults."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    center = rng.uniform(-2, 2, channels)[None, :, None, None]
    spread = rng.uniform(0.5, 2, channels)[None, :, None, None]
    arguments = {
        "x": center + spread * rng.standard_normal(shape),
        "gamma": rng.uniform(0.5, 1.5, channels),
        "beta": rng.standard_normal(channels),
        "running_mean": rng.standard_normal(channels),
        "running_var": rng.uniform(0.5, 2, channels),
    }
    arguments = {name: value.astype(dtype) for name, value in arguments.items()}
    arguments["training"] = training
    if momentum is not None:
        arguments["momentum"] = momentum
    return arguments


def running_statistics(arguments, momentum, unbiased=True):
    """``{"running_mean": ..., "running_var": ...}`` after one training step from ``arguments`` (which do not change).

    With the momentum and the variance given: what the usual mistakes compute.
    """
    x, running_mean, running_var = arguments["x"], arguments["running_mean"], arguments["running_var"]
    count = x.size // x.shape[1]
    var = x.var(axis=(0, 2, 3)) * (count / (count - 1) if unbiased else 1.0)
    return {"running_mean": (1 - momentum) * running_mean + momentum * x.mean(axis=(0, 2, 3)),
            "running_var": (1 - momentum) * running_var + momentum * var}


def running_statistic_updated(name, note):
    """Check: after a training step with momentum 0.3, ``name`` (a running statistic) is updated in place, rightly."""

    def check(student):
        arguments = batchnorm_arguments(momentum=0.3)
        expected = dict(zip(arguments, copies(arguments)))
        F.batchnorm2d_forward(*expected.values())  # updates expected's running statistics
        mistakes = [
            (running_statistics(arguments, momentum=0.7)[name], "Yours takes momentum as the weight of the old value."),
            (running_statistics(arguments, 0.3, unbiased=False)[name], "Yours takes the biased batch variance."),
        ]
        before = arguments[name].copy()
        with on(arguments):
            forward_result(student.call("batchnorm2d_forward", *arguments.values(), copy=False), BATCHNORM.forward)
            if np.array_equal(arguments[name], before):
                raise CheckFailed(
                    f"{name} did not change: update the array you were given in place ({name} *= 1 - momentum, "
                    f"then +=), as PyTorch does; '{name} = ...' only gives your local name a new array"
                )
            expect_close(name, arguments[name], expected[name], note=note, mistakes=mistakes)

    return check


def eval_changes_nothing(student):
    """Check: in evaluation mode, the running statistics are left as they were."""
    arguments = batchnorm_arguments(training=False)
    before = {name: arguments[name].copy() for name in ("running_mean", "running_var")}
    with on(arguments):
        forward_result(student.call("batchnorm2d_forward", *arguments.values(), copy=False), BATCHNORM.forward)
        for name, value in before.items():
            if not np.array_equal(arguments[name], value):
                raise CheckFailed(f"{name} changed in evaluation mode: only training updates the running statistics")


def bn_case(**changes):
    """A function making fresh arguments for a batch-norm check: :func:`batchnorm_arguments` with ``changes``."""
    return functools.partial(batchnorm_arguments, **changes)


BATCHNORM_FORWARD = Task("batchnorm_forward", "2. Batch norm forward: training and evaluation", (
    Check("batchnorm2d_forward/training", "batchnorm2d_forward: training mode normalises with the batch statistics", 6,
          forward_matches(BATCHNORM, bn_case())),
    Check("batchnorm2d_forward/running_mean", "batchnorm2d_forward: running_mean updated in place, momentum as PyTorch's",
          5, running_statistic_updated("running_mean", MOMENTUM_NOTE)),
    Check("batchnorm2d_forward/running_var", "batchnorm2d_forward: running_var updated with the unbiased variance", 5,
          running_statistic_updated("running_var", UNBIASED_NOTE + " " + MOMENTUM_NOTE)),
    Check("batchnorm2d_forward/eval", "batchnorm2d_forward: evaluation mode uses the running statistics, changes nothing",
          6, both(forward_matches(BATCHNORM, bn_case(training=False), note=EVAL_NOTE), eval_changes_nothing)),
    Check("batchnorm2d_forward/float32", "batchnorm2d_forward: one image, one channel, odd sizes, float32", 3,
          forward_matches(BATCHNORM, bn_case(shape=(1, 1, 3, 5), dtype=np.float32, seed=6))),
))

# --- Tasks 3 and 4: batch norm backward, by the formula and by the graph ---------------------------

DX_NOTE = ("In training mode the batch mean and variance depend on every x of the channel: "
           "dx = gamma / sqrt(var + eps) / M * (M * dout - dbeta - x_hat * dgamma), M = N*H*W.")

BATCHNORM_BACKWARD = Task("batchnorm_backward", "3. Batch norm backward, the simplified formula", (
    Check("batchnorm2d_backward/dgamma_dbeta", "batchnorm2d_backward: dgamma and dbeta", 6,
          backward_matches(BATCHNORM, bn_case(), ("dgamma", "dbeta"))),
    Check("batchnorm2d_backward/dx", "batchnorm2d_backward: dx in training mode", 8,
          backward_matches(BATCHNORM, bn_case(), ("dx",), note=DX_NOTE)),
    Check("batchnorm2d_backward/eval", "batchnorm2d_backward: dx, dgamma, dbeta in evaluation mode", 5,
          backward_matches(BATCHNORM, bn_case(training=False), ("dx", "dgamma", "dbeta"),
                           note="In evaluation mode mean and variance are constants: "
                                "dx = gamma / sqrt(var + eps) * dout.")),
    Check("batchnorm2d_backward/numerical",
          "batchnorm2d_backward: dx, dgamma, dbeta equal the numerical gradients of your forward", 6,
          gradients_match_numerically(BATCHNORM, bn_case(shape=(2, 3, 3, 2), seed=7), ("x", "gamma", "beta"))),
))

BATCHNORM_GRAPH_TASK = Task("batchnorm_graph", "4. Batch norm backward through the graph, node by node", (
    Check("batchnorm2d_backward_graph/training", "batchnorm2d_backward_graph: dx, dgamma, dbeta in training mode", 10,
          backward_matches(BATCHNORM_GRAPH, bn_case(shape=(2, 3, 4, 3), seed=8), ("dx", "dgamma", "dbeta"),
                           note="xmu = x - mu feeds both sq and x_hat, and x feeds both mu and xmu: add both paths.")),
    Check("batchnorm2d_backward_graph/eval", "batchnorm2d_backward_graph: evaluation mode", 5,
          backward_matches(BATCHNORM_GRAPH, bn_case(training=False, seed=9), ("dx", "dgamma", "dbeta"))),
))

TASKS = [DEPTHWISE, BATCHNORM_FORWARD, BATCHNORM_BACKWARD, BATCHNORM_GRAPH_TASK]
