"""The layer classes of ``npmobilenet.nn`` against their ``torch.nn`` twins.

Each layer loads its twin's ``state_dict`` and must give the same output, the same input
gradient, the same parameter gradients and the same state after the step for a random upstream
gradient, in float32 and in float64 (``compare_module``). The twins come from ``twins.py``:
a new layer costs one line of :data:`LAYERS`. Batch norm uses non-default running statistics
and affine parameters throughout (mean 0, var 1, gamma 1, beta 0 would hide bugs). Tests that
need torch take the ``torch`` (or ``twins``) fixture, so the file skips cleanly without it.
"""

import threading

import numpy as np
import pytest
from torch_helpers import assert_close, compare_module, to_torch, upstream_gradient
from twins import TWINS, Layer, numpy_state

import npmobilenet
from npmobilenet import nn
from npmobilenet.errors import BackwardError

DTYPES = [np.float32, np.float64]


# --- every layer kind against its torch twin --------------------------------------------------

# name: (layer, input shape, input scale, training)
LAYERS = {
    "conv3x3_s2_p1_bias": (Layer("Conv2d", 3, 5, 3, stride=2, padding=1, bias=True), (2, 3, 9, 8), 1.0, True),
    "conv3x3_s2_p1_nobias": (Layer("Conv2d", 3, 5, 3, stride=2, padding=1, bias=False), (2, 3, 9, 8), 1.0, True),
    "conv1x1_bias": (Layer("Conv2d", 4, 6, 1), (2, 4, 5, 7), 1.0, True),
    "conv1x1_nobias": (Layer("Conv2d", 4, 6, 1, bias=False), (2, 4, 5, 7), 1.0, True),
    "depthwise3x3_s1_p1": (Layer("Conv2d", 4, 4, 3, padding=1, groups=4, bias=False), (2, 4, 7, 6), 1.0, True),
    "depthwise3x3_s2_p1": (Layer("Conv2d", 4, 4, 3, stride=2, padding=1, groups=4, bias=False), (2, 4, 7, 6), 1.0, True),
    "depthwise3x3_s2_p1_bias": (Layer("Conv2d", 4, 4, 3, stride=2, padding=1, groups=4), (2, 4, 7, 6), 1.0, True),
    "batchnorm_train": (Layer("BatchNorm2d", 4), (3, 4, 5, 3), 2.0, True),
    "batchnorm_eval": (Layer("BatchNorm2d", 4), (3, 4, 5, 3), 2.0, False),
    "linear": (Layer("Linear", 7, 5), (4, 7), 1.0, True),
    "relu": (Layer("ReLU"), (2, 3, 5, 4), 4.0, True),
    "relu6": (Layer("ReLU6"), (2, 3, 5, 4), 4.0, True),
    "dropout_eval": (Layer("Dropout", 0.5), (2, 3, 5, 4), 1.0, False),
    "global_avg_pool": (Layer("GlobalAvgPool2d"), (2, 3, 5, 4), 1.0, True),
}


def layer_input(name, seed, dtype=np.float32, shift=0.0):
    """A random input of the case's shape and scale."""
    _, shape, scale, _ = LAYERS[name]
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(dtype)


@pytest.mark.parametrize("name", list(LAYERS))
def test_state_dict_layout_matches_torch(torch, name):
    """Fresh layers: same state_dict keys in the same order, same shapes, same dtypes as torch."""
    layer = LAYERS[name][0]
    ours = layer.ours().state_dict()
    theirs = numpy_state(layer.theirs(torch))
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key].shape == theirs[key].shape, key
        assert ours[key].dtype == theirs[key].dtype, key
    expected_dtypes = {k: (np.int64 if k.endswith("num_batches_tracked") else np.float32) for k in theirs}
    assert {k: v.dtype for k, v in ours.items()} == {k: np.dtype(v) for k, v in expected_dtypes.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch(twins, name, dtype):
    """Loaded with the twin's weights: equal output, input gradient, parameter gradients and state."""
    layer, _, _, training = LAYERS[name]
    compare_module(*twins(layer, dtype=dtype, training=training), layer_input(name, 1, dtype), seed=2)


def test_every_kind_of_twin_has_a_case():
    """A layer added to ``twins.TWINS`` without a line in LAYERS would go untested: fail instead."""
    assert sorted({layer.kind for layer, *_ in LAYERS.values()}) == sorted(TWINS)


def test_linear_accepts_leading_axes_like_torch(twins):
    """Linear on a (N, T, features) input acts on the last axis, as torch's does."""
    x = np.random.default_rng(3).standard_normal((2, 3, 7)).astype(np.float32)
    compare_module(*twins(LAYERS["linear"][0]), x, seed=4)


# --- batch norm -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_train_step_matches_torch(twins, dtype):
    """Train mode: output, gradients and the running statistics after one step equal torch's."""
    bn, tbn = twins(Layer("BatchNorm2d", 4), dtype=dtype)
    before = bn.state_dict()
    x = (np.random.default_rng(5).standard_normal((4, 4, 3, 5)) * 3 + 1).astype(dtype)
    compare_module(bn, tbn, x, seed=6)  # the running statistics and num_batches_tracked too
    assert bn.num_batches_tracked.dtype == np.int64
    assert int(bn.num_batches_tracked) == int(tbn.num_batches_tracked) == 1
    # The running statistics really moved (from non-default values).
    assert not np.allclose(bn.running_mean, before["running_mean"])
    assert not np.allclose(bn.running_var, before["running_var"])


def test_batchnorm_eval_uses_running_statistics(twins):
    """Eval mode equals torch's eval and the textbook formula with the running stats; train output differs."""
    bn, tbn = twins(Layer("BatchNorm2d", 4), training=False, seed=1)
    train_twin = nn.BatchNorm2d(4)
    train_twin.load_state_dict(bn.state_dict())
    before = bn.state_dict()
    x = (np.random.default_rng(7).standard_normal((3, 4, 4, 5)) * 2 + 0.5).astype(np.float32)
    out, _ = compare_module(bn, tbn, x, seed=8)

    s = {k: v.astype(np.float64)[:, None, None] for k, v in before.items() if v.ndim == 1}
    by_hand = s["weight"] * (x - s["running_mean"]) / np.sqrt(s["running_var"] + 1e-5) + s["bias"]
    assert_close(out, by_hand.astype(np.float32), np.float32, "eval output by hand")

    for key, value in bn.state_dict().items():  # eval changes no statistics
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert np.max(np.abs(train_twin(x) - out)) > 0.1, "train output should use batch statistics"


def test_batchnorm_momentum_none_is_cumulative_average(twins):
    """momentum=None: after 3 batches the running stats are the plain averages of the batch stats."""
    bn, tbn = twins(Layer("BatchNorm2d", 4, momentum=None), dtype=np.float64, seed=2)
    rng = np.random.default_rng(9)
    batch_means, batch_vars = [], []
    for step in range(3):
        x = rng.standard_normal((2, 4, 3, 3)) * (step + 1) + step
        compare_module(bn, tbn, x, seed=10 + step)  # the running statistics after each step too
        batch_means.append(x.mean(axis=(0, 2, 3)))
        batch_vars.append(x.var(axis=(0, 2, 3), ddof=1))
    assert int(bn.num_batches_tracked) == int(tbn.num_batches_tracked) == 3
    assert_close(bn.running_mean, np.mean(batch_means, axis=0), np.float64, "cumulative mean")
    assert_close(bn.running_var, np.mean(batch_vars, axis=0), np.float64, "cumulative var")


# --- gradient accumulation ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["conv3x3_s2_p1_bias", "depthwise3x3_s1_p1", "batchnorm_train", "linear"])
def test_gradients_accumulate_like_torch(twins, name):
    """Two forward+backward passes add into .grad as torch's two backward calls do; zero_grad clears."""
    layer, tlayer = twins(LAYERS[name][0])
    for step in range(2):
        compare_module(layer, tlayer, layer_input(name, 11 + step, shift=step), seed=20 + step)
    assert any(np.abs(p.grad).max() > 0 for p in layer.parameters())

    layer.zero_grad()
    for name_, p in layer.named_parameters():
        assert p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype, name_
        np.testing.assert_array_equal(p.grad, np.zeros_like(p.data), err_msg=name_)

    # After zero_grad, one pass gives one pass's gradients again.
    tlayer.zero_grad()
    compare_module(layer, tlayer, layer_input(name, 13), seed=30)


def test_accumulated_grad_is_the_sum_of_single_passes(torch, twins):
    """Accumulated .grad equals the sum of two separate single-pass torch gradients."""
    layer, tlayer = twins(LAYERS["conv1x1_bias"][0])
    xs = [layer_input("conv1x1_bias", seed) for seed in (12, 13)]
    douts = [upstream_gradient((2, 6, 5, 7), seed).astype(np.float32) for seed in (12, 13)]
    expected = {n: np.zeros(tuple(tp.shape), np.float32) for n, tp in tlayer.named_parameters()}
    for x, dout in zip(xs, douts):
        tlayer.zero_grad()
        tlayer(to_torch(torch, x)).backward(torch.from_numpy(dout))
        for n, tp in tlayer.named_parameters():
            expected[n] += tp.grad.numpy()
    for x, dout in zip(xs, douts):
        layer(x)
        layer.backward(dout)
    for n, p in layer.named_parameters():
        assert_close(p.grad, expected[n], np.float32, f"accumulated grad of {n}")


# --- dropout -----------------------------------------------------------------------------------


def test_dropout_eval_is_identity():
    """Eval mode: the output is the input, unchanged, and backward passes dout through."""
    x = np.random.default_rng(13).standard_normal((3, 4, 5, 5)).astype(np.float32)
    dout = upstream_gradient(x.shape, 13).astype(np.float32)
    layer = nn.Dropout(0.5, seed=0).eval()
    x_copy = x.copy()
    out = layer(x)
    np.testing.assert_array_equal(out, x_copy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(layer.backward(dout), dout)


def test_dropout_same_seed_same_masks_different_seed_different():
    """Train mode: equal seeds give identical masks forward after forward; other seeds differ."""
    rng = np.random.default_rng(14)
    first, second, other = nn.Dropout(0.4, seed=123), nn.Dropout(0.4, seed=123), nn.Dropout(0.4, seed=124)
    masks = []
    for _ in range(4):
        x = rng.uniform(0.5, 1.5, (4, 8, 6, 6)).astype(np.float32)
        a, b, c = first(x), second(x), other(x)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a == 0, c == 0)
        masks.append(a == 0)
    assert not np.array_equal(masks[0], masks[1]), "each forward should draw a new mask"


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_drops_a_fraction_near_p(p):
    """The fraction of zeros in a big array is within 6 standard deviations of p."""
    n = 200_000
    x = np.random.default_rng(15).uniform(0.5, 1.5, (20, 10, 25, 40)).astype(np.float32)
    out = nn.Dropout(p, seed=16)(x)
    fraction = np.mean(out == 0)
    assert abs(fraction - p) < 6 * np.sqrt(p * (1 - p) / n), f"dropped {fraction:.4f}, p={p}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_scales_kept_values_and_backward_uses_the_mask(dtype):
    """Kept values are x / (1 - p); backward zeroes the same positions and scales dout the same way."""
    p = 0.3
    rng = np.random.default_rng(17)
    x = (rng.uniform(0.5, 1.5, (8, 6, 7, 7)) * rng.choice([-1.0, 1.0], (8, 6, 7, 7))).astype(dtype)
    dout = upstream_gradient(x.shape, 17).astype(dtype)
    layer = nn.Dropout(p, seed=18)
    out = layer(x)
    kept = out != 0
    assert 0 < kept.mean() < 1
    assert out.dtype == dtype
    assert_close(out[kept], x[kept] / (1 - p), dtype, "kept values")
    (mask,) = layer.cache
    np.testing.assert_array_equal(mask != 0, kept)
    dx = layer.backward(dout)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx[~kept], 0)
    assert_close(dx[kept], dout[kept] / (1 - p), dtype, "gradient of kept values")


def test_dropout_p_one_drops_everything(torch):
    """p=1 in train mode zeroes everything, as torch does."""
    x = np.random.default_rng(19).standard_normal((2, 3, 4, 4)).astype(np.float32)
    layer = nn.Dropout(1.0, seed=0)
    out = layer(x)
    np.testing.assert_array_equal(out, torch.nn.Dropout(1.0)(to_torch(torch, x)).numpy())
    np.testing.assert_array_equal(layer.backward(upstream_gradient(x.shape, 19).astype(np.float32)), np.zeros_like(x))


# --- a small CNN ---------------------------------------------------------------------------------


# The convolutions before a batch norm have no bias, as in MobileNetV2: in train mode such a bias
# has an exactly-zero gradient (batch norm subtracts the batch mean), and comparing two roundoff
# noises of size 1e-16 with a relative tolerance would test nothing.
SMALL_CNN = [
    Layer("Conv2d", 3, 8, 3, stride=2, padding=1, bias=False),
    Layer("BatchNorm2d", 8),
    Layer("ReLU6"),
    Layer("Conv2d", 8, 8, 3, padding=1, groups=8, bias=False),
    Layer("BatchNorm2d", 8),
    Layer("ReLU6"),
    Layer("Conv2d", 8, 16, 1, bias=False),
    Layer("BatchNorm2d", 16),
    Layer("GlobalAvgPool2d"),
    Layer("Linear", 16, 10),
]


def small_cnn():
    return nn.Sequential(*(layer.ours() for layer in SMALL_CNN))


def test_small_cnn_names_match_torch(twins):
    """named_parameters() and state_dict() names equal torch's, in order."""
    model, tmodel = twins(*SMALL_CNN)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tmodel.named_parameters()]
    assert list(model.state_dict()) == list(tmodel.state_dict())


def test_small_cnn_train_float64_matches_torch(twins):
    """Train mode, float64: output, dx, every parameter's grad and the running stats to 1e-10."""
    x = np.random.default_rng(21).standard_normal((4, 3, 13, 11)) * 2
    compare_module(*twins(*SMALL_CNN, dtype=np.float64), x, seed=22)


def test_small_cnn_eval_float32_matches_torch(twins):
    """Eval mode, float32: output, dx and every parameter's grad, with the running stats untouched."""
    model, tmodel = twins(*SMALL_CNN, training=False)
    before = model.state_dict()
    x = np.random.default_rng(23).standard_normal((3, 3, 12, 12)).astype(np.float32) * 2
    compare_module(model, tmodel, x, seed=24)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


# --- no_grad ---------------------------------------------------------------------------------------


def test_no_grad_forward_keeps_no_cache():
    """Under no_grad the output is unchanged, and backward then raises BackwardError naming forward."""
    model = small_cnn().eval()
    x = np.random.default_rng(25).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = model(x)  # grad mode: this forward keeps caches
    with npmobilenet.no_grad():
        assert not npmobilenet.is_grad_enabled()
        out = model(x)  # must drop the caches of the forward above
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(BackwardError, match="forward") as info:
        model.backward(np.ones_like(out))
    assert isinstance(info.value, RuntimeError)
    for layer in model:
        with pytest.raises(BackwardError, match="forward"):
            layer.backward(np.ones((1,), dtype=np.float32))


def test_no_grad_in_train_mode_still_updates_running_stats():
    """no_grad turns off caches, not training: batch norm still moves its running stats."""
    bn_a, bn_b = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    x = np.random.default_rng(26).standard_normal((2, 3, 4, 4)).astype(np.float32) + 2
    out_a = bn_a(x)
    with npmobilenet.no_grad():
        out_b = bn_b(x)
    np.testing.assert_array_equal(out_a, out_b)
    for key, value in bn_a.state_dict().items():
        np.testing.assert_array_equal(bn_b.state_dict()[key], value, err_msg=key)
    assert int(bn_b.num_batches_tracked) == 1


def test_grad_mode_restored_after_block_also_on_exception():
    """Leaving the block, normally or by an exception, turns grad mode back on."""
    assert npmobilenet.is_grad_enabled()
    with npmobilenet.no_grad():
        assert not npmobilenet.is_grad_enabled()
    assert npmobilenet.is_grad_enabled()
    with pytest.raises(KeyError):
        with npmobilenet.no_grad():
            raise KeyError("boom")
    assert npmobilenet.is_grad_enabled()


def test_no_grad_as_bare_decorator():
    """``@no_grad`` without parentheses works too, as ``@torch.no_grad`` does."""

    @npmobilenet.no_grad
    def inside():
        return npmobilenet.is_grad_enabled()

    assert inside() is False
    assert npmobilenet.is_grad_enabled()


def test_one_no_grad_instance_entered_inside_itself():
    guard = npmobilenet.no_grad()
    with guard:
        with guard:
            assert not npmobilenet.is_grad_enabled()
        assert not npmobilenet.is_grad_enabled()
    assert npmobilenet.is_grad_enabled()


def test_no_grad_as_decorator():
    """A function decorated with no_grad() runs without grad; the caller's mode is untouched."""

    @npmobilenet.no_grad()
    def inside(value):
        """Docstring kept."""
        return npmobilenet.is_grad_enabled(), value

    assert inside(5) == (False, 5)
    assert npmobilenet.is_grad_enabled()
    assert inside.__name__ == "inside" and inside.__doc__ == "Docstring kept."

    @npmobilenet.no_grad()
    def failing():
        raise ValueError("inside")

    with pytest.raises(ValueError):
        failing()
    assert npmobilenet.is_grad_enabled()


def test_nested_no_grad_restores_each_level():
    """An inner block leaves grad off for the rest of the outer block; the outer one turns it back on."""
    with npmobilenet.no_grad():
        with npmobilenet.no_grad():
            assert not npmobilenet.is_grad_enabled()
        assert not npmobilenet.is_grad_enabled()
    assert npmobilenet.is_grad_enabled()


def test_no_grad_is_per_thread():
    """One thread's no_grad does not switch off grad mode in another thread."""
    seen = []
    with npmobilenet.no_grad():
        thread = threading.Thread(target=lambda: seen.append(npmobilenet.is_grad_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]


# --- state_dict, load_state_dict, astype ---------------------------------------------------------


def test_state_dict_returns_copies():
    """Mutating the returned arrays in place does not change the model."""
    bn = nn.BatchNorm2d(3)
    sd = bn.state_dict()
    live = {"weight": bn.weight.data, "bias": bn.bias.data, "running_mean": bn.running_mean,
            "running_var": bn.running_var, "num_batches_tracked": bn.num_batches_tracked}
    assert list(sd) == list(live)
    for key, value in sd.items():
        assert not np.shares_memory(value, live[key]), key
        value[...] = 7
    np.testing.assert_array_equal(bn.weight.data, np.ones(3))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(3))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(3))
    np.testing.assert_array_equal(bn.running_var, np.ones(3))
    assert int(bn.num_batches_tracked) == 0


def test_load_state_dict_non_strict_reports_and_loads_the_rest(torch, twins):
    """strict=False returns (missing, unexpected) as torch does, loads the others, leaves the missing alone."""
    layers = [Layer("Conv2d", 3, 4, 3, bias=False), Layer("BatchNorm2d", 4)]
    _, tmodel = twins(*layers)
    model = nn.Sequential(*(layer.ours() for layer in layers))
    sd = numpy_state(tmodel)
    del sd["1.running_var"]
    sd["2.weight"] = np.zeros(3, dtype=np.float32)
    result = model.load_state_dict(sd, strict=False)

    torch_result = torch.nn.Sequential(*(layer.theirs(torch) for layer in layers)).load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=False
    )
    missing, unexpected = result
    assert missing == result.missing_keys == list(torch_result.missing_keys) == ["1.running_var"]
    assert unexpected == result.unexpected_keys == list(torch_result.unexpected_keys) == ["2.weight"]
    loaded = model.state_dict()
    for key in sd:
        if key in loaded:
            np.testing.assert_array_equal(loaded[key], sd[key], err_msg=key)
    np.testing.assert_array_equal(loaded["1.running_var"], np.ones(4, dtype=np.float32))


def test_load_state_dict_strict_success_and_cast_to_model_dtype():
    """A full float64 state dict loads into a float32 model as float32; nothing is reported missing."""
    source = nn.Linear(4, 3, seed=1).astype(np.float64)
    target = nn.Linear(4, 3, seed=2)
    result = target.load_state_dict(source.state_dict())
    assert result == ([], [])
    assert target.weight.dtype == np.float32 and target.bias.dtype == np.float32
    np.testing.assert_array_equal(target.weight.data, source.weight.data.astype(np.float32))
    np.testing.assert_array_equal(target.bias.data, source.bias.data.astype(np.float32))


def test_astype_float64_converts_params_grads_float_buffers_only():
    """astype(float64) converts parameters, grads and float buffers, keeps num_batches_tracked int64, returns the model."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    x = np.random.default_rng(27).standard_normal((2, 3, 5, 5)).astype(np.float32)
    out = model(x)
    model.backward(upstream_gradient(out.shape, 28).astype(np.float32))
    before = {n: (p.data.copy(), p.grad.copy()) for n, p in model.named_parameters()}
    buffers_before = dict(model.named_buffers())
    buffers_before = {k: v.copy() for k, v in buffers_before.items()}

    assert model.astype(np.float64) is model
    for name, p in model.named_parameters():
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64, name
        np.testing.assert_array_equal(p.data, before[name][0].astype(np.float64))
        np.testing.assert_array_equal(p.grad, before[name][1].astype(np.float64))
    buffers = dict(model.named_buffers())
    assert buffers["1.running_mean"].dtype == buffers["1.running_var"].dtype == np.float64
    assert buffers["1.num_batches_tracked"].dtype == np.int64
    assert int(buffers["1.num_batches_tracked"]) == int(buffers_before["1.num_batches_tracked"]) == 1
    np.testing.assert_array_equal(buffers["1.running_mean"], buffers_before["1.running_mean"].astype(np.float64))
    assert model(x.astype(np.float64)).dtype == np.float64


# --- initialisation and repr --------------------------------------------------------------------

INIT_CASES = {
    "conv3x3": (lambda seed: nn.Conv2d(6, 64, 3, seed=seed), 6 * 3 * 3),
    "conv1x1": (lambda seed: nn.Conv2d(32, 64, 1, seed=seed), 32),
    "depthwise3x3": (lambda seed: nn.Conv2d(64, 64, 3, groups=64, seed=seed), 1 * 3 * 3),
    "conv_rect": (lambda seed: nn.Conv2d(5, 64, (3, 1), seed=seed), 5 * 3 * 1),
    "linear": (lambda seed: nn.Linear(20, 64, seed=seed), 20),
}


@pytest.mark.parametrize("name", list(INIT_CASES))
def test_init_uniform_within_one_over_sqrt_fan_in(name):
    """Weights and biases lie in ±1/sqrt(fan_in) (fan_in = in/groups*kh*kw) and fill that range."""
    make, fan_in = INIT_CASES[name]
    layer = make(0)
    bound = np.float32(1 / np.sqrt(fan_in))
    params = dict(layer.named_parameters())
    assert list(params) == ["weight", "bias"]
    for pname, p in params.items():
        assert p.dtype == np.float32, pname
        assert np.all(np.abs(p.data) <= bound), f"{pname}: max {np.abs(p.data).max()} > {bound}"
        assert np.abs(p.data).max() > 0.8 * bound, f"{pname}: values do not fill ±{bound}"
        assert p.data.min() < 0 < p.data.max(), pname
        np.testing.assert_array_equal(p.grad, np.zeros_like(p.data))


@pytest.mark.parametrize("name", list(INIT_CASES))
def test_init_seed_is_reproducible(name):
    """The same seed gives identical weights; a different seed gives different ones."""
    make, _ = INIT_CASES[name]
    a, b, c = make(7), make(7), make(8)
    gen = make(np.random.default_rng(7))
    for (pname, pa), pb, pc, pg in zip(a.named_parameters(), b.parameters(), c.parameters(), gen.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=pname)
        np.testing.assert_array_equal(pa.data, pg.data, err_msg=pname)
        assert not np.array_equal(pa.data, pc.data), pname


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((3, 8, 3), dict(stride=2, padding=1, bias=False)),
        ((8, 8, 3), dict(padding=1, groups=8, bias=False)),
        ((8, 16, 1), {}),
    ],
    ids=["stem", "depthwise", "pointwise_bias_no_padding"],
)
def test_conv2d_repr_matches_torch(torch, args, kwargs):
    """repr(Conv2d(...)) is torch's repr of the same layer."""
    assert repr(nn.Conv2d(*args, **kwargs)) == repr(torch.nn.Conv2d(*args, **kwargs))


def test_linear_repr_matches_torch(torch):
    assert repr(nn.Linear(16, 10)) == repr(torch.nn.Linear(16, 10))
