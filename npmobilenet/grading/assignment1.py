"""Assignment 1, ReLU6 and 2-D convolution: the graded checks.

The notebook's functions, graded against :mod:`npmobilenet.functional` (the plain version),
against :mod:`npmobilenet.functional.loops`, and by finite differences, on inputs the notebook
does not show (odd sizes, non-square kernels, stride 2, padding, one image, float32):

======================================================  ==========================================
``relu6_forward(x) -> (out, cache)``                     ``relu6_backward(dout, cache) -> dx``
``conv2d_forward_loops(x, w, b, stride, padding)``       ``conv2d_backward_loops(dout, cache) -> (dx, dw, db)``
``im2col(x, kh, kw, stride, padding) -> cols``           ``col2im(dcols, x_shape, kh, kw, stride, padding) -> dx``
``conv2d_forward(x, w, b, stride, padding)``             ``conv2d_backward(dout, cache) -> (dx, dw, db)``
======================================================  ==========================================

``stride`` and ``padding`` are ints. ``cols`` has one row per output pixel ``(n, i, j)`` and one
column per ``(c, p, q)``, the order of ``w.reshape(F, -1)``'s columns.
"""

from functools import partial

import numpy as np

from .. import functional as F
from .._checks import conv_output_size
from ..functional import conv as plain_conv
from ..functional import loops
from .checks import Check, CheckFailed, Task
from .compare import expect_array, expect_close, expect_dtype, forward_result, on
from .pairs import Pair, convolution_checks, flipped_kernel, function_matches, random_arguments

ID = "01-conv2d-relu6"
TITLE = "ReLU6 and 2-D convolution, forward and backward: loops, then im2col"

# --- Task 1: ReLU6 -----------------------------------------------------------------------------

KINKS_NOTE = ("x is [-1, 0, 3, 6, 6.5, 0.5], dout [1, 2, 3, 4, 5, 6]. At the kinks x = 0 and x = 6, PyTorch takes the "
              "slope to be 0: the gradient passes where 0 < x < 6 only.")


def relu6_input(shape=(2, 3, 4, 5), dtype=np.float64, seed=0):
    """Values from -3 to 9 (some cut at 0, some at 6), none within 1e-3 of a kink."""
    x = np.random.default_rng(seed).uniform(-3, 9, size=shape)
    x[np.abs(x) < 1e-3] = 0.5
    x[np.abs(x - 6) < 1e-3] = 5.5
    return x.astype(dtype)


def relu6_values(student):
    x = relu6_input()
    with on({"x": x}):
        out, _ = forward_result(student.call("relu6_forward", x), "relu6_forward")
        expect_close("out", out, F.relu6_forward(x)[0], note="relu6(x) = min(max(x, 0), 6).")


def relu6_float32_and_input_unchanged(student):
    x = relu6_input(dtype=np.float32)
    original = x.copy()
    with on({"x": x}):
        out, _ = forward_result(student.call("relu6_forward", x, copy=False), "relu6_forward")
        if not np.array_equal(x, original):
            raise CheckFailed(
                "relu6_forward changed its input x in place: write the result into a new array "
                "(np.clip(x, 0, 6) makes one; x[x < 0] = 0 writes into x, which the caller still needs)"
            )
        expect_array("out", out, x.shape)
        expect_dtype("out", out, np.float32)


def relu6_gradient(student):
    x = relu6_input(seed=1)
    dout = np.random.default_rng(2).standard_normal(x.shape)
    with on({"x": x}):
        _, cache = forward_result(student.call("relu6_forward", x), "relu6_forward")
        dx = student.call("relu6_backward", dout, cache)
        expect_close("dx", dx, F.relu6_backward(dout, x), note="dx = dout where 0 < x < 6, and 0 elsewhere.")


def relu6_kinks(student):
    x = np.array([-1.0, 0.0, 3.0, 6.0, 6.5, 0.5]).reshape(1, 1, 1, 6)
    dout = np.arange(1.0, 7.0).reshape(x.shape)
    with on({"x": x, "dout": dout}):
        _, cache = forward_result(student.call("relu6_forward", x), "relu6_forward")
        dx = student.call("relu6_backward", dout, cache)
        expect_close("dx", dx, F.relu6_backward(dout, x), note=KINKS_NOTE)


RELU6 = Task("relu6", "1. ReLU6, forward and backward", (
    Check("relu6_forward/values", "relu6_forward: values from -3 to 9", 3, relu6_values),
    Check("relu6_forward/float32", "relu6_forward: float32 in, float32 out, and x left unchanged", 2,
          relu6_float32_and_input_unchanged),
    Check("relu6_backward/values", "relu6_backward: dx for a random dout", 3, relu6_gradient),
    Check("relu6_backward/kinks", "relu6_backward: dx is 0 at x = 0 and x = 6, as PyTorch's", 2, relu6_kinks),
))

# --- Tasks 2 and 4: the convolution, by loops and vectorised --------------------------------------

# (label, spec): a tuple in a spec is the shape of a random array. The batch (N) and the filters (F)
# differ in every case with a bias, so a db summed over the wrong axis has the wrong shape.
CONV_CASES = {
    "basic": ("stride 1, no padding, with bias", dict(x=(2, 3, 6, 5), w=(4, 3, 3, 3), b=(4,), stride=1, padding=0)),
    "strided": ("stride 2, padding 1, odd sizes, a 3x2 kernel, one image",
                dict(x=(1, 2, 7, 9), w=(3, 2, 3, 2), b=(3,), stride=2, padding=1)),
    "float32": ("a 1x1 kernel, no bias", dict(x=(2, 3, 5, 5), w=(4, 3, 1, 1), b=None, stride=1, padding=0)),
    "backward": ("stride 1, padding 1", dict(x=(2, 3, 5, 6), w=(4, 3, 3, 3), b=(4,), stride=1, padding=1)),
    "strided_backward": ("stride 2, padding 1, odd sizes, one image",
                         dict(x=(1, 2, 7, 8), w=(3, 2, 3, 3), b=(3,), stride=2, padding=1)),
    "numerical": ("stride 1, padding 1", dict(x=(1, 2, 4, 5), w=(3, 2, 3, 3), b=(3,), stride=1, padding=1)),
    "speed": ("x (4, 8, 32, 32), w (16, 8, 3, 3)", dict(x=(4, 8, 32, 32), w=(16, 8, 3, 3), b=(16,), stride=1, padding=1)),
}
PLAIN_CONV = (F.conv2d_forward, F.conv2d_backward)

CONV_LOOPS = Task("conv_loops", "2. Convolution by loops", convolution_checks(
    # the loops are checked against the vectorised library version
    Pair("conv2d_forward_loops", "conv2d_backward_loops", F.conv2d_forward, F.conv2d_backward, ("dx", "dw", "db"),
         flipped_kernel(F.conv2d_forward)),
    CONV_CASES,
    dict(basic=4, strided=4, float32=2, dx=4, dw=4, db=3, strided_backward=5, numerical=4),
))

CONV = Task("conv", "4. Convolution by im2col and one matrix product", convolution_checks(
    # the vectorised version is checked against the library's loops: the formula, index by index
    Pair("conv2d_forward", "conv2d_backward", loops.conv2d_forward, loops.conv2d_backward, ("dx", "dw", "db"),
         flipped_kernel(F.conv2d_forward)),
    CONV_CASES,
    dict(basic=5, strided=5, float32=3, forward_speed=2, dx=5, dw=5, db=3, strided_backward=5, numerical=5,
         backward_speed=2),
    reference=PLAIN_CONV,
))

# --- Task 3: im2col and col2im -------------------------------------------------------------------

IM2COL_NOTE = ("Rows are the output pixels in the order (n, i, j); columns are (c, p, q), the order of "
               "w.reshape(F, -1)'s columns, so that cols @ w.reshape(F, -1).T is the convolution.")
COL2IM_NOTE = "Windows overlap: an input value gets the sum of the gradients of every window it is in (+=, not =)."


def im2col_arguments(x_shape, kh, kw, stride, padding, seed=0):
    """``x`` of ``x_shape`` (random) and the other arguments of ``im2col``, by name."""
    return {"x": random_arguments({"x": x_shape}, seed)["x"], "kh": kh, "kw": kw, "stride": stride, "padding": padding}


def col2im_arguments(x_shape, kh, kw, stride, padding):
    """A random ``dcols`` of the right shape for ``x_shape``, and the other arguments of ``col2im``, by name."""
    out_h, out_w = conv_output_size(x_shape[2], kh, stride, padding), conv_output_size(x_shape[3], kw, stride, padding)
    rows = x_shape[0] * out_h * out_w
    dcols = np.random.default_rng(3).standard_normal((rows, x_shape[1] * kh * kw))
    return {"dcols": dcols, "x_shape": x_shape, "kh": kh, "kw": kw, "stride": stride, "padding": padding}


def reference_im2col(x, kh, kw, stride, padding):
    out_size = (conv_output_size(x.shape[2], kh, stride, padding), conv_output_size(x.shape[3], kw, stride, padding))
    return plain_conv.im2col(x, (kh, kw), (stride, stride), (padding, padding), out_size)


def reference_col2im(dcols, x_shape, kh, kw, stride, padding):
    out_size = (conv_output_size(x_shape[2], kh, stride, padding), conv_output_size(x_shape[3], kw, stride, padding))
    return plain_conv.col2im(dcols, x_shape, (kh, kw), (stride, stride), (padding, padding), out_size)


def col2im_is_adjoint(x_shape, kh, kw, stride, padding):
    """Check: ``sum(im2col(x) * D) == sum(x * col2im(D))`` with the student's two functions: col2im is im2col's adjoint."""

    def check(student):
        arguments = im2col_arguments(x_shape, kh, kw, stride, padding, seed=4)
        x = arguments["x"]
        with on(arguments):
            cols = expect_array("im2col's cols", student.call("im2col", *arguments.values()))
            dcols = np.random.default_rng(5).standard_normal(cols.shape)
            dx = student.call("col2im", dcols, x.shape, kh, kw, stride, padding)
            expect_array("col2im's dx", dx, x.shape)
            left, right = np.sum(cols * dcols), np.sum(x * dx)
            if abs(left - right) > 1e-8 * max(abs(left), abs(right), 1.0):
                raise CheckFailed(
                    f"sum(im2col(x) * D) is {left:.6g} but sum(x * col2im(D)) is {right:.6g}: col2im must send each "
                    f"entry of D back to the input value im2col copied it from, in the same order, adding up"
                )

    return check


IM2COL = Task("im2col", "3. im2col and col2im", (
    Check("im2col/basic", "im2col: rows (n, i, j), columns (c, p, q), stride 1, no padding", 5,
          function_matches("im2col", partial(im2col_arguments, (2, 3, 4, 5), 3, 2, 1, 0), reference_im2col, "cols",
                           IM2COL_NOTE)),
    Check("im2col/strided", "im2col: stride 2, padding 1, odd sizes", 5,
          function_matches("im2col", partial(im2col_arguments, (1, 2, 7, 5), 3, 3, 2, 1), reference_im2col, "cols",
                           IM2COL_NOTE)),
    Check("col2im/values", "col2im: overlapping windows add up (stride 1, padding 1)", 5,
          function_matches("col2im", partial(col2im_arguments, (2, 2, 4, 5), 3, 3, 1, 1), reference_col2im, "dx",
                           COL2IM_NOTE)),
    Check("col2im/adjoint", "col2im is the adjoint of your im2col: sum(im2col(x) * D) == sum(x * col2im(D))", 5,
          col2im_is_adjoint((1, 3, 7, 6), 3, 3, 2, 1)),
))

TASKS = [RELU6, CONV_LOOPS, IM2COL, CONV]
