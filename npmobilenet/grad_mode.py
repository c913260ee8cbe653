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

    As a decorator it works with or without parentheses: ``@no_grad()`` and ``@no_grad``.
    """

    def __new__(cls, function=None):
        self = super().__new__(cls)
        self._previous = []  # a stack, so one instance can be entered again inside itself
        # Used bare as ``@no_grad``, Python calls ``no_grad(function)``: wrap it at once.
        return self if function is None else self(function)

    def __init__(self, function=None):
        pass  # everything happens in __new__

    def __enter__(self):
        self._previous.append(is_grad_enabled())
        _state.enabled = False
        return self

    def __exit__(self, *exc_info):
        _state.enabled = self._previous.pop()
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with no_grad():
                return function(*args, **kwargs)

        return wrapper
