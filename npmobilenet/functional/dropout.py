"""Inverted dropout: drop during training and rescale, so evaluation is the identity."""

import numpy as np

from .._checks import check_float_array


def dropout_forward(x, p, training, rng=None):
    """Forward pass, PyTorch's ``F.dropout(x, p, training)``.

    In training mode every value is zeroed with probability ``p`` (PyTorch's meaning: the
    probability of *dropping*) and the survivors are multiplied by ``1 / (1 - p)``, so the
    expected value of each output equals its input:

    ``out = x * mask``, ``mask = keep / (1 - p)``, ``keep ~ Bernoulli(1 - p)``.

    In evaluation mode, or with ``p = 0``, ``out`` is ``x`` itself. The mask is drawn from
    ``rng``, a ``numpy.random.Generator``: the same seed gives the same mask. With ``rng=None``
    a fresh, unseeded generator is used.
    """
    check_float_array("input", x, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: expected a probability p between 0 and 1, got {p}")
    if not training or p == 0.0:
        return x, None
    if rng is None:
        rng = np.random.default_rng()
    if p == 1.0:
        mask = np.zeros_like(x)
    else:
        keep = rng.random(x.shape) >= p  # True with probability 1 - p
        mask = keep.astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    """``dx = dout * mask``: the same values are dropped and rescaled as in the forward pass."""
    mask = cache
    return dout if mask is None else dout * mask
