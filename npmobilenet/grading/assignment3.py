"""Assignment 3, the inverted residual block and the whole network: the graded checks.

The notebook's functions, graded against the library's modules (:mod:`npmobilenet.nn`,
:class:`~npmobilenet.models.mobilenetv2.InvertedResidual`, :class:`~npmobilenet.MobileNetV2`),
against its preprocessing (:mod:`npmobilenet.transforms`), and by finite differences:

* ``inverted_residual_forward(x, params, stride, expand_ratio) -> (out, cache)``, in evaluation
  mode, ``params`` one block's part of a torchvision state dict (``conv.0.0.weight``,
  ``conv.0.1.running_var``, ...: see :func:`block_layer_names`);
* ``inverted_residual_backward(dout, cache) -> (dx, grads)``, ``grads`` a dict with the gradient
  of every weight and bias of ``params`` (not the running statistics, which are not learned);
* ``mobilenet_v2_forward(x, state_dict) -> logits``, torchvision's keys (``features.0.0.weight``,
  ..., ``classifier.1.bias``), evaluation mode, any width and number of classes;
* ``preprocess(path) -> (3, 224, 224)`` float32, ``top_k(logits, k) -> (indices, probabilities)``
  and ``classify(paths, state_dict, k) -> (indices, probabilities)``.

The students may call :mod:`npmobilenet.functional`'s layers (assignments 1 and 2 made them write
those); the block, the network and the pipeline are theirs. Batch-norm statistics are never the
defaults (mean 0, variance 1 would hide a block that normalises with the batch's statistics, or
with another ``eps``). Two checks need the real weights and photos of the shared data folder
(``$NPMOBILENET_SHARED``, else ``shared`` beside the project, else ``../../../../shared`` from the
notebook's folder, where the grader runs); without it they fail, saying where the grader looked.
"""

import copy
import functools
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .. import functional as F
from .. import imagenet, transforms
from ..grad_mode import no_grad
from ..gradcheck import numerical_gradient
from ..io import load_torch_checkpoint
from ..models.mobilenetv2 import InvertedResidual, MobileNetV2, model_from_state_dict
from .checks import Check, CheckFailed, Task
from .compare import FLOAT32_TOLERANCE, TOLERANCE, describe_value, expect_array, expect_close, expect_dtype, on
from .pairs import NUMERICAL_TOLERANCE

ID = "03-inverted-residual-network"
TITLE = "The inverted residual block, forward and backward, and the whole MobileNetV2 on real photos"

# --- the shared data: the real weights and photos ---------------------------------------------------

SHARED_ENV = "NPMOBILENET_SHARED"
WEIGHTS_FILE = Path("weights") / "mobilenet_v2_imagenet_qat.pth"
# file -> true class: a landscape and a portrait photo the library gets right, a gray (mode L) one it gets
# wrong (the truth is its second guess), a small one. Their top six probabilities are far enough apart
# (> 2e-3) for float32 rounding never to swap two of them.
PHOTOS = {
    "n02114548_white_wolf.JPEG": 270,
    "n03759954_microphone.JPEG": 650,
    "n03908714_pencil_sharpener.JPEG": 710,
    "n03240683_drilling_platform.JPEG": 540,
}


def shared_places():
    """Where the shared folder may be, in the order the grader looks."""
    places = [Path(os.environ[SHARED_ENV])] if os.environ.get(SHARED_ENV) else []
    places.append(Path(__file__).resolve().parents[3] / "shared")  # beside the project's checkout
    places.append((Path.cwd() / ".." / ".." / ".." / ".." / "shared").resolve())  # from tutorials/assignments/03-.../
    return places


def shared_folder():
    """The shared data folder, or :class:`CheckFailed` saying where the grader looked."""
    places = shared_places()
    for place in places:
        if (place / WEIGHTS_FILE).is_file() and (place / "images").is_dir():
            return place
    raise CheckFailed(
        f"this check needs the shared data folder (the ImageNet weights {WEIGHTS_FILE.as_posix()} and the photos "
        f"in images/), and the grader did not find it: it looked in {', '.join(str(place) for place in places)}. "
        f"Set {SHARED_ENV} to the folder that holds it", about_input=False)


@functools.lru_cache(maxsize=1)
def _real_state_dict(path):
    return load_torch_checkpoint(path)


def real_state_dict():
    """A fresh copy of the ImageNet weights (read once): a student's code may change what it is given."""
    return {name: value.copy() for name, value in _real_state_dict(str(shared_folder() / WEIGHTS_FILE)).items()}


@functools.lru_cache(maxsize=1)
def _real_model(path):
    return model_from_state_dict(_real_state_dict(path)).eval()


def real_model():
    """The library's MobileNetV2 with the ImageNet weights, in evaluation mode."""
    return _real_model(str(shared_folder() / WEIGHTS_FILE))


# --- Tasks 1 and 2: the block --------------------------------------------------------------------------

def block_layer_names(expand_ratio):
    """``(expand, depthwise, project, project_bn)``: the layers' names in ``params``, torchvision's numbering.

    ``expand`` is None when ``expand_ratio`` is 1 (no expansion: the depthwise layer is ``conv.0``).
    """
    first = 0 if expand_ratio == 1 else 1
    return ("conv.0" if expand_ratio != 1 else None), f"conv.{first}", f"conv.{first + 1}", f"conv.{first + 2}"


def random_block(in_channels, out_channels, stride, expand_ratio, seed, dtype=np.float64):
    """``(block, params)``: the library's block with random weights and batch-norm statistics, and its state dict.

    Convolutions from ``N(0, 2 / fan_in)``; every batch norm with its own gamma, beta, running mean and
    running variance (some small, so that ``eps`` shows), as a trained network has them.
    """
    rng = np.random.default_rng(seed)
    block = InvertedResidual(in_channels, out_channels, stride, expand_ratio).astype(dtype)
    randomise(block, rng)
    return block.eval(), block.state_dict()


def randomise(module, rng):
    """Random weights and batch-norm statistics in every layer of ``module`` (in place); returns it."""
    state = {}
    for name, value in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if value.ndim == 4:  # a convolution's weight
            fan_in = value.shape[1] * value.shape[2] * value.shape[3]
            state[name] = rng.normal(0.0, np.sqrt(2.0 / fan_in), value.shape)
        elif value.ndim == 2:  # the classifier's weight
            state[name] = rng.normal(0.0, 1.0 / np.sqrt(value.shape[1]), value.shape)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.05, 2.0, value.shape)
        elif name.endswith("running_mean"):
            state[name] = 0.5 * rng.standard_normal(value.shape)
        elif name.endswith("weight"):  # a batch norm's gamma
            state[name] = rng.uniform(0.5, 1.5, value.shape)
        else:  # a bias
            state[name] = 0.3 * rng.standard_normal(value.shape)
    module.load_state_dict(state, strict=False)
    return module


def batchnorm(h, params, name, eps=1e-5, training=False):
    """Batch norm ``name`` of ``params``, in evaluation mode unless ``training`` (on copies of the running statistics)."""
    statistics = params[name + ".running_mean"].copy(), params[name + ".running_var"].copy()
    return F.batchnorm2d_forward(h, params[name + ".weight"], params[name + ".bias"], *statistics, training, 0.1,
                                 eps)[0]


def reference_block(x, params, stride, expand_ratio, mistake=None):
    """The block's output by :mod:`npmobilenet.functional`, right or with one known ``mistake``.

    The grader compares with the library's module; this version makes the output of the mistakes, for the hints.
    """
    expand, depthwise, project, project_bn = block_layer_names(expand_ratio)
    eps = {"eps_keras": 1e-3, "eps_zero": 0.0}.get(mistake, 1e-5)
    training = mistake == "batch_statistics"
    h = x
    if expand:
        h = F.conv2d_forward(h, params[expand + ".0.weight"], None, 2 if mistake == "stride_on_expansion" else 1, 0)[0]
        h = np.clip(batchnorm(h, params, expand + ".1", eps, training), 0, 6)
    h = F.depthwise_conv2d_forward(h, params[depthwise + ".0.weight"], None,
                                   1 if mistake == "stride_on_expansion" else stride, 1)[0]
    h = np.clip(batchnorm(h, params, depthwise + ".1", eps, training), 0, 6)
    h = F.conv2d_forward(h, params[project + ".weight"])[0]
    out = batchnorm(h, params, project_bn, eps, training)
    if mistake == "relu6_after_projection":
        out = np.clip(out, 0, 6)
    if stride == 1 and x.shape[1] == out.shape[1] and mistake != "no_shortcut":
        out = out + x
    return out


BLOCK_MISTAKES = {
    "batch_statistics": "Yours normalises with the batch's statistics: the block runs in evaluation mode, where batch "
                        "norm uses running_mean and running_var (training=False).",
    "eps_keras": "Yours takes eps = 1e-3, Keras's default: PyTorch's BatchNorm2d adds eps = 1e-5 to the variance.",
    "eps_zero": "Yours leaves eps out: batch norm divides by sqrt(running_var + eps), eps = 1e-5.",
    "relu6_after_projection": "Yours applies ReLU6 after the projection: the block's output is linear (the linear "
                              "bottleneck), the projection's batch norm (plus x) with no activation.",
    "no_shortcut": "Yours leaves out the shortcut: with stride 1 and as many channels out as in, out = layers(x) + x.",
    "stride_on_expansion": "Yours applies the stride in the 1x1 expansion: the stride belongs to the 3x3 depthwise "
                           "convolution.",
}


def block_mistakes(x, params, stride, expand_ratio):
    """``[(the output of a known mistake, what it is), ...]`` for this block (those that give an output)."""
    found = []
    shortcut = stride == 1 and x.shape[1] == params[block_layer_names(expand_ratio)[2] + ".weight"].shape[0]
    for mistake, sentence in BLOCK_MISTAKES.items():
        if mistake == "no_shortcut" and not shortcut:
            continue
        if mistake == "stride_on_expansion" and (expand_ratio == 1 or stride == 1):
            continue
        found.append((reference_block(x, copy.deepcopy(params), stride, expand_ratio, mistake), sentence))
    return found


NUMBERING_NOTE = ("With expand_ratio 1 there is no expansion and the layers are numbered from 0: conv.0.0 the depthwise "
                  "weight, conv.0.1 its batch norm, conv.1.weight the projection, conv.2 its batch norm.")
NO_SHORTCUT_NOTE = ("This block has no shortcut: x is added only when the stride is 1 and the block keeps the number "
                    "of channels.")

# case -> (label, in, out, stride, expand_ratio, x shape, seed, note for a failure)
BLOCK_CASES = {
    "shortcut": ("t=6, stride 1, 8 -> 8 channels: the shortcut adds x", 8, 8, 1, 6, (2, 8, 6, 5), 0, ""),
    "strided": ("t=6, stride 2, 8 -> 8 channels, odd sizes: no shortcut", 8, 8, 2, 6, (2, 8, 7, 9), 1,
                NO_SHORTCUT_NOTE),
    "widening": ("t=6, stride 1, 8 -> 12 channels: no shortcut", 8, 12, 1, 6, (2, 8, 5, 6), 2, NO_SHORTCUT_NOTE),
    "no_expansion": ("t=1 (no expansion, as features.1), stride 1, 8 -> 6 channels", 8, 6, 1, 1, (2, 8, 5, 5), 3,
                     NUMBERING_NOTE + " " + NO_SHORTCUT_NOTE),
    "float32": ("float32, one image, t=6, stride 2, 4 -> 8 channels", 4, 8, 2, 6, (1, 4, 6, 6), 4, NO_SHORTCUT_NOTE),
    "backward": ("t=6, stride 1, 8 -> 8 channels, with the shortcut", 8, 8, 1, 6, (2, 8, 5, 6), 5, ""),
    "strided_backward": ("t=6, stride 2, 6 -> 10 channels, odd sizes", 6, 10, 2, 6, (2, 6, 7, 5), 6, NO_SHORTCUT_NOTE),
    "no_expansion_backward": ("t=1, stride 1, 8 -> 8 channels, with the shortcut", 8, 8, 1, 1, (2, 8, 5, 5), 7,
                              NUMBERING_NOTE),
    "numerical": ("t=2, stride 1, 3 -> 3 channels, with the shortcut", 3, 3, 1, 2, (2, 3, 4, 4), 8, ""),
}


def block_case(case, dtype=np.float64):
    """``(x, block, params, stride, expand_ratio, description, note)`` for one of :data:`BLOCK_CASES`."""
    _, in_channels, out_channels, stride, expand_ratio, shape, seed, note = BLOCK_CASES[case]
    block, params = random_block(in_channels, out_channels, stride, expand_ratio, seed, dtype)
    x = (1.5 * np.random.default_rng(100 + seed).standard_normal(shape)).astype(dtype)
    description = {"x": x, "stride": stride, "expand_ratio": expand_ratio,
                   "params": f"{in_channels} -> {out_channels} channels"}
    return x, block, params, stride, expand_ratio, description, note


def noting(note, function, *args, **kwargs):
    """``function(*args, **kwargs)``, a failure's hint followed by ``note`` (what this case is about)."""
    try:
        return function(*args, **kwargs)
    except CheckFailed as failure:
        if not failure.about_input or not note:
            raise
        raise CheckFailed(f"{failure} ({note})") from None


def student_block_forward(student, x, params, stride, expand_ratio):
    """``(out, cache)`` from the student's block on copies of ``x`` and ``params``."""
    value = student.call("inverted_residual_forward", x, copy.deepcopy(params), stride, expand_ratio)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise CheckFailed(f"inverted_residual_forward should return a pair (out, cache), got {describe_value(value)}")
    expect_array("the out of inverted_residual_forward", value[0])
    return tuple(value)


def block_forward_matches(case):
    """Check: the student's block gives the library's output on ``case``, with the hint of a known mistake."""

    def check(student):
        x, block, params, stride, expand_ratio, description, note = block_case(case)
        with no_grad():
            expected = block(x.copy())
        with on(description):
            out, _ = noting(note, student_block_forward, student, x, params, stride, expand_ratio)
            expect_array("out", out, expected.shape)
            expect_close("out", out, expected, note=note,
                         mistakes=block_mistakes(x, params, stride, expand_ratio))

    return check


def block_float32_and_inputs_unchanged(student):
    """Check: float32 in, float32 out, the library's output, and neither x nor params changed."""
    x, block, params, stride, expand_ratio, description, note = block_case("float32", np.float32)
    with no_grad():
        expected = block(x.copy())
    originals = x.copy(), copy.deepcopy(params)
    with on(description):
        value = noting(note, student.call, "inverted_residual_forward", x, params, stride, expand_ratio, copy=False)
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise CheckFailed("inverted_residual_forward should return a pair (out, cache)")
        out = expect_array("out", value[0], expected.shape)
        expect_dtype("out", out, np.float32)
        expect_close("out", out, expected, tolerance=FLOAT32_TOLERANCE, note=note,
                     mistakes=block_mistakes(originals[0], originals[1], stride, expand_ratio))
        if not np.array_equal(x, originals[0]):
            raise CheckFailed("inverted_residual_forward changed its input x in place: compute into new arrays "
                              "(out = out + x, not x += ...)")
        for name, value in originals[1].items():
            if not np.array_equal(params[name], value):
                hint = (" (batch norm in training mode updates the running statistics: in evaluation mode, "
                        "training=False, nothing changes)" if "running" in name else "")
                raise CheckFailed(f"inverted_residual_forward changed params['{name}'] in place{hint}")


def learnable(params):
    """The names of the weights and biases of ``params``: what has a gradient (not the running statistics)."""
    return [name for name in params if name.endswith((".weight", ".bias"))]


def expect_gradients(grads, expected, note="", tolerance=TOLERANCE):
    """Check the student's ``grads`` dict against ``expected`` (same keys), key by key."""
    if not isinstance(grads, dict):
        raise CheckFailed(f"grads should be a dict {{name: gradient}} with the names of params, got "
                          f"{describe_value(grads)}")
    missing = [name for name in expected if name not in grads]
    if missing:
        raise CheckFailed(f"grads has no {', '.join(repr(name) for name in missing)}: every weight and bias of params "
                          f"gets its gradient, under its name in params")
    extra = [name for name in grads if name not in expected]
    if extra:
        raise CheckFailed(f"grads has {', '.join(repr(name) for name in extra)}, which are not learned: only the "
                          f"weights and biases get a gradient (the running statistics are not parameters)")
    for name, value in expected.items():
        expect_close(f"grads['{name}']", grads[name], value, tolerance=tolerance, note=note)


def student_block_backward(student, dout, cache):
    """``(dx, grads)`` from the student's backward."""
    value = student.call("inverted_residual_backward", dout, cache)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise CheckFailed(f"inverted_residual_backward should return a pair (dx, grads), got {describe_value(value)}")
    return value


SHORTCUT_GRADIENT = ("Yours leaves out the shortcut's gradient: out = layers(x) + x sends dout straight to x as well, "
                     "dx = (the gradient through the layers) + dout.")


def block_backward_matches(case, parts):
    """Check: the student's ``dx`` and/or parameter gradients (``parts``) equal the library block's."""

    def check(student):
        x, block, params, stride, expand_ratio, description, note = block_case(case)
        block.zero_grad()
        expected_out = block(x.copy())
        dout = np.random.default_rng(200).standard_normal(expected_out.shape)
        expected_dx = block.backward(dout.copy())
        expected_grads = {name: parameter.grad.copy() for name, parameter in block.named_parameters()}
        with on(description):
            out, cache = noting(note, student_block_forward, student, x, params, stride, expand_ratio)
            if out.shape != expected_out.shape:
                raise CheckFailed(f"this check runs your inverted_residual_forward for the cache, and its out has shape "
                                  f"{out.shape}, expected {expected_out.shape}: fix the forward pass first")
            dx, grads = noting(note, student_block_backward, student, dout, cache)
            if "dx" in parts:
                shortcut = [(expected_dx - dout, SHORTCUT_GRADIENT)] if block.use_res_connect else []
                expect_close("dx", dx, expected_dx, note=note, mistakes=shortcut)
            if "grads" in parts:
                expect_gradients(grads, expected_grads, note=note)

    return check


def block_gradients_match_numerically(student):
    """Check: dx and every parameter's gradient are the numerical gradients of the student's own forward."""
    x, block, params, stride, expand_ratio, description, note = block_case("numerical")
    own = "(Here 'expected' is the numerical gradient of your own inverted_residual_forward: if that passes its " \
          "checks, the backward is wrong.)"
    with on(description):
        out, cache = student_block_forward(student, x, params, stride, expand_ratio)
        dout = np.random.default_rng(201).standard_normal(out.shape)
        dx, grads = student_block_backward(student, dout, cache)

        def output_of_x(value):
            return student_block_forward(student, value, params, stride, expand_ratio)[0]

        expect_close("dx", dx, numerical_gradient(output_of_x, x.copy(), dout), tolerance=NUMERICAL_TOLERANCE,
                     note=own)
        expected = {}
        for name in learnable(params):
            def output_of(value, name=name):
                return student_block_forward(student, x, {**params, name: value}, stride, expand_ratio)[0]

            expected[name] = numerical_gradient(output_of, params[name].copy(), dout)
        expect_gradients(grads, expected, note=own, tolerance=NUMERICAL_TOLERANCE)


def block_forward_check(case, points):
    """The check that the student's block gives the library's output on ``case``."""
    return Check(f"inverted_residual_forward/{case}", f"inverted_residual_forward: {BLOCK_CASES[case][0]}", points,
                 block_forward_matches(case))


BLOCK_FORWARD = Task("block_forward", "1. The inverted residual block, forward (evaluation mode)", (
    block_forward_check("shortcut", 7),
    block_forward_check("strided", 6),
    block_forward_check("widening", 5),
    block_forward_check("no_expansion", 7),
    Check("inverted_residual_forward/float32",
          "inverted_residual_forward: float32 in, float32 out, one image; x and params left unchanged", 5,
          block_float32_and_inputs_unchanged),
))

BLOCK_BACKWARD = Task("block_backward", "2. The inverted residual block, backward", (
    Check("inverted_residual_backward/dx", f"inverted_residual_backward: dx, {BLOCK_CASES['backward'][0]}", 6,
          block_backward_matches("backward", ("dx",))),
    Check("inverted_residual_backward/grads",
          f"inverted_residual_backward: the weights' and biases' gradients, {BLOCK_CASES['backward'][0]}", 6,
          block_backward_matches("backward", ("grads",))),
    Check("inverted_residual_backward/strided",
          f"inverted_residual_backward: dx and the gradients, {BLOCK_CASES['strided_backward'][0]}", 4,
          block_backward_matches("strided_backward", ("dx", "grads"))),
    Check("inverted_residual_backward/no_expansion",
          f"inverted_residual_backward: dx and the gradients, {BLOCK_CASES['no_expansion_backward'][0]}", 4,
          block_backward_matches("no_expansion_backward", ("dx", "grads"))),
    Check("inverted_residual_backward/numerical",
          "inverted_residual_backward: dx and every gradient equal the numerical gradients of your forward", 5,
          block_gradients_match_numerically),
))

# --- Task 3: the whole network -----------------------------------------------------------------------

NETWORK_NOTE = ("The network: features.0 (3x3 conv, stride 2, padding 1, BN, ReLU6); features.1 to features.17, the "
                "blocks, with t and the first block's stride from the paper's table (the other blocks of a row have "
                "stride 1); features.18 (1x1 conv, BN, ReLU6); the mean over H and W; classifier.1 "
                "(x @ weight.T + bias). Dropout does nothing in evaluation mode.")


def network_mistakes(model, x):
    """``[(the logits of a known mistake after the features, what it is), ...]``, from the library's layers."""
    with no_grad():
        h = x
        for layer in list(model.features)[:-1]:
            h = layer(h)
        conv, norm, _ = model.features[-1]
        before_activation = norm(conv(h))
    features = np.clip(before_activation, 0, 6)
    weight, bias = model.classifier[-1].weight.data, model.classifier[-1].bias.data

    def logits(pooled):
        return pooled @ weight.T + bias

    return [
        (logits(features.max(axis=(2, 3))), "Yours pools with the maximum: MobileNetV2 averages each channel over H "
                                            "and W."),
        (logits(features.sum(axis=(2, 3))), "Yours sums over H and W: the pooling is the mean."),
        (logits(before_activation.mean(axis=(2, 3))), "Yours leaves out the ReLU6 of features.18, the last 1x1 conv."),
        (logits(0.8 * features.mean(axis=(2, 3))), "Yours scales by 1 - p as dropout: in evaluation mode dropout "
                                                   "does nothing."),
    ]


def random_network():
    """A width-0.5 MobileNetV2 with 10 classes, float64, random weights and batch-norm statistics, in evaluation mode."""
    model = MobileNetV2(num_classes=10, width_mult=0.5, seed=0).astype(np.float64)
    return randomise(model, np.random.default_rng(300)).eval()


def random_state_dict():
    return random_network().state_dict()


def network_matches(make_model, make_state_dict, x, tolerance, label):
    """Check: the student's logits for ``x`` and ``make_state_dict()`` equal those of the library's ``make_model()``."""

    def check(student):
        model, state_dict = make_model(), make_state_dict()
        originals = {name: value.copy() for name, value in state_dict.items()}
        with no_grad():
            expected = model(x.copy())
        with on({"x": x, "state_dict": label}):
            logits = expect_array("logits", student.call("mobilenet_v2_forward", x, state_dict), expected.shape)
            expect_dtype("logits", logits, x.dtype)
            expect_close("logits", logits, expected, tolerance=tolerance, note=NETWORK_NOTE,
                         mistakes=network_mistakes(model, x))
            changed = [name for name, value in originals.items() if not np.array_equal(state_dict[name], value)]
            if changed:
                raise CheckFailed(f"mobilenet_v2_forward changed state_dict['{changed[0]}'] in place: the weights "
                                  f"are read, never written (batch norm in evaluation mode changes nothing)")

    return check


RANDOM_INPUT = np.random.default_rng(301).standard_normal((2, 3, 48, 40))
REAL_INPUT = np.random.default_rng(302).standard_normal((1, 3, 64, 64)).astype(np.float32)

NETWORK = Task("network", "3. The whole network, from a torchvision state dict", (
    Check("mobilenet_v2_forward/random",
          "mobilenet_v2_forward: width 0.5, 10 classes, random weights and batch-norm statistics, x (2, 3, 48, 40)",
          13, network_matches(random_network, random_state_dict, RANDOM_INPUT, TOLERANCE,
                              "width 0.5, 10 classes, random (float64)"), seconds=20),
    Check("mobilenet_v2_forward/imagenet", "mobilenet_v2_forward: the ImageNet weights, float32 in, float32 out, "
          "x (1, 3, 64, 64); state_dict left unchanged", 12,
          network_matches(real_model, real_state_dict, REAL_INPUT, FLOAT32_TOLERANCE, "the ImageNet weights"),
          seconds=20),
))


# --- Task 4: photos ------------------------------------------------------------------------------------

PREPROCESS_NOTE = ("preprocess: the shorter side resized to 256 (bilinear, the longer one int(256 * long / short)), "
                   "the central 224 x 224 (from left = round((W - 224) / 2), top = round((H - 224) / 2)), then "
                   "(x / 255 - mean) / std per channel, RGB, as (3, 224, 224).")


def synthetic_photo(folder):
    """A 301 x 203 PNG of random colours, written in ``folder``: the crop's offset rounds (77.5 -> 78)."""
    rng = np.random.default_rng(400)
    pixels = rng.integers(0, 256, size=(203, 301, 3), dtype=np.uint8)
    path = Path(folder) / "photo-301x203.png"
    Image.fromarray(pixels).save(path)
    return path


def preprocess_mistakes(path):
    """``[(what a known mistake gives, what it is), ...]`` for ``path``, from the library's steps."""
    image = transforms.open_image(path)
    resized = transforms.resize_shorter_side(image, 256)
    cropped = transforms.center_crop(resized, 224)
    floats = transforms.to_float_array(cropped)
    mean = np.asarray(transforms.IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(transforms.IMAGENET_STD, np.float32)[:, None, None]
    pixels = np.asarray(resized)
    width, height = resized.size
    floor_left, floor_top = (width - 224) // 2, (height - 224) // 2
    floored = pixels[floor_top:floor_top + 224, floor_left:floor_left + 224].transpose(2, 0, 1) / np.float32(255)
    direct = np.asarray(transforms.center_crop(transforms.resize_shorter_side(image, 224), 224))
    return [
        ((floats[::-1] - mean) / std, "Yours has the channels in BGR order: PIL gives RGB (and the mean and std are "
                                      "in RGB order)."),
        (((floats - mean) / std)[::-1], "Yours has the channels in BGR order: PIL gives RGB."),
        ((floats - mean[::-1]) / std[::-1], "Yours takes the mean and std in BGR order: they are (R, G, B)."),
        ((255 * floats - mean) / std, "Yours does not divide by 255 first: the mean and std are for values in [0, 1]."),
        (floats, "Yours does not normalise: subtract the mean and divide by the std, per channel."),
        ((floats - std) / mean, "Yours swaps the mean and the std."),
        ((floored - mean) / std, "Yours crops from (W - 224) // 2: torchvision rounds, left = round((W - 224) / 2)."),
        ((direct.transpose(2, 0, 1) / np.float32(255) - mean) / std,
         "Yours resizes the shorter side to 224: resize it to 256, then cut the central 224 x 224."),
    ]


def preprocess_matches(student):
    """Check: the student's ``preprocess`` of a synthetic PNG equals the library's (torchvision's)."""
    with tempfile.TemporaryDirectory(prefix="npmobilenet-grade-") as folder:
        path = synthetic_photo(folder)
        expected = transforms.preprocess(path)
        with on({"path": f"a {301}x{203} PNG of random colours"}):
            x = student.call("preprocess", str(path))
            if isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[0] == 1:
                raise CheckFailed(f"preprocess returned shape {x.shape}: one image is (3, 224, 224); classify stacks "
                                  f"them into a batch")
            x = expect_array("x", x, expected.shape)
            if x.dtype != np.float32:
                raise CheckFailed(f"x has dtype {x.dtype}, expected float32, the weights' (keep the mean and std "
                                  f"float32 arrays, or end with .astype(np.float32))")
            expect_close("x", x, expected, tolerance=FLOAT32_TOLERANCE, note=PREPROCESS_NOTE,
                         mistakes=preprocess_mistakes(path))


def reference_top_k(logits, k):
    probabilities = F.softmax(logits, axis=1)
    indices = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return indices, np.take_along_axis(probabilities, indices, axis=1)


def expect_top_k(value, expected_indices, expected_probabilities, function, tolerance=TOLERANCE, note="",
                 mistakes=(), rows=None):
    """Check a ``(indices, probabilities)`` pair against the expected one; ``rows`` name the rows, for the hint."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise CheckFailed(f"{function} should return a pair (indices, probabilities), got {describe_value(value)}")
    indices, probabilities = (np.asarray(part) if isinstance(part, list) else part for part in value)
    probabilities = expect_array("probabilities", probabilities, expected_probabilities.shape)
    if not np.all(np.isfinite(probabilities)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(probabilities))[0])
        raise CheckFailed(f"probabilities has {probabilities[index]} at index {index}: {OVERFLOW_NOTE}")
    indices = expect_array("indices", indices, expected_indices.shape)
    if not np.array_equal(indices, expected_indices):
        row = int(np.argmax(np.any(indices != expected_indices, axis=1)))
        which = f" ({rows[row]})" if rows else ""
        known = "".join(f" {sentence}" for (wrong, _), sentence in mistakes if np.array_equal(indices, wrong))
        raise CheckFailed(f"indices differ from the expected ones; the first in row {row}{which}: yours "
                          f"{indices[row].tolist()}, expected {expected_indices[row].tolist()}, best first.{known}"
                          + (f" {note}" if note else ""))
    expect_close("probabilities", probabilities, expected_probabilities, tolerance=tolerance, note=note,
                 mistakes=[(probabilities_of_mistake, sentence) for (_, probabilities_of_mistake), sentence in mistakes])


TOP_K_NOTE = ("top_k: the softmax over the classes (axis 1), each row minus its largest logit first, then the k "
              "largest probabilities of each row, best first, and their indices.")


def top_k_mistakes(logits, k):
    batch = F.softmax(logits, axis=0)
    batch_indices = np.argsort(-batch, axis=1, kind="stable")[:, :k]
    right = F.softmax(logits, axis=1)
    worst = np.argsort(right, axis=1, kind="stable")[:, :k]
    return [
        ((batch_indices, np.take_along_axis(batch, batch_indices, axis=1)),
         "Yours takes the softmax over the batch (axis 0): each image's probabilities sum to 1 over the classes, "
         "axis 1."),
        ((worst, np.take_along_axis(right, worst, axis=1)),
         "Yours lists the k smallest probabilities: sort in decreasing order (np.argsort(-p, axis=1))."),
    ]


def top_k_matches(logits, k, note=TOP_K_NOTE):
    def check(student):
        indices, probabilities = reference_top_k(logits, k)
        with on({"logits": logits, "k": k}):
            value = student.call("top_k", logits, k)
            expect_top_k(value, indices, probabilities, "top_k", note=note, mistakes=top_k_mistakes(logits, k))

    return check


LOGITS = np.random.default_rng(500).standard_normal((3, 10)) * 3
LARGE_LOGITS = np.random.default_rng(501).standard_normal((2, 6)) * 5 + np.array([[1000.0], [-1000.0]])
OVERFLOW_NOTE = ("np.exp(1000) overflows to inf, and inf / inf is nan: subtract each row's largest logit before "
                 "np.exp (the softmax does not change).")


def classify_matches(student):
    """Check: the student's ``classify`` of four shared photos gives the library's top 5 and probabilities.

    On the photos the library classifies right, the library's best class is the true one, so this
    checks the true labels there too.
    """
    folder = shared_folder() / "images"
    paths = [str(folder / name) for name in PHOTOS]
    with no_grad():
        logits = real_model()(np.stack([transforms.preprocess(path) for path in paths]))
    indices, probabilities = reference_top_k(logits, 5)
    names = imagenet.categories()
    rows = [f"{name}, truly a {names[truth]} (class {truth})" for name, truth in PHOTOS.items()]
    with on({"paths": f"{len(paths)} photos of images/", "state_dict": "the ImageNet weights", "k": 5}):
        value = student.call("classify", paths, real_state_dict(), 5)
        expect_top_k(value, indices, probabilities, "classify", tolerance=FLOAT32_TOLERANCE, rows=rows,
                     note="classify: preprocess each photo, stack them into (N, 3, 224, 224), mobilenet_v2_forward, "
                          "top_k.")


PHOTOS_TASK = Task("photos", "4. Classifying photos: preprocessing, top-k, the pipeline", (
    Check("preprocess/png", "preprocess: resize 256, crop 224, / 255, ImageNet mean and std, RGB, (3, 224, 224) "
          "float32 (a 301x203 PNG)", 6, preprocess_matches),
    Check("top_k/values", "top_k: softmax over the classes, the k most likely, best first", 4,
          top_k_matches(LOGITS, 4)),
    Check("top_k/large_logits", "top_k: logits of 1000 and -1000 (no overflow)", 2,
          top_k_matches(LARGE_LOGITS, 2, TOP_K_NOTE + " " + OVERFLOW_NOTE)),
    Check("classify/photos", "classify: four shared ImageNet photos, the library's top 5 and probabilities", 8,
          classify_matches, seconds=30, timeout_hint="the network on four 224 x 224 photos takes a few seconds with "
                                                      "NumPy; a Python loop over pixels?"),
))

TASKS = [BLOCK_FORWARD, BLOCK_BACKWARD, NETWORK, PHOTOS_TASK]
