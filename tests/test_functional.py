"""Every operation three ways (loops, plain, fast), against one another and against PyTorch, and by finite differences.

One test per operation runs all three versions and PyTorch on the same random case and
compares the output and every gradient (:func:`torch_helpers.compare_pair`): float64 to 1e-10,
float32 to 1e-4. Shapes are drawn with hypothesis: odd spatial sizes, stride 1 and 2, batch 1,
one channel, kernels 1, 2, 3 and 5, with and without padding and bias. The loop versions run
whenever the case is small enough for Python loops (most drawn cases are).
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch_helpers import assert_close, compare_pair, finite_difference_check, to_torch, upstream_gradient

from npmobilenet import functional as F

DTYPES = [np.float64, np.float32]
SETTINGS = settings(max_examples=30, deadline=None)
LEVELS = {"loops": F.loops, "plain": F, "fast": F.fast}
LOOP_BUDGET = 20_000  # multiply-adds a loop version may take in a test: a few tens of milliseconds


def versions(name, *args, loops=True):
    """``{level: (forward, backward)}`` of operation ``name`` in each version, with ``args`` after the inputs.

    ``loops=False`` leaves the loop version out (a case too big for Python loops).
    """
    pairs = {}
    for level, module in LEVELS.items():
        if level == "loops" and not loops:
            continue
        forward = getattr(module, f"{name}_forward")
        pairs[level] = (lambda *inputs, forward=forward: forward(*inputs, *args), getattr(module, f"{name}_backward"))
    return pairs


# --- conv2d and depthwise conv2d ---------------------------------------------------------------


@st.composite
def conv_cases(draw, depthwise=False):
    """A random convolution problem: input, weight, optional bias, stride, padding."""
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    f = c if depthwise else draw(st.integers(1, 4))
    kernels = [1, 3, 5] if depthwise else [1, 2, 3, 5]
    kh, kw = draw(st.sampled_from(kernels)), draw(st.sampled_from(kernels))
    stride = draw(st.sampled_from([1, 2, (1, 2), (2, 1)]))
    padding = draw(st.sampled_from([0, 1, 2, (0, 1)]))
    ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
    h = draw(st.integers(max(1, kh - 2 * ph), kh - 2 * ph + 8))
    w = draw(st.integers(max(1, kw - 2 * pw), kw - 2 * pw + 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((f, 1 if depthwise else c, kh, kw))
    bias = rng.standard_normal(f) if draw(st.booleans()) else None
    return x, weight, bias, stride, padding


def conv_work(x, w):
    """About how many multiply-adds a convolution of ``x`` by ``w`` takes (stride 1, no padding: an upper bound)."""
    return x.shape[0] * w.shape[0] * x.shape[2] * x.shape[3] * w[0].size


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=conv_cases())
def test_conv2d(torch, dtype, case):
    x, w, b, stride, padding = case
    compare_pair(
        torch, versions("conv2d", stride, padding, loops=conv_work(x, w) <= LOOP_BUDGET),
        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride, padding), [x, w, b], dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=conv_cases(depthwise=True))
def test_depthwise_conv2d(torch, dtype, case):
    x, w, b, stride, padding = case
    compare_pair(
        torch, versions("depthwise_conv2d", stride, padding, loops=conv_work(x, w) <= LOOP_BUDGET),
        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride, padding, groups=x.shape[1]), [x, w, b], dtype,
    )


FD_LEVELS = ["plain", "fast"]  # the loop versions are checked against these and PyTorch


@pytest.mark.parametrize("level", FD_LEVELS)
@pytest.mark.parametrize("stride, padding, bias", [(1, 1, True), (2, 1, False), (2, 0, True), (1, 0, False)])
def test_conv2d_finite_differences(level, stride, padding, bias):
    rng = np.random.default_rng(2)
    b = rng.standard_normal(3) if bias else None
    forward, backward = versions("conv2d", stride, padding)[level]
    finite_difference_check(forward, backward, [rng.standard_normal((2, 2, 5, 7)), rng.standard_normal((3, 2, 3, 3)), b])


@pytest.mark.parametrize("level", FD_LEVELS)
@pytest.mark.parametrize("stride, padding, kernel", [(1, 1, 3), (2, 1, 3), (2, 2, 5), (1, 0, 1)])
def test_depthwise_conv2d_finite_differences(level, stride, padding, kernel):
    rng = np.random.default_rng(4)
    forward, backward = versions("depthwise_conv2d", stride, padding)[level]
    finite_difference_check(
        forward, backward,
        [rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((3, 1, kernel, kernel)), rng.standard_normal(3)],
    )


@pytest.mark.parametrize("level", list(LEVELS))
def test_conv2d_one_by_one_is_a_matrix_product(level):
    """A 1x1 convolution is ``W @ x`` per pixel: check against einsum, independent of im2col."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 5, 4, 3)), rng.standard_normal((7, 5, 1, 1))
    out, _ = LEVELS[level].conv2d_forward(x, w)
    np.testing.assert_allclose(out, np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x), rtol=1e-12)


# --- batch norm ---------------------------------------------------------------------------------


@st.composite
def batchnorm_cases(draw):
    """Input, gamma, beta and non-default running statistics (mean != 0, var != 1), momentum."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    if n * h * w < 3:  # two values per channel is a degenerate case, tested on its own below
        h += 2
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w)) * rng.uniform(0.5, 3.0) + rng.uniform(-2.0, 2.0)
    gamma, beta = rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c), rng.standard_normal(c)
    running_mean, running_var = rng.standard_normal(c), rng.uniform(0.2, 3.0, c)
    momentum = draw(st.sampled_from([0.1, 0.5, 0.01]))
    return x, gamma, beta, running_mean, running_var, momentum


def batchnorm_versions(running_mean, running_var, training, momentum, dtype):
    """Every version of batch norm, each backward form, each with its own copy of the running statistics.

    Returns the pairs and ``{label: (running_mean, running_var)}``, which the forward passes update.
    """
    pairs, statistics = {}, {}
    forms = [("", "batchnorm2d_backward"), ("-graph", "batchnorm2d_backward_graph")]
    for level, module in LEVELS.items():
        for suffix, backward in forms:
            if not hasattr(module, backward):
                continue  # the fast version has the simplified form only
            label = level + suffix
            statistics[label] = (running_mean.astype(dtype), running_var.astype(dtype))
            mean, var = statistics[label]
            forward = lambda x, g, b, module=module, mean=mean, var=var: module.batchnorm2d_forward(  # noqa: E731
                x, g, b, mean, var, training, momentum
            )
            pairs[label] = (forward, getattr(module, backward))
    return pairs, statistics


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=batchnorm_cases())
def test_batchnorm(torch, dtype, training, case):
    x, gamma, beta, running_mean, running_var, momentum = case
    # In training mode dx is the part of dout orthogonal to 1 and x_hat, a space of M - 2
    # dimensions for M values per channel. For small M it can be almost nothing by chance,
    # below float32's resolution of the terms that cancel; float32 takes M >= 8, where that
    # chance is negligible, and float64 every M >= 3.
    assume(dtype == np.float64 or not training or x.size // x.shape[1] >= 8)
    pairs, statistics = batchnorm_versions(running_mean, running_var, training, momentum, dtype)
    torch_mean, torch_var = to_torch(torch, running_mean.astype(dtype)), to_torch(torch, running_var.astype(dtype))
    compare_pair(
        torch, pairs,
        lambda x, g, b: torch.nn.functional.batch_norm(x, torch_mean, torch_var, g, b, training, momentum),
        [x, gamma, beta], dtype,
    )
    assert set(pairs) == {"loops", "loops-graph", "plain", "plain-graph", "fast"}
    for label, (mean, var) in statistics.items():
        assert_close(mean, torch_mean.numpy(), dtype, f"{label}: running_mean after the step")
        assert_close(var, torch_var.numpy(), dtype, f"{label}: running_var after the step")
        if not training:
            np.testing.assert_array_equal(mean, running_mean.astype(dtype))


@pytest.mark.parametrize("level", list(LEVELS))
def test_batchnorm_two_values_per_channel(torch, level):
    """With M = 2 values per channel, x_hat is -1 and +1 (up to eps) whatever x is, so the output
    is gamma * (-1, +1) + beta and dx is nothing but the eps term: about eps / var, not 0."""
    x = np.array([[[[1.5]], [[-2.0]]], [[[4.0]], [[0.5]]]])  # (2, 2, 1, 1): two values per channel
    gamma, beta = np.array([2.0, -1.0]), np.array([0.5, 0.25])
    module = LEVELS[level]
    out, cache = module.batchnorm2d_forward(x, gamma, beta, None, None, training=True)
    np.testing.assert_allclose(out[:, :, 0, 0], [[-1.5, 1.25], [2.5, -0.75]], atol=1e-5)
    dout = upstream_gradient(x.shape, seed=0)
    dx, dgamma, dbeta = module.batchnorm2d_backward(dout, cache)
    assert np.max(np.abs(dx)) < 1e-5
    tx = to_torch(torch, x, requires_grad=True)
    torch.nn.functional.batch_norm(tx, None, None, to_torch(torch, gamma), to_torch(torch, beta), True).backward(
        torch.from_numpy(dout)
    )
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-15)  # float64 rounding of O(1) terms


@pytest.mark.parametrize("level", list(LEVELS))
def test_batchnorm_running_update_uses_unbiased_variance(level):
    """PyTorch's rule, written out independently: momentum weighs the new batch, variance / (M - 1)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 4, 5)) * 2 + 1
    running_mean, running_var = np.array([0.5, -1.0]), np.array([2.0, 0.3])
    expected_mean = 0.7 * running_mean + 0.3 * x.mean(axis=(0, 2, 3))
    expected_var = 0.7 * running_var + 0.3 * x.var(axis=(0, 2, 3), ddof=1)
    LEVELS[level].batchnorm2d_forward(x, np.ones(2), np.zeros(2), running_mean, running_var, True, momentum=0.3)
    np.testing.assert_allclose(running_mean, expected_mean, rtol=1e-14)
    np.testing.assert_allclose(running_var, expected_var, rtol=1e-14)


@pytest.mark.parametrize("backward", ["batchnorm2d_backward", "batchnorm2d_backward_graph"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_finite_differences(training, backward):
    rng = np.random.default_rng(7)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    for module in (F, F.fast):
        if not hasattr(module, backward):
            continue
        finite_difference_check(
            lambda x, g, b: module.batchnorm2d_forward(x, g, b, running_mean.copy(), running_var.copy(), training),
            getattr(module, backward),
            [rng.standard_normal((2, 3, 4, 3)) * 2 + 1, rng.uniform(0.5, 2, 3), rng.standard_normal(3)],
        )


# --- activations ----------------------------------------------------------------------------------


def activation_input(shape, seed):
    """Values around and exactly at the kinks 0 and 6, where the gradient convention matters."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 9.0, shape)
    x.flat[::7] = 0.0
    x.flat[3::11] = 6.0
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "relu6"])
def test_activation(torch, dtype, name):
    """Including the kinks, where PyTorch's gradient is 0."""
    torch_op = {"relu": torch.nn.functional.relu, "relu6": torch.nn.functional.relu6}[name]
    compare_pair(torch, versions(name), torch_op, [activation_input((3, 4, 5, 7), seed=8)], dtype)


@pytest.mark.parametrize("level", list(LEVELS))
def test_relu6_gradient_is_zero_at_and_above_six_and_at_zero(level):
    x = np.array([-1.0, 0.0, 0.5, 5.99, 6.0, 7.0])
    module = LEVELS[level]
    out, cache = module.relu6_forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 5.99, 6.0, 6.0])
    np.testing.assert_array_equal(module.relu6_backward(np.ones(6), cache), [0, 0, 1, 1, 0, 0])


@pytest.mark.parametrize("level", FD_LEVELS)
@pytest.mark.parametrize("name", ["relu", "relu6"])
def test_activation_finite_differences(level, name):
    x = np.random.default_rng(9).uniform(-3.0, 9.0, (2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # central differences are meaningless at a kink
    x[np.abs(x - 6) < 1e-3] = 5.5
    finite_difference_check(*versions(name)[level], [x])


# --- dropout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout(dtype):
    """With the same seed every version drops the same values and scales the rest alike, forward and backward.

    PyTorch draws its own random numbers, so the comparison with it is by statistics:
    :func:`test_dropout_uses_torch_meaning_of_p_and_scaling`.
    """
    rng = np.random.default_rng(10)
    x, dout = rng.uniform(1.0, 2.0, (3, 4, 5)).astype(dtype), upstream_gradient((3, 4, 5), seed=0).astype(dtype)
    results = {}
    for level, module in LEVELS.items():
        out, cache = module.dropout_forward(x, 0.4, True, np.random.default_rng(11))
        results[level] = (out, module.dropout_backward(dout, cache))
    for level, (out, dx) in results.items():
        assert_close(out, results["plain"][0], dtype, f"{level}: forward output")
        assert_close(dx, results["plain"][1], dtype, f"{level}: gradient")
    assert 0 < np.count_nonzero(results["plain"][0]) < x.size  # some dropped, some kept


def test_dropout_uses_torch_meaning_of_p_and_scaling(torch):
    """Both drop a fraction p and scale the survivors by exactly 1 / (1 - p)."""
    x = np.random.default_rng(10).uniform(1.0, 2.0, (200, 500))  # no zeros: a zero output means dropped
    p = 0.3
    for level in ("plain", "fast"):  # the same code: fast uses the plain version
        out, mask = LEVELS[level].dropout_forward(x, p, True, np.random.default_rng(11))
        torch_out = torch.nn.functional.dropout(to_torch(torch, x), p, True).numpy()
        for result in (out, torch_out):
            kept = result != 0
            assert abs((1 - kept.mean()) - p) < 0.005  # 100,000 draws: the standard error is 0.0015
            np.testing.assert_allclose(result[kept] / x[kept], 1 / (1 - p), rtol=1e-12)
        dout = np.random.default_rng(12).standard_normal(x.shape)
        np.testing.assert_array_equal(F.dropout_backward(dout, mask) != 0, out != 0)
        np.testing.assert_allclose(F.dropout_backward(dout, mask), dout * (out / x), rtol=1e-12)


@pytest.mark.parametrize("level", list(LEVELS))
def test_dropout_same_seed_same_mask(level):
    x = np.ones((4, 50), dtype=np.float32)
    forward = LEVELS[level].dropout_forward
    first, _ = forward(x, 0.5, True, np.random.default_rng(42))
    second, _ = forward(x, 0.5, True, np.random.default_rng(42))
    other, _ = forward(x, 0.5, True, np.random.default_rng(43))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert first.dtype == np.float32


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("training, p", [(False, 0.5), (True, 0.0)])
def test_dropout_identity_in_eval_and_at_p_zero(level, training, p):
    x = np.random.default_rng(13).standard_normal((3, 5))
    module = LEVELS[level]
    out, cache = module.dropout_forward(x, p, training, np.random.default_rng(0))
    assert out is x
    dout = np.ones_like(x)
    np.testing.assert_array_equal(module.dropout_backward(dout, cache), dout)


@pytest.mark.parametrize("level", list(LEVELS))
def test_dropout_p_one_drops_everything(torch, level):
    x = np.random.default_rng(14).standard_normal((3, 5))
    module = LEVELS[level]
    out, cache = module.dropout_forward(x, 1.0, True, np.random.default_rng(0))
    np.testing.assert_array_equal(out, torch.nn.functional.dropout(to_torch(torch, x), 1.0, True).numpy())
    np.testing.assert_array_equal(module.dropout_backward(np.ones_like(x), cache), np.zeros_like(x))


def test_dropout_finite_differences():
    """With the generator re-seeded at every call the mask is fixed, so the op is differentiable."""
    finite_difference_check(
        lambda x: F.dropout_forward(x, 0.4, True, np.random.default_rng(15)),
        F.dropout_backward,
        [np.random.default_rng(16).standard_normal((3, 4, 2, 2))],
    )


# --- linear, pooling, loss -------------------------------------------------------------------------


@st.composite
def linear_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    leading = draw(st.sampled_from([(1,), (3,), (2, 3)]))
    fan_in, fan_out = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    bias = rng.standard_normal(fan_out) if draw(st.booleans()) else None
    return rng.standard_normal((*leading, fan_in)), rng.standard_normal((fan_out, fan_in)), bias


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=linear_cases())
def test_linear(torch, dtype, case):
    compare_pair(torch, versions("linear"), torch.nn.functional.linear, list(case), dtype)


def test_linear_finite_differences():
    rng = np.random.default_rng(17)
    finite_difference_check(
        F.linear_forward, F.linear_backward,
        [rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 5), (3, 4, 1, 9), (2, 3, 9, 17)])
def test_global_avg_pool(torch, dtype, shape):
    compare_pair(
        torch, versions("global_avg_pool"),
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1),
        [np.random.default_rng(18).standard_normal(shape)], dtype,
    )


@pytest.mark.parametrize("level", FD_LEVELS)
def test_global_avg_pool_finite_differences(level):
    finite_difference_check(*versions("global_avg_pool")[level], [np.random.default_rng(19).standard_normal((2, 3, 5, 4))])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 1e4], ids=["normal", "huge-logits"])
def test_softmax_cross_entropy(torch, dtype, scale, label_smoothing):
    rng = np.random.default_rng(20)
    logits, targets = rng.standard_normal((6, 10)) * scale, rng.integers(0, 10, 6)
    results = compare_pair(
        torch, versions("softmax_cross_entropy", targets, label_smoothing),
        lambda z: torch.nn.functional.cross_entropy(z, torch.from_numpy(targets), label_smoothing=label_smoothing),
        [logits], dtype,
    )
    assert all(np.isfinite(out) for out, _ in results.values())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_softmax_cross_entropy_finite_differences(label_smoothing):
    rng = np.random.default_rng(21)
    targets = rng.integers(0, 7, 5)
    finite_difference_check(
        lambda z: F.softmax_cross_entropy_forward(z, targets, label_smoothing),
        F.softmax_cross_entropy_backward,
        [rng.standard_normal((5, 7)) * 3],
    )


def test_softmax_is_stable_and_sums_to_one(torch):
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    probs = F.softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(probs, torch.softmax(to_torch(torch, logits), 1).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(F.log_softmax(logits), torch.log_softmax(to_torch(torch, logits), 1).numpy(), rtol=1e-12)


# --- dtypes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", list(LEVELS))
def test_every_pair_keeps_float32(level):
    """No silent upcast: float32 in, float32 out, float32 gradients, in every version."""
    module = LEVELS[level]
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    cases = [
        ("conv2d", (x, rng.standard_normal((4, 3, 3, 3)).astype(np.float32))),
        ("depthwise_conv2d", (x, rng.standard_normal((3, 1, 3, 3)).astype(np.float32))),
        ("batchnorm2d", (x, ones, zeros, zeros.copy(), ones.copy(), True)),
        ("relu", (x,)),
        ("relu6", (x,)),
        ("dropout", (x, 0.5, True, rng)),
        ("global_avg_pool", (x,)),
        ("linear", (x[:, :, 0, 0], rng.standard_normal((4, 3)).astype(np.float32))),
        ("softmax_cross_entropy", (x[:, :, 0, 0], np.array([0, 2]))),
    ]
    for name, args in cases:
        out, cache = getattr(module, f"{name}_forward")(*args)
        assert out.dtype == np.float32, name
        grads = getattr(module, f"{name}_backward")(np.ones_like(out), cache)
        for grad in grads if isinstance(grads, tuple) else (grads,):
            assert grad is None or grad.dtype == np.float32, name
