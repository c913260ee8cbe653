"""The linear layer, fast: the plain version is already one matrix product, so it is used as it is.

``x @ w.T`` is a single BLAS call, which runs at the machine's full speed; there is no memory
order to change and nothing to fold. :mod:`npmobilenet.nn` runs
:mod:`npmobilenet.functional.linear`.
"""

from ..linear import linear_backward, linear_forward

__all__ = ["linear_forward", "linear_backward"]
