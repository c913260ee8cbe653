"""The exception types npmobilenet raises.

Every message says what was expected, what was found, and, where it helps, what to do.
Each type subclasses the built-in exception a Python user would already catch, so
``except ValueError`` keeps working.

=======================  ==================  ===================================================
type                     subclass of         raised for
=======================  ==================  ===================================================
``ShapeError``           ``ValueError``      an array with the wrong type, number of dimensions,
                                             channels, size or dtype
``WeightsError``         ``ValueError``      ``load_state_dict`` with missing, unexpected or
                                             mis-shaped keys
``BackwardError``        ``RuntimeError``    ``backward()`` with no cache to work from: before any
                                             ``forward()``, or after a forward under ``no_grad()``
=======================  ==================  ===================================================
"""

__all__ = ["NpMobileNetError", "ShapeError", "WeightsError", "BackwardError"]


class NpMobileNetError(Exception):
    """Base class of every error npmobilenet raises on purpose."""


class ShapeError(NpMobileNetError, ValueError):
    """An array has the wrong type, number of dimensions, channel count, size or dtype."""


class WeightsError(NpMobileNetError, ValueError):
    """A state dict does not fit the model: missing, unexpected or mis-shaped keys."""


class BackwardError(NpMobileNetError, RuntimeError):
    """``backward()`` was called without a cache from a ``forward()`` in grad mode."""
