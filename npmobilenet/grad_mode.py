"""``no_grad()``: forward passes that keep no cache, for inference speed and memory.

Layers read this switch in ``forward``; the functional pairs never do. The switch is per
thread, as in PyTorch, so one thread's inference does not turn off another's training.
"""

import functools
import threading

_state = threading.local()


def is_grad_enabled():
    """True unless inside a :class:`no_grad` block (of this thread)."""
    return getattr(_state, "enabled", True)


class no_grad:
    """Context manager (and decorator) under which layers keep no cache for backward.

    >>> with no_grad():
    ...     logits = model(x)      # no cache kept; model.backward(...) would raise BackwardError
    """

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.enabled = False
        return self

    def __exit__(self, *exc_info):
        _state.enabled = self._previous
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with no_grad():
                return function(*args, **kwargs)

        return wrapper
