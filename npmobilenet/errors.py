"""The exception types npmobilenet raises.

Every message says what was expected, what was found, and, where it helps, what to do.
Each type subclasses the built-in exception a Python user would already catch, so
``except ValueError`` keeps working.

===========================  ==================  =====================================================
type                         subclass of         raised for
===========================  ==================  =====================================================
``ShapeError``               ``ValueError``      an array with the wrong type, number of dimensions,
                                                 channels, size or dtype
``ImageError``               ``ValueError``      an image file that is missing, empty, truncated,
                                                 not an image, or too large to decode safely
``WeightsError``             ``ValueError``      weights that do not fit (missing, unexpected or
                                                 mis-shaped keys), an unreadable checkpoint, an
                                                 unknown weights name, a failed download or hash
``UnsafeCheckpointError``    ``WeightsError``    a checkpoint whose pickle asks for anything off the
                                                 allow-list (refused before anything runs)
``BackwardError``            ``RuntimeError``    ``backward()`` with no cache to work from: before any
                                                 ``forward()``, or after a forward under ``no_grad()``
===========================  ==================  =====================================================
"""

__all__ = [
    "NpMobileNetError", "ShapeError", "ImageError", "WeightsError", "UnsafeCheckpointError",
    "BackwardError",
]


class NpMobileNetError(Exception):
    """Base class of every error npmobilenet raises on purpose."""


class ShapeError(NpMobileNetError, ValueError):
    """An array has the wrong type, number of dimensions, channel count, size or dtype."""


class ImageError(NpMobileNetError, ValueError):
    """An image file is missing, empty, truncated, not an image, or too large to decode safely."""


class WeightsError(NpMobileNetError, ValueError):
    """Weights that cannot be used: a state dict that does not fit, or a checkpoint that cannot be read or fetched."""


class UnsafeCheckpointError(WeightsError):
    """A checkpoint's pickle names a global that is not on the allow-list; nothing in it was run."""


class BackwardError(NpMobileNetError, RuntimeError):
    """``backward()`` was called without a cache from a ``forward()`` in grad mode."""
