"""Numerical gradients by central differences, to check a hand-written backward pass.

The idea, for any scalar function ``L(x)``::

    dL/dx[k] ~ (L(x + eps*e_k) - L(x - eps*e_k)) / (2*eps)

with ``e_k`` the unit vector of element ``k``. The error of this estimate is of order
``eps**2``, so with float64 and ``eps = 1e-6`` a correct backward pass agrees with it to about
``1e-8`` relative error, and a wrong one is off by far more. Use float64: in float32 the
rounding error of ``L`` divided by ``2*eps`` swamps the estimate.

To check the gradient of a non-scalar output ``out = f(x)``, pick a random upstream gradient
``dout`` and check ``L(x) = sum(f(x) * dout)``, whose gradient is exactly what a backward pass
called with ``dout`` returns. A random ``dout`` matters: with ``dout`` all ones, an op whose
outputs always sum to a constant (batch norm does, per channel) has gradient zero, and a broken
backward that also returns zero would pass.
"""

import numpy as np

from .errors import ShapeError


def numerical_gradient(f, x, dout=None, eps=1e-6):
    """The gradient of ``sum(f(x) * dout)`` with respect to ``x``, by central differences.

    ``f`` takes ``x`` and returns an array (or a scalar, with ``dout=None``). ``x`` is changed
    in place one element at a time and restored, so ``f`` may also be a closure that reads
    ``x`` some other way (a layer's parameter, say) and ignores its argument.
    """
    if dout is None:
        dout = 1.0
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + eps
        loss_plus = np.sum(f(x) * dout)
        x[index] = original - eps
        loss_minus = np.sum(f(x) * dout)
        x[index] = original
        grad[index] = (loss_plus - loss_minus) / (2 * eps)
    return grad


def relative_error(actual, expected):
    """``max|actual - expected| / max(max|actual|, max|expected|)``: 0 when equal, about 1 when unrelated.

    Measured against the largest magnitude rather than element by element, so entries that are
    zero up to rounding do not blow the ratio up.
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = max(np.max(np.abs(actual), initial=0.0), np.max(np.abs(expected), initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(actual - expected)) / scale)


def check_module(module, x, seed=0, eps=1e-6):
    """Compare ``module.backward`` with numerical gradients; return ``{name: relative error}``.

    ``"input"`` is the gradient with respect to ``x``, the other names are the module's
    parameters. The module and ``x`` must be float64. The output must not be random: put
    dropout in eval mode (or use ``p=0``) first. Batch norm in training mode is fine: its
    running statistics move at every forward, but its output does not depend on them.

    >>> errors = check_module(layer.astype(np.float64), x.astype(np.float64))
    >>> max(errors.values()) < 1e-6
    True
    """
    if x.dtype != np.float64 or any(p.data.dtype != np.float64 for p in module.parameters()):
        raise ShapeError(
            "check_module: expected float64 input and parameters (finite differences are "
            "too imprecise in float32); call module.astype(np.float64) and x.astype(np.float64)"
        )
    x = x.copy()
    dout = np.random.default_rng(seed).standard_normal(module(x).shape)
    module.zero_grad()
    module(x)
    errors = {"input": relative_error(module.backward(dout), numerical_gradient(module, x, dout, eps))}
    for name, parameter in module.named_parameters():
        numeric = numerical_gradient(lambda _: module(x), parameter.data, dout, eps)
        errors[name] = relative_error(parameter.grad, numeric)
    return errors
