"""Comparing a student's result with the expected one, and saying what differs in words a student can act on.

Never a bare "assertion failed": a hint names the output (``dw``), the input it was computed on
(``x (1, 2, 7, 9), w (3, 2, 3, 2), stride=2, padding=1``), and what is wrong: the type, the
shape (and whether the sizes are right but in another order), the dtype, or the values: how
many differ, the first index where they do, yours and the expected value there, the largest
difference, and a pattern when there is one (all zeros, the sign flipped, a constant factor).

Values agree when ``|yours - expected| <= tolerance * largest`` everywhere, ``largest`` being
the largest magnitude in either array: the relative error of :mod:`npmobilenet.gradcheck`,
which does not blow up on entries that are zero up to rounding.
"""

import contextlib

import numpy as np

from .checks import CheckFailed

TOLERANCE = 1e-6  # float64: a correct answer is off by about 1e-15, a wrong one by far more
FLOAT32_TOLERANCE = 1e-4


@contextlib.contextmanager
def on(arguments):
    """Put "on x (2, 3, 6, 5), w ..." in front of every hint raised inside the block."""
    try:
        yield
    except CheckFailed as failure:
        if not failure.about_input:
            raise
        raise CheckFailed(f"on {describe_arguments(arguments)}: {failure}") from None


def describe_arguments(arguments):
    """``"x (2, 3, 6, 5), w (4, 3, 3, 3), b=None, stride=2, padding=1 (float64)"``: the case, briefly."""
    parts, dtype = [], None
    for name, value in arguments.items():
        if isinstance(value, np.ndarray):
            parts.append(f"{name} {value.shape}")
            dtype = value.dtype if dtype is None else dtype
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts) + (f" ({dtype})" if dtype is not None else "")


def describe_value(value):
    """What a value is, in a few words: ``"an array of shape (2, 3) (float64)"``, ``"a tuple of 3 items"``."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def forward_result(value, function):
    """Check that a forward pass returned a pair ``(out, cache)`` with ``out`` an array; returns the pair."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise CheckFailed(f"{function} should return a pair (out, cache), got {describe_value(value)}")
    expect_array(f"the out of {function}", value[0])
    return tuple(value)


def backward_result(value, function, names):
    """Check that a backward pass returned one value per name in ``names`` (a bare ``dx`` when there is one)."""
    if len(names) == 1:
        return (value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value,)
    if not (isinstance(value, (tuple, list)) and len(value) == len(names)):
        raise CheckFailed(f"{function} should return ({', '.join(names)}), got {describe_value(value)}")
    return tuple(value)


def expect_array(label, value, shape=None):
    """Check that ``value`` is a NumPy array (of ``shape``); returns it."""
    if not isinstance(value, np.ndarray):
        raise CheckFailed(f"{label} should be a NumPy array, got {describe_value(value)}")
    if shape is not None and value.shape != tuple(shape):
        raise CheckFailed(f"{label} has shape {value.shape}, expected {tuple(shape)}{shape_hint(value.shape, shape)}")
    return value


def shape_hint(shape, expected):
    """A guess at what a wrong shape means."""
    if sorted(shape) == sorted(expected):
        return ": the right sizes in another order (are the axes in NCHW order? a transpose missing?)"
    if np.prod(shape) == np.prod(expected):
        return ": the right number of values in another shape (a reshape of axes in the wrong order?)"
    return ""


def expect_dtype(label, value, dtype):
    """Check that the array ``value`` has ``dtype`` (that of the input: every op keeps its input's dtype)."""
    if value.dtype != dtype:
        raise CheckFailed(
            f"{label} has dtype {value.dtype}, expected {np.dtype(dtype)}, the input's: every op keeps the "
            f"dtype it is given (np.zeros(shape) alone makes float64: pass dtype=x.dtype)"
        )


def expect_close(label, actual, expected, tolerance=TOLERANCE, note="", mistakes=()):
    """Check that ``actual`` equals ``expected`` (an array, or None) within ``tolerance`` of the largest value.

    ``note`` is added to the hint when the values differ: what the student most likely got wrong.
    ``mistakes`` are ``(value, sentence)`` pairs, what a known mistake gives and what it is: when
    ``actual`` equals one of those values, the hint says that sentence.
    """
    if expected is None:
        if actual is not None:
            raise CheckFailed(f"{label} should be None here (the forward pass had no bias), got {describe_value(actual)}")
        return
    actual = expect_array(label, actual, expected.shape)
    yours, wanted = actual.astype(np.float64), expected.astype(np.float64)
    if not np.all(np.isfinite(yours)):
        index = first_index(~np.isfinite(yours))
        raise CheckFailed(f"{label} has {yours[index]} at index {index}: a division by zero, or the log of 0?")
    wrong, difference, largest = differences(yours, wanted, tolerance)
    if not wrong.any():
        return
    index = first_index(wrong)
    raise CheckFailed(
        f"{label} differs from the expected value at {int(wrong.sum())} of {wrong.size} places; the first at index "
        f"{index}: yours {yours[index]:.6g}, expected {wanted[index]:.6g}. The largest difference is "
        f"{difference.max():.3g} ({difference.max() / largest:.2g} of the largest value).{pattern_hint(yours, wanted)}"
        + "".join(f" {sentence}" for value, sentence in mistakes if agrees(yours, value, tolerance))
        + (f" {note}" if note else "")
    )


def differences(actual, expected, tolerance):
    """``(wrong, difference, largest)``: the mask of ``|actual - expected| > tolerance * largest``, and its two parts."""
    difference = np.abs(actual - expected)
    largest = max(np.abs(actual).max(initial=0.0), np.abs(expected).max(initial=0.0))
    return difference > tolerance * largest, difference, largest


def agrees(actual, expected, tolerance):
    """Whether two arrays have the same shape and agree within ``tolerance`` of the largest value."""
    return np.shape(actual) == np.shape(expected) and not differences(actual, expected, tolerance)[0].any()


def first_index(mask):
    """The first index (in C order) where ``mask`` is true, as a tuple of ints."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def pattern_hint(yours, expected):
    """A sentence when the wrong values follow a pattern: all zero, or the expected values times a constant."""
    if not yours.any():
        return " Yours is all zeros."
    norm = float(np.sum(expected * expected))
    if norm == 0.0:
        return ""
    factor = float(np.sum(yours * expected)) / norm
    if np.abs(yours - factor * expected).max() > 1e-6 * np.abs(yours).max():
        return ""
    if abs(factor + 1) < 1e-6:
        return " Yours is the expected value with the sign flipped."
    return f" Yours is the expected value times {factor:.6g} everywhere: a factor missing, or one too many?"
