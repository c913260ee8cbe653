"""Stateless forward/backward pairs (transitional: re-exports the fast versions)."""
from .fast import *  # noqa: F401,F403
from .fast import __all__  # noqa: F401
