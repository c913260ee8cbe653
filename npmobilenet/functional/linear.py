"""The fully connected (linear) layer of the classifier, the plain way: one matrix product."""

from .._checks import check_float_array, check_same_dtype, check_shape
from ..errors import ShapeError


def linear_forward(x, w, b=None):
    """Forward pass, PyTorch's ``F.linear(x, w, b)``: ``out = x @ w.T + b``.

    Shapes: ``x`` is ``(..., in_features)`` (usually ``(N, in_features)``), ``w`` is
    ``(out_features, in_features)``, ``b`` is ``(out_features,)`` or None; ``out`` is
    ``(..., out_features)``.
    """
    op = "linear"
    check_float_array("input", x, op)
    check_float_array("weight", w, op, ndim=2)
    check_same_dtype(op, x, weight=w, bias=b)
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ShapeError(
            f"{op}: expected input with {w.shape[1]} features in its last axis "
            f"(weight shape {w.shape}), got input of shape {x.shape}"
        )
    if b is not None:
        check_shape("bias", b, (w.shape[0],), op)
    out = x @ w.T
    if b is not None:
        out += b
    return out, (x, w, b is not None)


def linear_backward(dout, cache):
    """Backward pass of :func:`linear_forward`: returns ``(dx, dw, db)``, ``db`` None without bias.

    ``dx = dout @ w``, ``dw = dout.T @ x`` and ``db = sum(dout)``, summing over every row
    (every image of the batch).
    """
    x, w, has_bias = cache
    dout_rows = dout.reshape(-1, w.shape[0])
    dx = dout @ w
    dw = dout_rows.T @ x.reshape(-1, w.shape[1])
    db = dout_rows.sum(axis=0) if has_bias else None
    return dx, dw, db
