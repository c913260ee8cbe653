"""The checks every forward/backward pair gets, written once for all the assignments.

A :class:`Pair` names the two functions a student writes (``conv2d_forward``,
``conv2d_backward``) and the library's pair they must equal. Each function below makes a check
function (``check(student)``) for one idea (and :func:`function_matches` does it for any
function that is not a pair):

* :func:`forward_matches`: the output equals the reference's on one input, in the input's
  dtype (float32 in, float32 out);
* :func:`backward_matches`: some of the gradients equal the reference's, for a random ``dout``;
* :func:`gradients_match_numerically`: the backward is the derivative of the student's *own*
  forward (central differences, :func:`npmobilenet.gradcheck.numerical_gradient`), so a pair
  that is consistent earns these points even when both halves share a mistake;
* :func:`runs_fast`: no Python loop over every value: within a factor of the plain NumPy version.

The grader calls the student's backward on the cache the student's forward returned, so a
student's cache may hold whatever the student likes. Inputs are random (seeded) and never the
ones a notebook shows. :func:`convolution_checks` puts them together for a convolution.
"""

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..gradcheck import numerical_gradient
from .checks import Check, CheckFailed
from .compare import (FLOAT32_TOLERANCE, TOLERANCE, backward_result, expect_array, expect_close, expect_dtype,
                      forward_result, on)

NUMERICAL_TOLERANCE = 1e-5  # central differences in float64 agree with a right gradient to about 1e-8


@dataclass(frozen=True)
class Pair:
    """The student's forward and backward functions (names), the reference pair, and the names of the gradients."""

    forward: str
    backward: str
    reference_forward: Callable
    reference_backward: Callable
    gradients: tuple  # what the backward returns, in order: ("dx", "dw", "db")
    mistakes: Callable = None  # mistakes(arguments) -> [(the out a known mistake gives, what it is), ...]


def random_arguments(spec, seed=0, dtype=np.float64):
    """Fresh arguments from ``spec``: a tuple is the shape of a random array (standard normal), anything else is kept."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(value).astype(dtype) if isinstance(value, tuple) else value
        for name, value in spec.items()
    }


def copies(arguments):
    """The argument values, arrays copied, in order: for a call that must not touch the originals."""
    return [value.copy() if isinstance(value, np.ndarray) else value for value in arguments.values()]


def student_forward(student, pair, arguments):
    """``(out, cache)`` from the student's forward on copies of ``arguments``."""
    return forward_result(student.call(pair.forward, *arguments.values()), pair.forward)


def reference_gradients(pair, arguments, seed=1):
    """The reference's ``out``, a random ``dout`` of its shape, and the reference's gradients for it."""
    out, cache = pair.reference_forward(*copies(arguments))
    dout = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    gradients = pair.reference_backward(dout.copy(), cache)
    return out, dout, gradients if isinstance(gradients, tuple) else (gradients,)


def function_matches(name, make_arguments, reference, label, note=""):
    """Check: the student's ``name`` returns what ``reference`` does on ``make_arguments()``; ``label`` names the result."""

    def check(student):
        arguments = make_arguments()
        with on(arguments):
            result = student.call(name, *arguments.values())
            expect_close(label, result, reference(*copies(arguments)), note=note)

    return check


def forward_matches(pair, make_arguments, note=""):
    """Check: the student's forward gives the reference's output on ``make_arguments()``, in the input's dtype."""

    def check(student):
        arguments = make_arguments()
        expected, _ = pair.reference_forward(*copies(arguments))
        mistakes = pair.mistakes(arguments) if pair.mistakes else ()
        tolerance = FLOAT32_TOLERANCE if expected.dtype == np.float32 else TOLERANCE
        with on(arguments):
            out, _ = student_forward(student, pair, arguments)
            expect_array("out", out, expected.shape)
            expect_dtype("out", out, expected.dtype)
            expect_close("out", out, expected, tolerance=tolerance, note=note, mistakes=mistakes)

    return check


def cache_from_student(student, pair, arguments, expected_shape):
    """The student's ``(out, cache)``; :class:`CheckFailed` if ``out`` has the wrong shape (a backward check needs it)."""
    out, cache = student_forward(student, pair, arguments)
    if out.shape != expected_shape:
        raise CheckFailed(
            f"this check runs your {pair.forward} for the cache, and its out has shape {out.shape}, "
            f"expected {expected_shape}: fix {pair.forward} first"
        )
    return out, cache


def backward_matches(pair, make_arguments, gradients, note=""):
    """Check: the student's backward gives the reference's ``gradients`` (names such as ``("dx", "dw")``)."""

    def check(student):
        arguments = make_arguments()
        expected_out, dout, expected = reference_gradients(pair, arguments)
        with on(arguments):
            _, cache = cache_from_student(student, pair, arguments, expected_out.shape)
            result = backward_result(student.call(pair.backward, dout, cache), pair.backward, pair.gradients)
            for name in gradients:
                index = pair.gradients.index(name)
                expect_close(name, result[index], expected[index], note=note)

    return check


def gradients_match_numerically(pair, make_arguments, inputs):
    """Check: for each of ``inputs`` (``"x"``, ``"w"``), the gradient is the numerical one of the student's forward."""

    def check(student):
        arguments = make_arguments()
        with on(arguments):
            out, cache = student_forward(student, pair, arguments)
            dout = np.random.default_rng(1).standard_normal(out.shape)
            result = backward_result(student.call(pair.backward, dout, cache), pair.backward, pair.gradients)
            for name in inputs:

                def output(value, name=name):
                    return student_forward(student, pair, {**arguments, name: value})[0]

                numeric = numerical_gradient(output, arguments[name].copy(), dout)
                expect_close(
                    f"d{name}", result[pair.gradients.index(f"d{name}")], numeric, tolerance=NUMERICAL_TOLERANCE,
                    note=f"(Here 'expected' is the numerical gradient of your own {pair.forward}: if that passes "
                    f"its checks, the backward is wrong.)",
                )

    return check


def runs_fast(pair, make_arguments, reference, backward=False, factor=20, slack=1.0):
    """Check: the student's forward (or backward) takes at most ``factor`` times ``reference``'s, plus ``slack`` seconds.

    ``reference`` is the plain NumPy pair. Only the time is checked (other checks look at the
    values). A Python loop over every value is hundreds of times slower than NumPy; a loop over
    the kernel's positions is not.
    """

    def check(student):
        arguments = make_arguments()
        forward, backward_function = reference
        if backward:
            out, cache = forward(*copies(arguments))
            reference_seconds = best_time(lambda: backward_function(np.ones_like(out), cache))
            student_out, student_cache = student_forward(student, pair, arguments)
            dout = np.ones_like(student_out)  # the shape of the student's out: only the time counts here
            name, seconds = pair.backward, timed(lambda: student.call(pair.backward, dout, student_cache))
        else:
            reference_seconds = best_time(lambda: forward(*copies(arguments)))
            name, seconds = pair.forward, timed(lambda: student_forward(student, pair, arguments))
        if seconds > factor * reference_seconds + slack:
            with on(arguments):
                raise CheckFailed(
                    f"{name} took {seconds:.2f} s, the plain NumPy version {reference_seconds:.3f} s: is there a "
                    f"Python loop over every value? Let NumPy do the work on whole arrays"
                )

    return check


def flipped_kernel(forward):
    """``mistakes`` for a convolution pair: the output of ``forward`` with every kernel flipped, a true convolution."""

    def mistakes(arguments):
        x, w, b, stride, padding = arguments.values()
        flipped = forward(x, np.ascontiguousarray(w[:, :, ::-1, ::-1]), b, stride, padding)[0]
        return [(flipped, "Yours is the convolution with every kernel flipped (w[:, :, ::-1, ::-1]): PyTorch's conv2d "
                          "is a cross-correlation, which does not flip the kernel.")]

    return mistakes


def timed(function):
    """Seconds ``function()`` takes."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def best_time(function, repeats=3):
    """The least of ``repeats`` timings of ``function()``: the best estimate of its cost on a busy machine."""
    return min(timed(function) for _ in range(repeats))


# The checks convolution_checks can make, in their order: the keys of its ``points``.
CONVOLUTION_KINDS = ("basic", "strided", "float32", "forward_speed", "dx", "dw", "db", "strided_backward",
                     "numerical", "backward_speed")


def convolution_checks(pair, cases, points, reference=None):
    """The checks of a convolution pair (``x, w, b, stride, padding``; backward ``dx, dw, db``).

    ``cases`` maps a case to ``(label, spec)``, ``spec`` as for :func:`random_arguments`:
    ``"basic"`` (forward), ``"strided"`` (forward, stride 2, padding, odd sizes, one image),
    ``"float32"`` (forward without bias, in float32), ``"backward"`` (dx, dw and db, each a
    check; db also None without bias), ``"strided_backward"``, ``"numerical"`` (small: finite
    differences for dx and dw) and ``"speed"`` (large; only with speed points). ``points`` maps
    each of :data:`CONVOLUTION_KINDS` to its points; a kind with no points gets no check.
    ``reference`` is the plain NumPy pair the speed checks time against.
    """
    forward, backward = pair.forward, pair.backward

    def arguments(case, dtype=np.float64, **changes):
        return lambda: {**random_arguments(cases[case][1], dtype=dtype), **changes}

    def label(case):
        return cases[case][0]

    speed_hint = "a Python loop over every value? Let NumPy do the work on whole arrays"
    makers = {
        "basic": lambda: Check(f"{forward}/basic", f"{forward}: {label('basic')}", points["basic"],
                               forward_matches(pair, arguments("basic"))),
        "strided": lambda: Check(f"{forward}/strided", f"{forward}: {label('strided')}", points["strided"],
                                 forward_matches(pair, arguments("strided"))),
        "float32": lambda: Check(f"{forward}/float32", f"{forward}: {label('float32')}, float32 in, float32 out",
                                 points["float32"], forward_matches(pair, arguments("float32", np.float32, b=None))),
        "forward_speed": lambda: Check(f"{forward}/speed", f"{forward}: NumPy speed ({label('speed')})",
                                       points["forward_speed"], runs_fast(pair, arguments("speed", np.float32), reference),
                                       seconds=5, timeout_hint=speed_hint),
        "dx": lambda: Check(f"{backward}/dx", f"{backward}: dx, {label('backward')}", points["dx"],
                            backward_matches(pair, arguments("backward"), ("dx",))),
        "dw": lambda: Check(f"{backward}/dw", f"{backward}: dw, {label('backward')}", points["dw"],
                            backward_matches(pair, arguments("backward"), ("dw",))),
        "db": lambda: Check(f"{backward}/db", f"{backward}: db, and db None when b is None", points["db"],
                            both(backward_matches(pair, arguments("backward"), ("db",),
                                                  note="db[f] sums dout over the images and the pixels."),
                                 backward_matches(pair, arguments("backward", b=None), ("db",)))),
        "strided_backward": lambda: Check(f"{backward}/strided", f"{backward}: dx and dw, {label('strided_backward')}",
                                          points["strided_backward"],
                                          backward_matches(pair, arguments("strided_backward"), ("dx", "dw"))),
        "numerical": lambda: Check(f"{backward}/numerical",
                                   f"{backward}: dx and dw equal the numerical gradients of your {forward}",
                                   points["numerical"],
                                   gradients_match_numerically(pair, arguments("numerical"), ("x", "w"))),
        "backward_speed": lambda: Check(f"{backward}/speed", f"{backward}: NumPy speed ({label('speed')})",
                                        points["backward_speed"],
                                        runs_fast(pair, arguments("speed", np.float32), reference, backward=True),
                                        seconds=5, timeout_hint=speed_hint),
    }
    return tuple(makers[kind]() for kind in CONVOLUTION_KINDS if points.get(kind))


def both(*checks):
    """One check function that runs several in turn: it passes when all of them do."""

    def check(student):
        for part in checks:
            part(student)

    return check

