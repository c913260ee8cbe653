"""The optimizers of ``npmobilenet.optim`` against ``torch.optim``'s, step for step.

Each run gives both sides the same parameters, the same hyperparameters (drawn at random by a
seeded generator: momentum, dampening, Nesterov, weight decay, maximize, amsgrad, centered,
two parameter groups with their own values) and the same random gradients at every step, for
30 steps, and compares every parameter after every step: to 1e-12 relative to the largest
magnitude in float64, to float32's precision in float32, whose parameters and state must stay
float32. A parameter whose grad is None, and a frozen one (``requires_grad`` False), must not
move. State dicts must have torch's layout and continue a run exactly.
"""

import re
import subprocess
import sys

import numpy as np
import pytest

from npmobilenet import optim
from npmobilenet.nn import Parameter
from torch_helpers import assert_close

NAMES = ["SGD", "Adam", "AdamW", "RMSprop"]
SEEDS = range(8)
STEPS = 30
TIGHT = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-6}

# Parameters by group; "none" never has a grad, "frozen" has requires_grad False (torch: no grad).
LAYOUT = [[("a", (3, 4)), ("b", (5,)), ("none", (2, 2))],
          [("c", (2, 3, 3)), ("d", (4,)), ("frozen", (3,))]]


# --- the harness -----------------------------------------------------------------------------


def draw_hyperparameters(name, rng, switches):
    """Random hyperparameters for optimizer ``name``, drawn by ``rng``.

    The three lowest bits of ``switches`` turn the options on and off, so that eight seeds
    see every combination: SGD momentum, Nesterov, maximize; Adam amsgrad, maximize, weight
    decay; RMSprop centered, momentum, maximize.
    """
    first, second, third = (bool(switches >> bit & 1) for bit in range(3))

    def sometimes(value):
        return value if rng.random() < 0.6 else 0.0

    if name == "SGD":
        momentum = rng.uniform(0.1, 0.95) if first else 0.0
        nesterov = first and second
        return {"lr": rng.uniform(0.01, 0.2), "momentum": momentum,
                "dampening": 0.0 if nesterov else sometimes(rng.uniform(0.05, 0.9)),
                "weight_decay": sometimes(rng.uniform(1e-3, 0.1)), "nesterov": nesterov, "maximize": third}
    if name == "RMSprop":
        return {"lr": rng.uniform(1e-3, 0.05), "alpha": rng.uniform(0.8, 0.999), "eps": 10 ** rng.uniform(-8, -3),
                "weight_decay": sometimes(rng.uniform(1e-3, 0.1)), "centered": first,
                "momentum": rng.uniform(0.1, 0.95) if second else 0.0, "maximize": third}
    return {"lr": rng.uniform(1e-3, 0.05), "betas": (rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.9999)),
            "eps": 10 ** rng.uniform(-8, -3), "weight_decay": rng.uniform(1e-3, 0.1) if third else 0.0,
            "amsgrad": first, "maximize": second}


def draw_run(name, seed):
    """``(defaults, second_group)``: the second group overrides lr and weight decay, or everything."""
    rng = np.random.default_rng([0x0F, seed])
    defaults = draw_hyperparameters(name, rng, switches=seed)
    other = draw_hyperparameters(name, rng, switches=int(rng.integers(8)))
    second = other if rng.random() < 0.5 else {"lr": other["lr"], "weight_decay": other["weight_decay"]}
    return defaults, second


def initial_arrays(seed, dtype):
    rng = np.random.default_rng([0x1A, seed])
    return {key: rng.standard_normal(shape).astype(dtype) for group in LAYOUT for key, shape in group}


def gradients(seed, step, dtype):
    """The gradient of each parameter that has one at ``step``, each at its own random scale."""
    rng = np.random.default_rng([0x6A, seed, step])
    return {key: (rng.standard_normal(shape) * 10 ** rng.uniform(-2, 1)).astype(dtype)
            for group in LAYOUT for key, shape in group if key != "none"}


class Ours:
    """Our parameters and optimizer; ``step(grads)`` fills the grads and steps."""

    def __init__(self, name, defaults, second, arrays):
        self.params = {key: Parameter(array.copy()) for key, array in arrays.items()}
        self.params["none"].grad = None
        self.params["frozen"].requires_grad = False
        groups = [{"params": [self.params[key] for key, _ in LAYOUT[0]]},
                  {"params": [self.params[key] for key, _ in LAYOUT[1]], **second}]
        self.optimizer = getattr(optim, name)(groups, **defaults)

    def step(self, grads):
        for key, grad in grads.items():
            self.params[key].grad[...] = grad
        self.optimizer.step()


class Torch:
    """torch's twin of :class:`Ours`; "none" and "frozen" never get a grad."""

    def __init__(self, torch, name, defaults, second, arrays):
        self.torch = torch
        self.params = {key: torch.tensor(array, requires_grad=True) for key, array in arrays.items()}
        groups = [{"params": [self.params[key] for key, _ in LAYOUT[0]]},
                  {"params": [self.params[key] for key, _ in LAYOUT[1]], **second}]
        self.optimizer = getattr(torch.optim, name)(groups, **defaults, foreach=False)

    def step(self, grads):
        for key, grad in grads.items():
            if key != "frozen":
                self.params[key].grad = self.torch.from_numpy(grad.copy())
        self.optimizer.step()

    def arrays(self):
        return {key: tensor.detach().numpy() for key, tensor in self.params.items()}


def assert_same_parameters(ours, theirs, dtype, what, tolerance=TIGHT):
    for key, expected in theirs.items():
        assert_close(ours[key].data, expected, dtype, f"{what}: parameter {key}", tolerance)


def torch_state_dict_as_numpy(state_dict):
    """torch's optimizer state dict with every tensor made an array, as a checkpoint reader gives it."""
    state = {index: {key: value.numpy() for key, value in values.items()}
             for index, values in state_dict["state"].items()}
    return {"state": state, "param_groups": state_dict["param_groups"]}


# --- against torch -----------------------------------------------------------------------------


def run_both(torch, name, seed, dtype):
    """Both sides over 30 steps of the same gradients; parameters compared after every step."""
    defaults, second = draw_run(name, seed)
    arrays = initial_arrays(seed, dtype)
    ours, theirs = Ours(name, defaults, second, arrays), Torch(torch, name, defaults, second, arrays)
    for step in range(STEPS):
        grads = gradients(seed, step, dtype)
        ours.step(grads)
        theirs.step(grads)
        assert_same_parameters(ours.params, theirs.arrays(), dtype, f"{name} {defaults} {second}, step {step}")
    return ours, theirs, arrays


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", NAMES)
def test_every_step_equals_torch_in_float64(torch, name, seed):
    ours, theirs, arrays = run_both(torch, name, seed, np.float64)
    np.testing.assert_array_equal(ours.params["none"].data, arrays["none"])
    np.testing.assert_array_equal(ours.params["frozen"].data, arrays["frozen"])

    # The state dict has torch's layout and torch's values.
    mine, reference = ours.optimizer.state_dict(), torch_state_dict_as_numpy(theirs.optimizer.state_dict())
    assert sorted(mine["state"]) == sorted(reference["state"])
    for index, values in reference["state"].items():
        assert sorted(mine["state"][index]) == sorted(values), f"state keys of parameter {index}"
        for key, value in values.items():
            if key == "step":
                assert mine["state"][index]["step"] == int(value) == STEPS
            else:
                assert_close(mine["state"][index][key], value, np.float64, f"state {index} {key}", TIGHT)
    for group, reference_group in zip(mine["param_groups"], reference["param_groups"]):
        assert group["params"] == reference_group["params"]
        for key, value in group.items():
            assert reference_group[key] == value, f"group value {key}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32_and_follows_torch(torch, name, seed):
    ours, _, _ = run_both(torch, name, seed, np.float32)
    for param in ours.params.values():
        assert param.data.dtype == np.float32
    for values in ours.optimizer.state.values():
        for key, value in values.items():
            assert key == "step" or value.dtype == np.float32, key


@pytest.mark.parametrize("seed", [5, 7])
@pytest.mark.parametrize("name", NAMES)
def test_torch_state_dict_loaded_mid_run_continues_as_torch(torch, name, seed):
    """A state dict torch wrote (its tensors as arrays) loads into ours and carries on as torch does."""
    defaults, second = draw_run(name, seed)
    arrays = initial_arrays(seed, np.float64)
    theirs = Torch(torch, name, defaults, second, arrays)
    for step in range(STEPS // 2):
        theirs.step(gradients(seed, step, np.float64))
    other = draw_hyperparameters(name, np.random.default_rng(99), switches=7)   # overwritten by the load
    ours = Ours(name, other, {}, theirs.arrays())
    ours.optimizer.load_state_dict(torch_state_dict_as_numpy(theirs.optimizer.state_dict()))
    for step in range(STEPS // 2, STEPS):
        grads = gradients(seed, step, np.float64)
        ours.step(grads)
        theirs.step(grads)
        assert_same_parameters(ours.params, theirs.arrays(), np.float64, f"{name}, step {step}")


# --- state dicts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [5, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_mid_run_continues_identically(name, dtype, seed):
    defaults, second = draw_run(name, seed)
    arrays = initial_arrays(seed, dtype)
    uninterrupted = Ours(name, defaults, second, arrays)
    for step in range(STEPS // 2):
        uninterrupted.step(gradients(seed, step, dtype))
    saved = uninterrupted.optimizer.state_dict()
    resumed = Ours(name, draw_hyperparameters(name, np.random.default_rng(7), switches=0), {},
                   {key: param.data for key, param in uninterrupted.params.items()})
    resumed.optimizer.load_state_dict(saved)
    assert resumed.optimizer.param_groups[1]["lr"] == second["lr"]
    for step in range(STEPS // 2, STEPS):
        grads = gradients(seed, step, dtype)
        uninterrupted.step(grads)
        resumed.step(grads)
    for key, param in uninterrupted.params.items():
        np.testing.assert_array_equal(resumed.params[key].data, param.data, err_msg=key)
        assert resumed.params[key].data.dtype == np.dtype(dtype)


def test_state_dict_is_a_copy_in_torchs_layout():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(2))
    optimizer = optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1, momentum=0.9)
    p.grad[...] = 1.0
    q.grad = None
    optimizer.step()
    saved = optimizer.state_dict()
    assert list(saved) == ["state", "param_groups"]
    assert list(saved["state"]) == [0]                       # q has no state: it never had a grad
    assert [group["params"] for group in saved["param_groups"]] == [[0], [1]]
    assert [group["lr"] for group in saved["param_groups"]] == [0.1, 0.5]
    buffer = saved["state"][0]["momentum_buffer"].copy()
    optimizer.step()
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], buffer)
    assert saved["state"][0]["momentum_buffer"] is not optimizer.state[p]["momentum_buffer"]


def test_load_state_dict_checks_the_groups():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(2))
    saved = optim.Adam([p, q]).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.Adam([{"params": [p]}, {"params": [q]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.Adam([p]).load_state_dict(saved)


def test_adamw_stays_decoupled_after_loading_an_adam_state_dict():
    p = Parameter(np.ones(3))
    optimizer = optim.AdamW([p])
    optimizer.load_state_dict(optim.Adam([Parameter(np.ones(3))]).state_dict())
    assert optimizer.param_groups[0]["decoupled_weight_decay"] is True


# --- groups, gradients, errors -------------------------------------------------------------------


def test_groups_take_the_defaults_they_leave_out_and_add_param_group():
    p, q, r = (Parameter(np.ones(2)) for _ in range(3))
    optimizer = optim.SGD([{"params": [p]}, {"params": q, "weight_decay": 0}], lr=0.1, weight_decay=1e-4)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [1e-4, 0]
    assert optimizer.param_groups[1]["params"] == [q]
    optimizer.add_param_group({"params": [r], "lr": 0.01})
    assert optimizer.param_groups[2]["lr"] == 0.01 and optimizer.param_groups[2]["momentum"] == 0
    with pytest.raises(ValueError, match="more than one parameter group"):
        optimizer.add_param_group({"params": [p]})


def test_named_parameters_give_param_names():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(2))
    optimizer = optim.SGD([("weight", p), ("bias", q)], lr=0.1)
    assert optimizer.param_groups[0]["params"] == [p, q]
    assert optimizer.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]


@pytest.mark.parametrize("params, error", [
    ([], ValueError), ({Parameter(np.ones(2))}, TypeError), ([np.ones(2)], TypeError),
    (Parameter(np.ones(2)), TypeError),
])
def test_bad_params(params, error):
    with pytest.raises(error):
        optim.SGD(params, lr=0.1)


def test_zero_grad_zeroes_in_place_and_leaves_none():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(2))
    p.grad[...] = 5.0
    grad = p.grad
    q.grad = None
    optim.Adam([p, q]).zero_grad()
    assert p.grad is grad and not p.grad.any()
    assert q.grad is None


def test_step_returns_the_closure_loss():
    p = Parameter(np.ones(2))
    assert optim.SGD([p], lr=0.1).step(lambda: 3.5) == 3.5


BAD_HYPERPARAMETERS = [
    ("SGD", {"lr": -1}), ("SGD", {"lr": 0.1, "momentum": -0.5}), ("SGD", {"lr": 0.1, "weight_decay": -1e-4}),
    ("SGD", {"lr": 0.1, "nesterov": True}), ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    ("Adam", {"lr": -1e-3}), ("Adam", {"eps": -1e-8}), ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, -0.5)}), ("Adam", {"weight_decay": -1.0}), ("AdamW", {"betas": (-0.1, 0.999)}),
    ("AdamW", {"lr": -2.0}), ("RMSprop", {"lr": -0.01}), ("RMSprop", {"alpha": -0.9}), ("RMSprop", {"eps": -1.0}),
    ("RMSprop", {"momentum": -0.9}), ("RMSprop", {"weight_decay": -1.0}),
]


@pytest.mark.parametrize("name, kwargs", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_torchs_value_error(torch, name, kwargs):
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
        getattr(optim, name)([Parameter(np.zeros(2))], **kwargs)


def test_a_bad_value_in_a_group_raises_too():
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD([{"params": [Parameter(np.zeros(2))], "lr": -1}], lr=0.1)


def test_importing_optim_does_not_import_torch():
    code = "import sys, npmobilenet.optim, npmobilenet.optim.lr_scheduler; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
