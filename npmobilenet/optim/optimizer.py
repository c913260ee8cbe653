"""The base class of every optimizer: parameter groups, per-parameter state, state dicts.

An optimizer holds a list of *parameter groups*. A group is a plain dict: the parameters it
updates under ``"params"`` and its own hyperparameters (``"lr"``, ``"weight_decay"``, ...),
with the optimizer's defaults filling whatever a group leaves out. Schedules change a group's
``"lr"`` between steps; the next ``step()`` reads it. Each parameter also has a *state*: a dict
(``optimizer.state[p]``) holding what the update rule carries from one step to the next, such
as SGD's momentum buffer or Adam's moving averages, created on the parameter's first step.

``state_dict()`` has torch's shape: parameters are replaced by their position (counting through
the groups in order), so the dict holds only numbers and arrays and can be saved anywhere::

    {"state": {0: {"momentum_buffer": array(...)}, 1: {...}},
     "param_groups": [{"lr": 0.1, "momentum": 0.9, ..., "params": [0, 1]}]}

Unlike torch's, whose tensors are the live state, the arrays here are copies: stepping on
after ``state_dict()`` does not change a dict already taken.
"""

import copy

import numpy as np

from ..nn import Parameter

__all__ = ["Optimizer"]

_SET_MESSAGE = ("optimizer parameters need to be organized in ordered collections, but the ordering of "
                "parameters in sets changes between runs. Please use a list instead.")
_WHAT = {"lr": "learning rate", "eps": "epsilon value", "momentum": "momentum value",
         "weight_decay": "weight_decay value", "alpha": "alpha value"}


def check(condition, message):
    """Raise ``ValueError(message)`` unless ``condition``: the hyperparameter checks read as one line each."""
    if not condition:
        raise ValueError(message)


def check_nonnegative(group, *names):
    """Raise torch's ``ValueError("Invalid learning rate: -1")`` for the first negative one of ``names``."""
    for name in names:
        check(group[name] >= 0, f"Invalid {_WHAT[name]}: {group[name]}")


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of :class:`~npmobilenet.nn.Parameter` (or of ``(name, parameter)``
    pairs, as ``model.named_parameters()`` gives), or a list of dicts, one per group, each with
    ``"params"`` and any hyperparameters that differ from ``defaults``::

        SGD([{"params": weights, "weight_decay": 1e-4},
             {"params": norms_and_biases, "weight_decay": 0}], lr=0.1, momentum=0.9)

    A subclass states its hyperparameter checks in :meth:`_check_hyperparameters` and its update
    rule in :meth:`_update`; this class runs the loop over groups and parameters in :meth:`step`.
    """

    def __init__(self, params, defaults):
        self._check_hyperparameters(defaults)
        self.defaults = dict(defaults)
        self.state = {}           # Parameter -> dict, filled on each parameter's first step
        self.param_groups = []    # a list of dicts, as torch's
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Parameters or dicts, but got {type(params).__name__}")
        if isinstance(params, (set, frozenset)):
            raise TypeError(_SET_MESSAGE)
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _check_hyperparameters(self, hyperparameters):
        """Raise ``ValueError`` for an invalid value (a subclass states its rules)."""

    def _update(self, param, grad, state, group):
        """Update the array ``param`` in place from ``grad``, ``state`` (a dict) and the group's values."""
        raise NotImplementedError

    def add_param_group(self, param_group):
        """Add a group (a dict with ``"params"``) to ``param_groups``; defaults fill what it leaves out.

        Useful when fine-tuning: unfreeze layers and hand them to the optimizer as training goes.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(_SET_MESSAGE)
        params = list(params)
        if params and all(isinstance(item, tuple) for item in params):
            group["param_names"] = [name for name, _ in params]
            params = [param for _, param in params]
        for param in params:
            if not isinstance(param, Parameter):
                raise TypeError(f"optimizer can only optimize Parameters, but one of the params is "
                                f"{type(param).__name__}")
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_hyperparameters(group)

        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        seen = {id(p) for other in self.param_groups for p in other["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        if self.param_groups and ("param_names" in group) != ("param_names" in self.param_groups[0]):
            raise ValueError("all optimizer param groups should be with/without names")
        self.param_groups.append(group)

    def zero_grad(self):
        """Set every parameter's ``.grad`` to zeros, in place (a ``None`` grad stays ``None``)."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient, group by group; returns ``closure()`` if given.

        A parameter with ``grad`` None, or with ``requires_grad`` False (frozen), is skipped,
        as torch skips a parameter whose grad is None: its state does not advance either.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None or not getattr(param, "requires_grad", True):
                    continue
                grad = np.asarray(param.grad, dtype=param.data.dtype)
                state = self.state.get(param, {})
                self._update(param.data, grad, state, group)
                if state:
                    self.state[param] = state
        return loss

    # --- saving and loading -----------------------------------------------------------------

    def state_dict(self):
        """The optimizer's state as torch lays it out: ``{"state": ..., "param_groups": ...}``.

        ``state`` maps a parameter's position (counting through the groups in order) to a copy
        of its state dict; each group is a copy of the group with ``"params"`` a list of positions.
        """
        position = {}
        groups = []
        for group in self.param_groups:
            packed = {key: copy.deepcopy(value) for key, value in group.items() if key != "params"}
            packed["params"] = []
            for param in group["params"]:
                position.setdefault(id(param), len(position))
                packed["params"].append(position[id(param)])
            groups.append(packed)
        state = {position[id(param)]: copy.deepcopy(values) for param, values in self.state.items()}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a dict from :meth:`state_dict` (ours, or torch's with its tensors made arrays).

        Groups must match in number and size. Arrays are copied and cast to their parameter's
        dtype; ``"step"`` becomes a Python int. Load the optimizer *after* creating any
        learning-rate scheduler, since a new scheduler sets the groups' ``"lr"``.
        """
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(saved["params"]) != len(group["params"])
               for saved, group in zip(saved_groups, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size "
                             "of optimizer's group")
        param_at = {}
        for saved, group in zip(saved_groups, self.param_groups):
            param_at.update(zip(saved["params"], group["params"]))

        self.state = {}
        for key, values in state_dict["state"].items():
            param = param_at[key]
            self.state[param] = {name: _cast(name, value, param) for name, value in values.items()}

        for saved, group in zip(saved_groups, self.param_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
            for name, default in self.defaults.items():
                saved.setdefault(name, default)
        self.param_groups = saved_groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key not in ("params", "param_names")]
        return "\n".join(lines + [")"])


def _cast(name, value, param):
    """A copy of one saved state value: ``step`` as an int, arrays in the parameter's dtype."""
    if name == "step":
        return int(value)
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        return np.array(value, dtype=param.data.dtype)
    return copy.deepcopy(value)
