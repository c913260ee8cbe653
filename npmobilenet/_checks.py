"""Input checks shared by the forward functions.

Each check raises :class:`~npmobilenet.errors.ShapeError` with a message that names the
operation, what it expected and what it was given. They are cheap (they read ``.shape`` and
``.dtype`` only), so every forward runs them.
"""

import numpy as np

from .errors import ShapeError

# The dtypes every op computes in: float32 by default, float64 for gradient checks.
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_array(name, x, op, ndim=None):
    """Check that ``x`` is a float32 or float64 ``numpy.ndarray`` (with ``ndim`` dimensions)."""
    if not isinstance(x, np.ndarray):
        raise ShapeError(f"{op}: expected {name} to be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ShapeError(
            f"{op}: expected {name} with dtype float32 or float64, got {x.dtype}; "
            f"convert it with .astype(np.float32)"
        )
    if ndim is not None and x.ndim != ndim:
        layout = {1: "(C,)", 2: "(N, features)", 4: "(N, C, H, W)"}.get(ndim, f"{ndim}-D")
        raise ShapeError(
            f"{op}: expected {name} with {ndim} dimensions {layout}, got shape {x.shape}"
        )


def check_same_dtype(op, x, **others):
    """Check that every array in ``others`` (None allowed) has the dtype of ``x``: no silent upcast."""
    for name, array in others.items():
        if array is not None and array.dtype != x.dtype:
            raise ShapeError(
                f"{op}: {name} has dtype {array.dtype} but the input has dtype {x.dtype}; "
                f"npmobilenet never mixes dtypes, convert one of them (model.astype(...))"
            )


def check_shape(name, array, expected, op):
    """Check that ``array.shape == expected``."""
    if array.shape != tuple(expected):
        raise ShapeError(f"{op}: expected {name} of shape {tuple(expected)}, got {array.shape}")


def pair(value, name="value"):
    """Turn an int or a pair of ints into a ``(height, width)`` tuple, as PyTorch does."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) for v in value
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"expected {name} to be an int or a pair of ints, got {value!r}")


def conv_output_size(size, kernel, stride, padding):
    """Output length of a convolution along one axis: ``(size + 2*padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def check_conv_geometry(op, x, kernel_size, stride, padding):
    """Check that a (kh, kw) kernel fits the padded input and stride/padding are valid.

    Returns the output size ``(out_h, out_w)``.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: stride must be at least 1, got {stride}")
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {padding}")
    height, width = x.shape[2], x.shape[3]
    if height + 2 * ph < kh or width + 2 * pw < kw:
        raise ShapeError(
            f"{op}: the {kh}x{kw} kernel does not fit the input: input spatial size "
            f"{height}x{width} with padding {padding} is {height + 2 * ph}x{width + 2 * pw}; "
            f"expected at least {kh}x{kw}"
        )
    return conv_output_size(height, kh, sh, ph), conv_output_size(width, kw, sw, pw)


def check_channels(op, x, expected, source):
    """Check that an NCHW input has ``expected`` channels; ``source`` says where that number comes from."""
    if x.shape[1] != expected:
        raise ShapeError(
            f"{op}: expected input with {expected} channels ({source}), "
            f"got input of shape {x.shape} with {x.shape[1]} channels"
        )


def check_conv_arguments(op, x, w, b, stride, padding, depthwise=False):
    """Check a convolution's input, weight, bias, stride and padding, as every version of conv2d and depthwise conv2d does.

    ``w`` is ``(F, C, KH, KW)`` for a dense convolution and ``(C, 1, KH, KW)`` for a depthwise
    one (PyTorch's shape for ``groups = C``). Returns ``(stride, padding, (out_h, out_w))``
    with ``stride`` and ``padding`` as ``(height, width)`` pairs.
    """
    check_float_array("input", x, op, ndim=4)
    check_float_array("weight", w, op, ndim=4)
    check_same_dtype(op, x, weight=w, bias=b)
    if depthwise:
        if w.shape[1] != 1:
            raise ShapeError(f"{op}: expected a weight of shape (C, 1, KH, KW), got shape {w.shape}")
        check_channels(op, x, w.shape[0], f"depthwise weight shape {w.shape}")
    else:
        check_channels(op, x, w.shape[1], f"weight shape {w.shape}")
    if b is not None:
        check_shape("bias", b, (w.shape[0],), op)
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    return stride, padding, check_conv_geometry(op, x, w.shape[2:], stride, padding)
