"""Assignment 4, optimizers and fine-tuning: the graded checks.

The notebook's optimizers, stepped side by side with :mod:`npmobilenet.optim` (which takes
torch.optim's steps, to rounding) on gradients the notebook does not show, several steps in a
row, in float64 and on a model's float32 parameters; its training step beside the library's on
a small network; and its fine-tuning run, which must classify the ants and bees of the
validation set well enough:

=================================================================================  ==================================
``SGD(params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)``  ``.zero_grad()``, ``.step()``
``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)``           ``.zero_grad()``, ``.step()``
``train_step(model, criterion, optimizer, x, y) -> loss``                           forward, loss, backward, step
``extract_features(model, loader) -> (features, labels)``                           pooled features, (N, 1280)
``train_classifier(features, labels) -> (weight, bias)``                            a new 2-class head
=================================================================================  ==================================

A wrong update rule is caught by its values, and the hint names the mistake when the values are
those of a known one (:func:`sgd_steps` and :func:`adam_steps` take each mistake's steps): a
momentum buffer averaged instead of summed, dampening on the first step (a buffer that starts
at zeros), weight decay outside the momentum or decoupled, Nesterov's look-ahead missing,
Adam without bias correction or counting its steps wrong, eps inside the square root, the
parameters left unchanged (a local name rebound instead of the array updated in place), a
generator of parameters used up by the first step.

**The fine-tuning check** does not trust what the notebook prints: it computes the features of
the 397 photos itself (:func:`hymenoptera_features`, once per process), calls the notebook's
``train_classifier`` on the training ones, and counts the validation photos its weights
classify right. The features are MobileNetV2's with the shared ImageNet weights, frozen, batch
norm in evaluation mode, on centre crops of 128 pixels (resize 146): with frozen features and no
augmentation, training the head on features computed once is the same training as running the
whole network at every step, and 128-pixel crops cost a quarter of 224-pixel ones. The recipe
of the notebook (SGD, lr 0.01, momentum 0.9, weight decay 1e-4, batches of 16, 30 epochs)
reaches 0.935 there with its seed 0, 0.908 to 0.941 over seeds 0 to 19 (0.95 at 224 pixels); the
bar is :data:`ACCURACY_BAR`. An optimizer that does not work (a step up the gradient, a buffer
that never moves, labels shuffled apart from their features) stays near chance, 0.46 to 0.6.
"""

import copy
import functools
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import nn, optim
from ..grad_mode import no_grad
from .checks import Check, CheckFailed, Task, TimeLimit, describe_exception, notebook_frames
from .compare import FLOAT32_TOLERANCE, TOLERANCE, describe_value, expect_array, expect_close

ID = "04-optimizer-finetuning"
TITLE = "Optimizers and fine-tuning: SGD and Adam as torch.optim defines them, a training step, ants and bees"

ACCURACY_BAR = 0.85  # the validation accuracy train_classifier must reach on the grader's features
CROP_SIZE, RESIZE_SIZE = 128, 146  # centre crops of 128 pixels, from images resized to 146 (as 224 from 256)
SHARED_FROM_NOTEBOOK = Path("../../../../shared")  # the shared folder, seen from tutorials/assignments/NN-name/
WEIGHTS_FILE = Path("weights") / "mobilenet_v2_imagenet_qat.pth"
DATA_FOLDER = Path("datasets") / "hymenoptera"

# --- calling the student's classes -------------------------------------------------------------


def run(label, function, *args, **kwargs):
    """``function(*args, **kwargs)``, the student's code; what it raises becomes :class:`CheckFailed` naming ``label``.

    ``label`` is what the student wrote: ``"SGD"`` (the constructor), ``"SGD.step"``.
    """
    try:
        return function(*args, **kwargs)
    except (TimeLimit, KeyboardInterrupt):
        raise
    except NotImplementedError as error:
        raise CheckFailed(not_written(label, error), about_input=False) from None
    except BaseException as error:  # SystemExit too: a student's code must not end the grading
        raise CheckFailed(f"{label} raised {describe_exception(error)}") from None


def not_written(label, error):
    """The hint for a ``NotImplementedError`` raised by ``label`` or by a function of the notebook it calls."""
    frames = notebook_frames(error)
    inner = frames[-1].name if frames else label
    own = {label, label.rpartition(".")[2], "<module>"} | ({"__init__"} if "." not in label else set())
    if inner in own:
        return f"{label} is not written yet: it raises NotImplementedError"
    return f"{label} calls {inner}, which is not written yet: it raises NotImplementedError"


def construct(student, name, *args, **kwargs):
    """An instance of the notebook's class ``name`` (``SGD``, ``Adam``), hyperparameters by keyword, as torch's."""
    return run(name, student.function(name), *args, **kwargs)


def method(optimizer, name, label):
    """The bound method ``name`` of the student's ``optimizer``, or :class:`CheckFailed` saying it is missing."""
    bound = getattr(optimizer, name, None)
    if not callable(bound):
        raise CheckFailed(f"{label} has no method {name}(): write it, under exactly that name", about_input=False)
    return bound


@contextmanager
def about(description):
    """Put ``description`` (the case: which optimizer, which settings) in front of every hint raised inside."""
    try:
        yield
    except CheckFailed as failure:
        if not failure.about_input:
            raise
        raise CheckFailed(f"{description}: {failure}") from None


def settings_text(settings):
    return ", ".join(f"{name}={value}" for name, value in settings.items())


# --- the update rules, right and wrong -----------------------------------------------------------

SGD_MISTAKES = {
    "average": "Yours averages the gradients into the buffer, b = mu * b + (1 - mu) * g: torch sums them, "
               "b = mu * b + g (with dampening 0), so the buffer grows to about g / (1 - mu).",
    "no_momentum": "Yours is plain gradient descent: the momentum buffer plays no part (is it kept from one step "
                   "to the next, in a state per parameter?).",
    "zero_buffer": "Yours damps the first step too, as a buffer starting at zeros does: torch's buffer starts as "
                   "the first gradient itself, b = g, and dampening acts from the second step on.",
    "decay_after": "Yours applies the weight decay outside the momentum (p -= lr * (b + weight_decay * p), the same "
                   "as shrinking the weights directly, p *= 1 - lr * weight_decay): torch adds weight_decay * p to "
                   "the gradient first, and the buffer sums the decayed gradients.",
    "no_decay": "Yours leaves weight_decay out: add weight_decay * p to the gradient, before the momentum.",
    "nesterov_plain": "Yours takes plain momentum's step, b, where nesterov=True steps by g + mu * b, with b "
                      "already updated. (g + mu * b with the buffer before its update is b again.)",
    "ascent": "Yours moves the parameters up the gradient, making the loss larger: p -= lr * step, not +=.",
    "unchanged": "Yours left the parameter as it was: does step() write into p.data in place (p.data -= ...)? "
                 "'data = data - ...' only gives a local name a new array.",
}

ADAM_MISTAKES = {
    "no_bias_correction": "Yours has no bias correction: m and v start at zero, so divide them by 1 - beta1**t and "
                          "1 - beta2**t (t = 1 on the first step), or the first steps are off by a factor.",
    "step_plus_one": "Yours corrects the bias with t + 1: t counts the steps from 1 (the first step has t = 1).",
    "step_fixed": "Yours corrects every step with t = 1: t counts the steps, 1, 2, 3, ..., one count per step.",
    "betas_swapped": "Yours swaps the betas: beta1 (0.9 by default) averages the gradients, beta2 (0.999) their "
                     "squares.",
    "eps_inside": "Yours adds eps inside the square root, sqrt(v_hat + eps): torch adds it after, sqrt(v_hat) + eps.",
    "eps_before_correction": "Yours adds eps before the bias correction, (sqrt(v) + eps) / sqrt(1 - beta2**t): "
                             "torch adds it after, sqrt(v) / sqrt(1 - beta2**t) + eps.",
    "decoupled": "Yours applies the weight decay to the weights directly, as AdamW does (p *= 1 - lr * "
                 "weight_decay, the same as adding weight_decay * p to the update): Adam adds weight_decay * p to "
                 "the gradient, before the moments, which then scale it.",
    "no_decay": "Yours leaves weight_decay out: add weight_decay * p to the gradient, before the moments.",
    "ascent": SGD_MISTAKES["ascent"],
    "unchanged": SGD_MISTAKES["unchanged"],
}

STUCK = ("Yours changed the parameters at the first step and never again: was params a generator "
         "(model.parameters() is one), used up by the first loop over it? Keep list(params).")


def sgd_steps(initial, gradients, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, mistake=None):
    """The parameters after each step of SGD from ``initial`` (arrays), ``gradients[k][i]`` at step ``k``.

    Returns ``steps[k][i]``, parameter ``i`` after step ``k``.

    ``mistake`` is a key of :data:`SGD_MISTAKES`: the steps that mistake takes (``None``: torch's).
    """
    params = [p.astype(np.float64) for p in initial]
    buffers = [None] * len(params)
    steps = []
    for step_gradients in gradients:
        for i, (p, grad) in enumerate(zip(params, step_gradients)):
            if mistake == "unchanged":
                continue
            decay_first = weight_decay and mistake not in ("decay_after", "no_decay")
            g = grad + weight_decay * p if decay_first else grad.astype(np.float64)
            previous = buffers[i]
            if momentum and mistake != "no_momentum":
                if previous is None:
                    buffers[i] = {"average": (1 - momentum) * g, "zero_buffer": (1 - dampening) * g}.get(mistake, g)
                elif mistake == "average":
                    buffers[i] = momentum * previous + (1 - momentum) * g
                else:
                    buffers[i] = momentum * previous + (1 - dampening) * g
                if nesterov and mistake != "nesterov_plain":
                    g = g + momentum * buffers[i]
                else:
                    g = buffers[i]
            if mistake == "decay_after":
                g = g + weight_decay * p
            p += lr * g if mistake == "ascent" else -lr * g
        steps.append([p.copy() for p in params])
    return steps


def adam_steps(initial, gradients, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, mistake=None):
    """The parameters after each step of Adam, as :func:`sgd_steps` gives SGD's; ``mistake``: see ADAM_MISTAKES."""
    params = [p.astype(np.float64) for p in initial]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    beta1, beta2 = reversed(betas) if mistake == "betas_swapped" else betas
    steps = []
    for t, step_gradients in enumerate(gradients, start=1):
        for p, (m, v), grad in zip(params, moments, step_gradients):
            if mistake == "unchanged":
                continue
            decay_first = mistake not in ("decoupled", "no_decay")
            g = grad + weight_decay * p if decay_first else grad.astype(np.float64)
            if mistake == "decoupled":
                p *= 1 - lr * weight_decay
            m[...] = beta1 * m + (1 - beta1) * g
            v[...] = beta2 * v + (1 - beta2) * g * g
            count = {"step_plus_one": t + 1, "step_fixed": 1}.get(mistake, t)
            correction1, correction2 = (1.0, 1.0) if mistake == "no_bias_correction" else (
                1 - beta1**count, 1 - beta2**count)
            if mistake == "eps_inside":
                denominator = np.sqrt(v / correction2 + eps)
            elif mistake == "eps_before_correction":
                denominator = (np.sqrt(v) + eps) / np.sqrt(correction2)
            else:
                denominator = np.sqrt(v) / np.sqrt(correction2) + eps
            update = m / correction1 / denominator
            p += lr * update if mistake == "ascent" else -lr * update
        steps.append([p.copy() for p in params])
    return steps


# --- checking an optimizer step by step ------------------------------------------------------------

SHAPES = ((3, 4), (4,), (2, 3, 2))  # a weight, a bias, an array of three axes: every parameter its own state


def random_case(steps, seed, scale=1.0, shapes=SHAPES):
    """``(initial, gradients)``: random starting arrays and ``steps`` sets of random gradients, float64."""
    rng = np.random.default_rng(seed)
    initial = [rng.standard_normal(shape) for shape in shapes]
    gradients = [[scale * rng.standard_normal(shape) for shape in shapes] for _ in range(steps)]
    return initial, gradients


ADAM_DIVISION = ("Adam's bias correction divides by 1 - beta**t, which is 0 at t = 0: count the steps from t = 1, "
                 "adding 1 before the update.")


def expect_parameter(label, actual, expected, mistakes, tolerance=TOLERANCE, division_note=""):
    """Check one parameter's array after a step; the hint names a known mistake whose values it has.

    ``division_note`` is said when the array holds nan or inf.
    """
    actual = expect_array(label, actual, expected.shape)
    if not np.all(np.isfinite(actual)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(actual))[0])
        raise CheckFailed(f"{label} has {actual[index]} at index {index}: a division by zero? {division_note}".strip())
    expect_close(label, actual, expected, tolerance=tolerance, mistakes=mistakes)


# Adam's checks with the default eps allow 1e-5: eps = 1e-8 inside the square root moves a parameter by about
# 1e-6 of the largest one where a gradient is small, and that mistake belongs to the check with a large eps alone.
ADAM_TOLERANCE = 1e-5


def optimizer_matches(name, settings, steps, mistakes=(), seed=0, scale=1.0):
    """Check: ``steps`` steps of the student's ``name`` (``"SGD"``, ``"Adam"``) give the library's parameters.

    Three float64 parameters of :data:`SHAPES`, a random gradient for each at each step (times
    ``scale``); the parameters are compared after every step. ``mistakes`` are keys of
    :data:`SGD_MISTAKES` or :data:`ADAM_MISTAKES`, whose values the hint recognises.
    """
    tolerance = ADAM_TOLERANCE if name == "Adam" and "eps" not in settings else TOLERANCE
    reference_class, simulate, sentences = {
        "SGD": (optim.SGD, sgd_steps, SGD_MISTAKES), "Adam": (optim.Adam, adam_steps, ADAM_MISTAKES)}[name]

    def check(student):
        initial, gradients = random_case(steps, seed, scale)
        params = [nn.Parameter(array.copy()) for array in initial]
        reference_params = [nn.Parameter(array.copy()) for array in initial]
        known = {mistake: simulate(initial, gradients, **settings, mistake=mistake) for mistake in mistakes}
        shapes = ", ".join(str(array.shape) for array in initial)
        with about(f"{name}(params, {settings_text(settings)}) on 3 parameters {shapes} (float64), {steps} "
                   f"step{'s' if steps > 1 else ''} of random gradients"):
            optimizer = construct(student, name, params, **settings)
            reference = reference_class(reference_params, **settings)
            step = method(optimizer, "step", name)
            for k, step_gradients in enumerate(gradients):
                for param, reference_param, grad in zip(params, reference_params, step_gradients):
                    param.grad[...] = grad  # in place, as a backward pass adds into .grad
                    reference_param.grad[...] = grad
                run(f"{name}.step", step)
                reference.step()
                for i, (param, reference_param) in enumerate(zip(params, reference_params)):
                    expect_parameter(
                        f"after step {k + 1}, parameter {i} {initial[i].shape}", param.data, reference_param.data,
                        [(known[mistake][k][i], sentences[mistake]) for mistake in mistakes], tolerance,
                        ADAM_DIVISION if name == "Adam" else "",
                    )

    return check


def tiny_model(dtype=np.float32):
    """A small network: Linear(4, 3), ReLU, Linear(3, 2), seeded."""
    return nn.Sequential(nn.Linear(4, 3, seed=0, dtype=dtype), nn.ReLU(), nn.Linear(3, 2, seed=1, dtype=dtype))


def tiny_batches(count, dtype=np.float32, features=4, classes=2, size=6, seed=5):
    """``count`` random batches ``(x, y)`` of ``size`` samples for a network taking ``features`` inputs."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((size, features)).astype(dtype), rng.integers(0, classes, size)) for _ in range(count)]


def gradients_cleared(optimizer, model, label):
    """Check: after the student's ``zero_grad()``, every parameter's ``.grad`` is an array of zeros of its shape."""
    run(f"{label}.zero_grad", method(optimizer, "zero_grad", label))
    for name, param in model.named_parameters():
        grad = param.grad
        if not isinstance(grad, np.ndarray) or grad.shape != param.data.shape:
            raise CheckFailed(
                f"after zero_grad(), the .grad of {name} is {describe_value(grad)}: keep it an array of the "
                f"parameter's shape, set to zeros (p.grad[...] = 0): the layers add into it (grad += ...)"
            )
        if np.any(grad != 0):
            raise CheckFailed(
                f"after zero_grad(), the .grad of {name} still holds the last gradient: set every parameter's "
                f".grad to zeros in place, p.grad[...] = 0 ('g = p.grad; g = 0' changes nothing). Or was params a "
                f"generator (model.parameters() is one), used up by an earlier loop over it? Keep list(params)."
            )


def steps_a_model(name, settings, steps=3):
    """Check: the student's ``name`` on ``model.parameters()`` (a generator) of a float32 network, real backward passes.

    Each step is ``zero_grad()`` (checked: the gradients are zeros), a forward and backward pass,
    and ``step()``; the parameters must stay float32 and equal the library's.
    """
    reference_class = {"SGD": optim.SGD, "Adam": optim.Adam}[name]
    sentences = {"SGD": SGD_MISTAKES, "Adam": ADAM_MISTAKES}[name]

    def check(student):
        model, reference_model = tiny_model(), tiny_model()
        initial = [param.data.copy() for param in model.parameters()]
        criterion = nn.CrossEntropyLoss()
        with about(f"{name}(model.parameters(), {settings_text(settings)}) on a small network (Linear(4, 3), ReLU, "
                   f"Linear(3, 2), float32), {steps} training steps"):
            optimizer = construct(student, name, model.parameters(), **settings)
            reference = reference_class(reference_model.parameters(), **settings)
            step = method(optimizer, "step", name)
            after_first = None
            for k, (x, y) in enumerate(tiny_batches(steps)):
                for param in model.parameters():
                    param.grad[...] = 1.0  # what a previous step left: zero_grad must clear it
                gradients_cleared(optimizer, model, name)
                reference.zero_grad()
                student_step = lambda: run(f"{name}.step", step)  # noqa: E731
                for network, optimizer_step in ((model, student_step), (reference_model, reference.step)):
                    criterion(network(x), y)
                    network.backward(criterion.backward())
                    optimizer_step()
                for (param_name, param), reference_param, start in zip(
                        model.named_parameters(), reference_model.parameters(), initial):
                    data = expect_array(f"after step {k + 1}, {param_name}", param.data, reference_param.data.shape)
                    if data.dtype != np.float32:
                        raise CheckFailed(
                            f"after step {k + 1}, {param_name} has dtype {data.dtype}, expected float32, the "
                            f"parameter's: update p.data in place (p.data -= ...), which keeps its dtype, and make "
                            f"the state arrays like the parameter (np.zeros_like(p.data))"
                        )
                    mistakes = [(start, sentences["unchanged"] + " Or was params a generator (model.parameters() "
                                        "is one), used up by an earlier loop over it? Keep list(params).")]
                    if after_first is not None:
                        mistakes.append((after_first[param_name], STUCK))
                    expect_parameter(f"after step {k + 1}, {param_name}", data, reference_param.data, mistakes,
                                     FLOAT32_TOLERANCE, ADAM_DIVISION if name == "Adam" else "")
                if after_first is None:
                    after_first = {param_name: param.data.copy() for param_name, param in model.named_parameters()}

    return check


SGD_TASK = Task("sgd", "1. SGD with momentum, dampening, weight decay and Nesterov, as torch.optim.SGD", (
    Check("sgd/plain", "SGD: plain gradient descent, p -= lr * g, three steps", 5,
          optimizer_matches("SGD", dict(lr=0.1), 3, ("ascent", "unchanged"))),
    Check("sgd/momentum", "SGD: momentum 0.9, the buffer summing the gradients, four steps", 8,
          optimizer_matches("SGD", dict(lr=0.1, momentum=0.9), 4, ("average", "no_momentum", "ascent", "unchanged"),
                            seed=1)),
    Check("sgd/dampening", "SGD: dampening 0.5, the first step undamped (the buffer starts as the first gradient)", 4,
          optimizer_matches("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5), 3, ("zero_buffer", "no_momentum"),
                            seed=2)),
    Check("sgd/weight_decay", "SGD: weight decay 0.1 added to the gradient, before the momentum", 6,
          optimizer_matches("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1), 3,
                            ("decay_after", "no_decay", "no_momentum"), seed=3)),
    Check("sgd/nesterov", "SGD: Nesterov momentum, with weight decay", 6,
          optimizer_matches("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True), 3,
                            ("nesterov_plain", "decay_after"), seed=4)),
    Check("sgd/model", "SGD on model.parameters() (a generator), float32 kept; zero_grad clears every .grad", 6,
          steps_a_model("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01))),
))

ADAM_TASK = Task("adam", "2. Adam with bias correction and weight decay, as torch.optim.Adam", (
    Check("adam/first_step", "Adam: the first step, bias-corrected (about lr * sign(g))", 6,
          optimizer_matches("Adam", dict(lr=0.01), 1, ("no_bias_correction", "step_plus_one", "ascent", "unchanged"),
                            seed=10)),
    Check("adam/steps", "Adam: six steps, betas (0.8, 0.95), the step count t in the bias correction", 7,
          optimizer_matches("Adam", dict(lr=0.01, betas=(0.8, 0.95)), 6,
                            ("no_bias_correction", "step_plus_one", "step_fixed", "betas_swapped"), seed=11)),
    Check("adam/eps", "Adam: eps 0.1 on small gradients, added after the bias-corrected square root", 4,
          optimizer_matches("Adam", dict(lr=0.01, eps=0.1), 3, ("eps_inside", "eps_before_correction"), seed=12,
                            scale=0.1)),
    Check("adam/weight_decay", "Adam: weight decay 0.1 added to the gradient (not AdamW's)", 5,
          optimizer_matches("Adam", dict(lr=0.01, weight_decay=0.1), 3, ("decoupled", "no_decay"),
                            seed=13)),
    Check("adam/model", "Adam on model.parameters() (a generator), float32 kept; zero_grad clears every .grad", 3,
          steps_a_model("Adam", dict(lr=0.01))),
))

# --- Task 3: the training step ---------------------------------------------------------------------

STEP_NETWORK = "a network Linear(6, 5), ReLU, Linear(5, 3) (float64), npmobilenet.optim.SGD(lr=0.5, momentum=0.9)"


def step_network():
    return nn.Sequential(nn.Linear(6, 5, seed=1, dtype=np.float64), nn.ReLU(),
                         nn.Linear(5, 3, seed=2, dtype=np.float64))


def reference_training(batches, mistake=None):
    """``(losses, parameters after each step)`` of the library's training steps on :func:`step_network`.

    ``mistake``: ``"no_zero_grad"`` (gradients add up over the steps), ``"loss_scaled"``
    (``criterion.backward(loss)``: every gradient times the loss), ``"loss_after"`` (the loss
    of the batch after the step is returned).
    """
    model, criterion = step_network(), nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses, parameters = [], []
    for x, y in batches:
        if mistake != "no_zero_grad":
            optimizer.zero_grad()
        loss = float(criterion(model(x), y))
        model.backward(criterion.backward(loss if mistake == "loss_scaled" else 1.0))
        optimizer.step()
        if mistake == "loss_after":
            with no_grad():
                loss = float(criterion(model(x), y))
        losses.append(loss)
        parameters.append({name: param.data.copy() for name, param in model.named_parameters()})
    return losses, parameters


TRAIN_STEP_MISTAKES = {
    "no_zero_grad": "Yours adds up the gradients of every step: the layers add into .grad, so a step starts with "
                    "optimizer.zero_grad().",
    "loss_scaled": "Yours has every gradient multiplied by the loss: criterion.backward() takes dL/dloss, which is "
                   "1 (call it with no argument).",
}


def training_steps(count, compare_losses=False):
    """Check: ``count`` calls of the student's ``train_step`` give the library's parameters (or its losses)."""

    def check(student):
        batches = tiny_batches(count, np.float64, features=6, classes=3, size=8, seed=20 + count)
        expected_losses, expected = reference_training(batches)
        known = {mistake: reference_training(batches, mistake) for mistake in ("no_zero_grad", "loss_scaled",
                                                                                "loss_after")}
        model, criterion = step_network(), nn.CrossEntropyLoss()
        optimizer = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        initial = {name: param.data.copy() for name, param in model.named_parameters()}
        with about(f"train_step on {STEP_NETWORK}, {count} batch{'es' if count > 1 else ''} of 8"):
            for k, (x, y) in enumerate(batches):
                loss = student.call("train_step", model, criterion, optimizer, x, y)
                if compare_losses:
                    expect_loss(loss, expected_losses[k], known["loss_after"][0][k], k)
                    continue
                for name, param in model.named_parameters():
                    mistakes = [(initial[name], "Yours left the parameters as they were: the step is forward, loss, "
                                                "backward (which fills .grad), then optimizer.step().")]
                    mistakes += [(known[mistake][1][k][name], TRAIN_STEP_MISTAKES[mistake])
                                 for mistake in ("no_zero_grad", "loss_scaled")]
                    expect_parameter(f"after step {k + 1}, {name}", param.data, expected[k][name], mistakes)

    return check


def expect_loss(loss, expected, after_step, k):
    """Check: ``train_step`` returned a number, the batch's loss before the step."""
    if isinstance(loss, np.ndarray) and loss.size == 1:
        loss = loss.reshape(())[()]
    if isinstance(loss, (bool, np.bool_)) or not isinstance(loss, (int, float, np.integer, np.floating)):
        raise CheckFailed(f"train_step should return the loss, a number (float(loss)), got {describe_value(loss)} "
                          f"at step {k + 1}")
    if abs(float(loss) - expected) > 1e-9 * max(1.0, abs(expected)):
        after = (" That is the loss after the step: return the loss the forward pass computed, before the update."
                 if abs(float(loss) - after_step) <= 1e-9 * max(1.0, abs(after_step)) else "")
        raise CheckFailed(f"at step {k + 1}, train_step returned the loss {float(loss):.6g}, expected {expected:.6g}, "
                          f"the cross-entropy of the batch before the step.{after}")


TRAIN_STEP = Task("train_step", "3. One training step: forward, loss, backward, step", (
    Check("train_step/one_step", "train_step: one step moves the parameters as the library's step does", 6,
          training_steps(1)),
    Check("train_step/loss", "train_step: returns the batch's loss, a number, from before the step", 3,
          training_steps(1, compare_losses=True)),
    Check("train_step/steps", "train_step: three steps in a row, the gradients cleared at each", 6,
          training_steps(3)),
))

# --- Task 4: fine-tuning on ants and bees -----------------------------------------------------------


def feature_batches():
    """Two batches ``(x, y)`` of small random images: the loader :func:`features_match` gives ``extract_features``."""
    rng = np.random.default_rng(30)
    return [(rng.standard_normal((n, 3, 40, 40)).astype(np.float32), rng.integers(0, 2, n)) for n in (3, 2)]


def pooled_features(model, batches, training=False):
    """The library's ``pool(features(x))`` of every batch, concatenated, batch norm in evaluation (or training) mode."""
    model.train(training)
    with no_grad():
        return np.concatenate([model.pool(model.features(x)) for x, _ in batches])


def features_match(student):
    """Check: ``extract_features`` gives MobileNetV2's pooled features and the labels, batch norm in evaluation mode."""
    from ..models import mobilenet_v2

    model = mobilenet_v2(width_mult=0.25, num_classes=3, seed=0)  # in training mode, as models start
    batches = feature_batches()
    expected = pooled_features(copy.deepcopy(model), batches)
    batch_statistics = pooled_features(copy.deepcopy(model), batches, training=True)
    labels = np.concatenate([y for _, y in batches])
    count = len(labels)
    with about("extract_features on a MobileNetV2 (random weights, width_mult=0.25, 3 classes, in training mode) "
               "and a loader of two batches of 40x40 images, 5 in all"):
        result = student.call("extract_features", model, batches)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise CheckFailed(f"extract_features should return a pair (features, labels), got {describe_value(result)}")
        features, found_labels = result
        features = expect_array("features", features)
        if features.shape == (count, 3):
            raise CheckFailed("features has shape (5, 3): those are the classifier's outputs, the logits; the features "
                              "are what goes into the classifier, model.pool(model.features(x)), (N, 1280)")
        expect_close("features", features, expected, tolerance=FLOAT32_TOLERANCE, mistakes=[
            (batch_statistics, "Yours normalises with the statistics of each batch, as batch norm does in training "
                               "mode: call model.eval() first, so that every photo's features are its own."),
        ])
        found_labels = expect_array("labels", np.asarray(found_labels), (count,))
        if not np.array_equal(found_labels, labels):
            raise CheckFailed(f"labels are {found_labels.tolist()}, expected {labels.tolist()}: the loader's y of each "
                              f"batch, in order, concatenated")


def shared_folder():
    """The shared folder (ants and bees, the ImageNet weights), or :class:`CheckFailed` saying where it looked.

    ``NPMOBILENET_SHARED`` when set; else ``../../../../shared`` from the working directory
    (the notebook's folder, where ``npmobilenet grade`` runs it); else beside the project.
    """
    places = [Path(os.environ["NPMOBILENET_SHARED"])] if os.environ.get("NPMOBILENET_SHARED") else []
    places += [Path.cwd() / SHARED_FROM_NOTEBOOK, Path(__file__).resolve().parents[3] / "shared"]
    for place in places:
        if (place / DATA_FOLDER / "train").is_dir() and (place / DATA_FOLDER / "val").is_dir() and \
                (place / WEIGHTS_FILE).is_file():
            return place.resolve()
    raise CheckFailed(
        f"the grader needs the shared folder ({DATA_FOLDER}/train and val, and {WEIGHTS_FILE}) and found it in none "
        f"of {', '.join(str(place) for place in places)}: set NPMOBILENET_SHARED to it", about_input=False)


def hymenoptera_features():
    """``((train_features, train_labels), (val_features, val_labels))``: the grader's features of ants and bees.

    MobileNetV2 with the shared ImageNet weights, in evaluation mode under ``no_grad()``,
    ``pool(features(x))`` of each photo resized to 146 and centre-cropped to 128; float32
    ``(N, 1280)`` arrays and int64 labels (0 ants, 1 bees). Computed once per process (about 10 s
    on two cores); never change the arrays.
    """
    return features_of(str(shared_folder()))


@functools.lru_cache(maxsize=2)
def features_of(folder):
    from .. import transforms as T
    from ..data import DataLoader, ImageFolder
    from ..functional.fast.layout import channels_last
    from ..models import mobilenet_v2

    with warnings.catch_warnings():  # the new two-class classifier: not used here
        warnings.simplefilter("ignore")
        model = mobilenet_v2(weights=str(Path(folder) / WEIGHTS_FILE), num_classes=2, seed=0)
    model.eval()
    transform = T.Compose([T.Resize(RESIZE_SIZE), T.CenterCrop(CROP_SIZE), T.ToArray(),
                           T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    splits = []
    for split in ("train", "val"):
        features, labels = [], []
        with no_grad():
            for x, y in DataLoader(ImageFolder(Path(folder) / DATA_FOLDER / split, transform=transform), batch_size=32):
                features.append(model.pool(model.features(channels_last(x))))
                labels.append(y)
        splits.append((np.concatenate(features), np.concatenate(labels)))
    for array in (*splits[0], *splits[1]):
        array.flags.writeable = False
    return tuple(splits)


def classifier_result(result, features, classes):
    """The student's ``(weight, bias)``, checked (``(classes, D)`` and ``(classes,)``, finite), in float64."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise CheckFailed(f"train_classifier should return the trained (weight, bias) of the new classifier, got "
                          f"{describe_value(result)}")
    weight = expect_array("the weight train_classifier returned", result[0], (classes, features))
    bias = expect_array("the bias train_classifier returned", result[1], (classes,))
    if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(bias))):
        raise CheckFailed("the weight or the bias train_classifier returned holds nan or inf: the training diverged "
                          "(a learning rate far too large? a step up the gradient?)")
    return weight.astype(np.float64), bias.astype(np.float64)


def reaches_accuracy(student):
    """Check: the head ``train_classifier`` trains on the grader's features gets ACCURACY_BAR of the validation set."""
    # First a small call, so that a function not written yet (or returning the wrong thing) says so at once,
    # before the grader spends seconds on the features of the photos.
    rng = np.random.default_rng(40)
    small = rng.standard_normal((12, 1280)).astype(np.float32)
    with about("train_classifier on 12 random feature vectors (12, 1280), labels 0 and 1"):
        classifier_result(student.call("train_classifier", small, np.arange(12) % 2), 1280, 2)
    (train_features, train_labels), (val_features, val_labels) = hymenoptera_features()
    with about(f"train_classifier on the grader's features of the {len(train_labels)} training photos "
               f"{train_features.shape} (centre crops of {CROP_SIZE} pixels)"):
        weight, bias = classifier_result(student.call("train_classifier", train_features, train_labels),
                                         train_features.shape[1], 2)
        predicted = (val_features @ weight.T + bias).argmax(axis=1)
        correct, count = int(np.sum(predicted == val_labels)), len(val_labels)
        if correct / count < ACCURACY_BAR:
            chance = correct / count < 0.65
            raise CheckFailed(
                f"your classifier gets {correct} of the {count} validation photos right, an accuracy of "
                f"{correct / count:.3f}; the bar is {ACCURACY_BAR}. "
                + ("That is about chance: the training does not work. Does the loss fall? Does your optimizer step "
                   "down the gradient (p -= ...), at every step, on every parameter of the head?"
                   if chance else
                   "It learns, not enough: try the recipe, SGD with lr 0.01, momentum 0.9, weight decay 1e-4, "
                   "batches of 16 shuffled anew every epoch, 30 epochs, and clear the gradients at every step.")
            )


FINETUNE = Task("finetune", "4. Fine-tuning MobileNetV2 on ants and bees: frozen features, a new head", (
    Check("finetune/features", "extract_features: the pooled features (N, 1280), batch norm in evaluation mode", 7,
          features_match),
    Check("finetune/accuracy", f"train_classifier: the new head classifies at least {ACCURACY_BAR:.0%} of the "
                               f"validation photos right", 18, reaches_accuracy, seconds=120,
          timeout_hint="the grader's features of the 397 photos take about 10 s of that; does train_classifier run "
                       "for thousands of epochs?"),
))

TASKS = [SGD_TASK, ADAM_TASK, TRAIN_STEP, FINETUNE]
