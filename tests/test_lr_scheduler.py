"""The schedules of ``npmobilenet.optim.lr_scheduler`` against ``torch.optim.lr_scheduler``'s.

Each schedule gets random arguments from a seeded generator and two parameter groups with
different learning rates, on both sides; for 40 steps the learning rates (``get_last_lr()``,
each group's ``"lr"`` and ``"initial_lr"``) and ``last_epoch`` must equal torch's to 1e-12.
OneCycleLR's momentum (SGD's ``momentum``, Adam's ``beta1``) must follow torch's too, and an
optimizer driven by a schedule must take torch's steps. A state dict taken mid-run must
continue exactly as the uninterrupted run.
"""

import numpy as np
import pytest

from npmobilenet import optim
from npmobilenet.nn import Parameter
from npmobilenet.optim import lr_scheduler
from torch_helpers import assert_close

TIGHT = {np.dtype(np.float64): 1e-12}
STEPS = 40
LRS = (0.1, 0.03)
KINDS = ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "warm-up then cosine",
         "exponential, step, multistep"]


# --- the harness -------------------------------------------------------------------------------


def draw_one(name, rng):
    """``(name, kwargs)`` of one schedule with random arguments."""
    if name == "StepLR":
        return name, {"step_size": int(rng.integers(1, 8)), "gamma": rng.uniform(0.1, 0.9)}
    if name == "MultiStepLR":
        milestones = sorted(int(m) for m in rng.integers(0, STEPS, 4))
        return name, {"milestones": milestones + milestones[1:2], "gamma": rng.uniform(0.1, 0.9)}  # one twice
    if name == "ExponentialLR":
        return name, {"gamma": rng.uniform(0.8, 0.99)}
    if name == "CosineAnnealingLR":   # T_max well under 40 steps: past the bottom and back up
        return name, {"T_max": int(rng.integers(3, 15)), "eta_min": float(rng.choice([0.0, rng.uniform(0, 1e-3)]))}
    return name, {"start_factor": rng.uniform(0.01, 1.0), "end_factor": rng.uniform(0.0, 1.0),
                  "total_iters": int(rng.integers(1, 10))}


def draw_schedule(kind, seed):
    """``(schedules, milestones)``: one schedule, or several for SequentialLR."""
    rng = np.random.default_rng([0x5C, seed])
    if kind == "warm-up then cosine":
        return [draw_one("LinearLR", rng), draw_one("CosineAnnealingLR", rng)], [int(rng.integers(1, 10))]
    if kind == "exponential, step, multistep":
        first = int(rng.integers(1, 10))
        schedules = [draw_one("ExponentialLR", rng), draw_one("StepLR", rng), draw_one("MultiStepLR", rng)]
        return schedules, [first, first + int(rng.integers(1, 10))]
    return [draw_one(kind, rng)], []


def build(module, optimizer, spec):
    """The scheduler ``spec`` describes, built from ``module`` (ours or torch's lr_scheduler)."""
    schedules, milestones = spec
    schedulers = [getattr(module, name)(optimizer, **kwargs) for name, kwargs in schedules]
    if len(schedulers) == 1:
        return schedulers[0]
    return module.SequentialLR(optimizer, schedulers, milestones=milestones)


def our_optimizer(name="SGD", lrs=LRS, arrays=None, **kwargs):
    arrays = arrays or [np.zeros(1)] * len(lrs)
    groups = [{"params": [Parameter(array.copy())], "lr": lr} for lr, array in zip(lrs, arrays)]
    return getattr(optim, name)(groups, **kwargs)


def torch_optimizer(torch, name="SGD", lrs=LRS, arrays=None, **kwargs):
    arrays = arrays or [np.zeros(1)] * len(lrs)
    groups = [{"params": [torch.tensor(array, requires_grad=True)], "lr": lr} for lr, array in zip(lrs, arrays)]
    return getattr(torch.optim, name)(groups, **kwargs, foreach=False)


def momentum(optimizer):
    return [group["betas"][0] if "betas" in group else group["momentum"] for group in optimizer.param_groups]


def assert_same_schedule(ours, theirs, what, with_momentum=False):
    assert ours.last_epoch == theirs.last_epoch, what
    assert_close(np.array(ours.get_last_lr()), np.array(theirs.get_last_lr()), np.float64, f"{what}: get_last_lr",
                 TIGHT)
    for key in ["lr", "initial_lr"]:
        assert_close(np.array([g[key] for g in ours.optimizer.param_groups]),
                     np.array([g[key] for g in theirs.optimizer.param_groups]), np.float64, f"{what}: {key}", TIGHT)
    if with_momentum:
        assert_close(np.array(momentum(ours.optimizer)), np.array(momentum(theirs.optimizer)), np.float64,
                     f"{what}: momentum", TIGHT)


# --- against torch -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", KINDS)
def test_learning_rates_equal_torchs_step_for_step(torch, kind, seed):
    spec = draw_schedule(kind, seed)
    ours = build(lr_scheduler, our_optimizer(momentum=0.9), spec)
    theirs = build(torch.optim.lr_scheduler, torch_optimizer(torch, momentum=0.9), spec)
    assert_same_schedule(ours, theirs, f"{spec}, created")
    for step in range(STEPS):
        theirs.optimizer.step()        # torch wants the optimizer stepped first (no grads: no change)
        ours.step()
        theirs.step()
        assert_same_schedule(ours, theirs, f"{spec}, step {step + 1}")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("pair", [("ExponentialLR", "CosineAnnealingLR"), ("MultiStepLR", "LinearLR"),
                                  ("CosineAnnealingLR", "StepLR")])
def test_schedules_stepped_back_to_back_chain_as_torchs(torch, pair, seed):
    """Two schedules on one optimizer, both stepped every epoch: each works from the rate the
    other left, so only torch's recursive formulas give torch's numbers."""
    rng = np.random.default_rng([0xC4, seed])
    specs = [draw_one(name, rng) for name in pair]
    ours_optimizer, theirs_optimizer = our_optimizer(), torch_optimizer(torch)
    ours = [build(lr_scheduler, ours_optimizer, ([spec], [])) for spec in specs]
    theirs = [build(torch.optim.lr_scheduler, theirs_optimizer, ([spec], [])) for spec in specs]
    for step in range(STEPS):
        theirs_optimizer.step()
        for scheduler in ours + theirs:
            scheduler.step()
        for mine, reference in zip(ours, theirs):
            assert_same_schedule(mine, reference, f"{specs}, step {step + 1}")


ONE_CYCLE = [(name, strategy, three_phase) for name in ["SGD", "Adam"] for strategy in ["cos", "linear"]
             for three_phase in [False, True]]


def draw_one_cycle(strategy, three_phase, seed):
    rng = np.random.default_rng([0x1C, seed])
    return {"max_lr": [rng.uniform(0.05, 1.0), rng.uniform(0.05, 1.0)], "total_steps": int(rng.integers(30, 40)),
            "pct_start": rng.uniform(0.1, 0.5), "anneal_strategy": strategy, "base_momentum": rng.uniform(0.7, 0.85),
            "max_momentum": [rng.uniform(0.86, 0.99), rng.uniform(0.86, 0.99)], "div_factor": rng.uniform(5, 50),
            "final_div_factor": rng.uniform(1e2, 1e4), "three_phase": three_phase}


@pytest.mark.parametrize("name, strategy, three_phase", ONE_CYCLE)
def test_one_cycle_learning_rate_and_momentum_equal_torchs(torch, name, strategy, three_phase):
    kwargs = draw_one_cycle(strategy, three_phase, seed=len(name) + three_phase)
    ours = lr_scheduler.OneCycleLR(our_optimizer(name), **kwargs)
    theirs = torch.optim.lr_scheduler.OneCycleLR(torch_optimizer(torch, name), **kwargs)
    assert_same_schedule(ours, theirs, f"{kwargs}, created", with_momentum=True)
    for step in range(kwargs["total_steps"]):
        theirs.optimizer.step()
        ours.step()
        theirs.step()
        assert_same_schedule(ours, theirs, f"{kwargs}, step {step + 1}", with_momentum=True)
    for scheduler in [theirs, ours]:        # one step past total_steps is an error on both sides
        with pytest.raises(ValueError, match="Tried to step"):
            scheduler.step()


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_an_optimizer_under_one_cycle_takes_torchs_steps(torch, name):
    """The schedule's lr and momentum (SGD, RMSprop) or beta1 (Adam) reach the update rule."""
    rng = np.random.default_rng(11)
    arrays = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    kwargs = {"momentum": 0.5, "nesterov": True} if name == "SGD" else {}
    ours = lr_scheduler.OneCycleLR(our_optimizer(name, arrays=arrays, **kwargs), max_lr=[0.1, 0.05], total_steps=30)
    theirs = torch.optim.lr_scheduler.OneCycleLR(torch_optimizer(torch, name, arrays=arrays, **kwargs),
                                                 max_lr=[0.1, 0.05], total_steps=30)
    our_params = [group["params"][0] for group in ours.optimizer.param_groups]
    their_params = [group["params"][0] for group in theirs.optimizer.param_groups]
    for step in range(30):
        for ours_p, theirs_p in zip(our_params, their_params):
            grad = rng.standard_normal(ours_p.data.shape)
            ours_p.grad[...] = grad
            theirs_p.grad = torch.from_numpy(grad.copy())
        ours.optimizer.step()
        theirs.optimizer.step()
        ours.step()
        theirs.step()
        for index, (ours_p, theirs_p) in enumerate(zip(our_params, their_params)):
            assert_close(ours_p.data, theirs_p.detach().numpy(), np.float64, f"{name} step {step} group {index}", TIGHT)


# --- state dicts, errors -------------------------------------------------------------------------


def one_cycle_spec(optimizer):
    return lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=STEPS, three_phase=True)


@pytest.mark.parametrize("kind", KINDS + ["OneCycleLR"])
def test_state_dict_round_trip_mid_run_continues_identically(kind):
    def fresh():
        optimizer = our_optimizer("Adam" if kind == "OneCycleLR" else "SGD")
        return one_cycle_spec(optimizer) if kind == "OneCycleLR" else build(lr_scheduler, optimizer, spec)

    spec = None if kind == "OneCycleLR" else draw_schedule(kind, seed=1)
    uninterrupted = fresh()
    for _ in range(STEPS // 2):
        uninterrupted.step()
    saved_scheduler, saved_optimizer = uninterrupted.state_dict(), uninterrupted.optimizer.state_dict()
    resumed = fresh()                                     # as torch asks: scheduler first, then optimizer
    resumed.load_state_dict(saved_scheduler)
    resumed.optimizer.load_state_dict(saved_optimizer)
    assert "optimizer" not in saved_scheduler
    for step in range(STEPS // 2, STEPS):
        uninterrupted.step()
        resumed.step()
        assert resumed.get_last_lr() == uninterrupted.get_last_lr(), f"{kind}, step {step + 1}"
        assert momentum(resumed.optimizer) == momentum(uninterrupted.optimizer)
        assert resumed.last_epoch == uninterrupted.last_epoch


def test_state_dict_is_a_copy():
    scheduler = lr_scheduler.MultiStepLR(our_optimizer(), milestones=[2, 4])
    saved = scheduler.state_dict()
    for _ in range(5):
        scheduler.step()
    assert saved["last_epoch"] == 0 and saved["_last_lr"] == list(LRS)


def test_get_last_lr_is_a_list_per_group_and_initial_lr_is_kept():
    optimizer = our_optimizer()
    first = lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    first.step()
    assert first.get_last_lr() == [LRS[0] * 0.5, LRS[1] * 0.5]
    second = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)    # a second schedule keeps initial_lr
    assert second.base_lrs == list(LRS)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(our_optimizer(), step_size=2, last_epoch=3)


@pytest.mark.parametrize("make", [
    lambda opt: lr_scheduler.LinearLR(opt, start_factor=0),
    lambda opt: lr_scheduler.LinearLR(opt, end_factor=1.5),
    lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1),
    lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="cosine"),
    lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1),
    lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=[0.1], total_steps=10),
    lambda opt: lr_scheduler.SequentialLR(opt, [lr_scheduler.ExponentialLR(opt, 0.9)], milestones=[3]),
    lambda opt: lr_scheduler.SequentialLR(opt, [lr_scheduler.ExponentialLR(our_optimizer(), 0.9)], milestones=[]),
])
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make(our_optimizer())
