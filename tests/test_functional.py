"""Every forward/backward pair: against PyTorch, against the loop versions, by finite differences.

Shapes are drawn with hypothesis: odd spatial sizes, stride 1 and 2, batch 1, one channel,
kernels 1, 2, 3 and 5, with and without padding and bias.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from npmobilenet import functional as F
from npmobilenet import reference
from torch_helpers import (
    assert_close,
    compare_with_torch,
    finite_difference_check,
    to_torch,
    upstream_gradient,
)

DTYPES = [np.float64, np.float32]
SETTINGS = settings(max_examples=30, deadline=None)


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


PAIRS = {
    "conv2d": (F.conv2d_forward, F.conv2d_backward, reference.conv2d_forward, reference.conv2d_backward),
    "depthwise": (
        F.depthwise_conv2d_forward, F.depthwise_conv2d_backward,
        reference.depthwise_conv2d_forward, reference.depthwise_conv2d_backward,
    ),
}


# --- conv2d and depthwise conv2d ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["conv2d", "depthwise"])
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_convolution_matches_torch(torch, dtype, kind, data):
    """Output and the gradients of input, weight and bias, against F.conv2d (groups=C for depthwise)."""
    forward, backward = PAIRS[kind][:2]
    x, w, b, stride, padding = data.draw(conv_cases(depthwise=kind == "depthwise"))
    groups = x.shape[1] if kind == "depthwise" else 1
    compare_with_torch(
        torch,
        lambda x, w, b: forward(x, w, b, stride, padding),
        backward,
        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride, padding, groups=groups),
        [x, w, b],
        dtype,
    )


@pytest.mark.parametrize("stride, padding, bias", [(1, 1, True), (2, 1, False), (2, 0, True), (1, 0, False)])
def test_conv2d_finite_differences(stride, padding, bias):
    rng = np.random.default_rng(2)
    b = rng.standard_normal(3) if bias else None
    finite_difference_check(
        lambda x, w, b: F.conv2d_forward(x, w, b, stride, padding),
        F.conv2d_backward,
        [rng.standard_normal((2, 2, 5, 7)), rng.standard_normal((3, 2, 3, 3)), b],
    )


def test_conv2d_one_by_one_is_a_matrix_product():
    """A 1x1 convolution is ``W @ x`` per pixel: check against einsum, independent of im2col."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 5, 4, 3)), rng.standard_normal((7, 5, 1, 1))
    out, _ = F.conv2d_forward(x, w)
    np.testing.assert_allclose(out, np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x), rtol=1e-12)


@pytest.mark.parametrize("stride, padding, kernel", [(1, 1, 3), (2, 1, 3), (2, 2, 5), (1, 0, 1)])
def test_depthwise_finite_differences(stride, padding, kernel):
    rng = np.random.default_rng(4)
    finite_difference_check(
        lambda x, w, b: F.depthwise_conv2d_forward(x, w, b, stride, padding),
        F.depthwise_conv2d_backward,
        [rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((3, 1, kernel, kernel)), rng.standard_normal(3)],
    )


@pytest.mark.parametrize("kind", PAIRS)
@SETTINGS
@given(data=st.data())
def test_vectorised_matches_loop_reference(kind, data):
    """The vectorised pair and the naive loops agree, forward and every gradient, in float64."""
    forward, backward, loop_forward, loop_backward = PAIRS[kind]
    x, w, b, stride, padding = data.draw(conv_cases(depthwise=kind == "depthwise"))
    out, cache = forward(x, w, b, stride, padding)
    loop_out, loop_cache = loop_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(out, loop_out, rtol=1e-12, atol=1e-12)
    dout = upstream_gradient(out.shape, seed=1)
    for grad, loop_grad in zip(backward(dout, cache), loop_backward(dout, loop_cache)):
        if loop_grad is None:
            assert grad is None
        else:
            np.testing.assert_allclose(grad, loop_grad, rtol=1e-12, atol=1e-12)


def test_loop_reference_agrees_with_torch(torch):
    """The loop versions are the yardstick, so check the yardstick too."""
    rng = np.random.default_rng(5)
    x, w, wd = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((3, 1, 3, 3))
    tx = to_torch(torch, x)
    out, _ = reference.conv2d_forward(x, w, None, 2, 1)
    np.testing.assert_allclose(out, torch.nn.functional.conv2d(tx, to_torch(torch, w), None, 2, 1).numpy(), rtol=1e-12, atol=1e-12)
    out, _ = reference.depthwise_conv2d_forward(x, wd, None, 1, 1)
    np.testing.assert_allclose(out, torch.nn.functional.conv2d(tx, to_torch(torch, wd), None, 1, 1, groups=3).numpy(), rtol=1e-12, atol=1e-12)


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


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=batchnorm_cases())
def test_batchnorm_matches_torch(torch, dtype, training, case):
    x, gamma, beta, running_mean, running_var, momentum = case
    # In training mode dx is the part of dout orthogonal to 1 and x_hat, a space of M - 2
    # dimensions for M values per channel. For small M it can be almost nothing by chance,
    # below float32's resolution of the terms that cancel; float32 takes M >= 8, where that
    # chance is negligible, and float64 every M >= 3.
    assume(dtype == np.float64 or not training or x.size // x.shape[1] >= 8)
    mean, var = running_mean.astype(dtype), running_var.astype(dtype)
    torch_mean, torch_var = to_torch(torch, mean), to_torch(torch, var)
    compare_with_torch(
        torch,
        lambda x, g, b: F.batchnorm2d_forward(x, g, b, mean, var, training, momentum),
        F.batchnorm2d_backward,
        lambda x, g, b: torch.nn.functional.batch_norm(x, torch_mean, torch_var, g, b, training, momentum),
        [x, gamma, beta],
        dtype,
    )
    assert_close(mean, torch_mean.numpy(), dtype, "running_mean after the step")
    assert_close(var, torch_var.numpy(), dtype, "running_var after the step")
    if not training:
        np.testing.assert_array_equal(mean, running_mean.astype(dtype))


def test_batchnorm_two_values_per_channel(torch):
    """With M = 2 values per channel, x_hat is -1 and +1 (up to eps) whatever x is, so the output
    is gamma * (-1, +1) + beta and dx is nothing but the eps term: about eps / var, not 0."""
    x = np.array([[[[1.5]], [[-2.0]]], [[[4.0]], [[0.5]]]])  # (2, 2, 1, 1): two values per channel
    gamma, beta = np.array([2.0, -1.0]), np.array([0.5, 0.25])
    out, cache = F.batchnorm2d_forward(x, gamma, beta, None, None, training=True)
    np.testing.assert_allclose(out[:, :, 0, 0], [[-1.5, 1.25], [2.5, -0.75]], atol=1e-5)
    dout = upstream_gradient(x.shape, seed=0)
    dx, dgamma, dbeta = F.batchnorm2d_backward(dout, cache)
    assert np.max(np.abs(dx)) < 1e-5
    tx = to_torch(torch, x, requires_grad=True)
    torch.nn.functional.batch_norm(tx, None, None, to_torch(torch, gamma), to_torch(torch, beta), True).backward(
        torch.from_numpy(dout)
    )
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-15)  # float64 rounding of O(1) terms


def test_batchnorm_running_update_uses_unbiased_variance():
    """PyTorch's rule, written out independently: momentum weighs the new batch, variance / (M - 1)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 4, 5)) * 2 + 1
    running_mean, running_var = np.array([0.5, -1.0]), np.array([2.0, 0.3])
    expected_mean = 0.7 * running_mean + 0.3 * x.mean(axis=(0, 2, 3))
    expected_var = 0.7 * running_var + 0.3 * x.var(axis=(0, 2, 3), ddof=1)
    F.batchnorm2d_forward(x, np.ones(2), np.zeros(2), running_mean, running_var, True, momentum=0.3)
    np.testing.assert_allclose(running_mean, expected_mean, rtol=1e-14)
    np.testing.assert_allclose(running_var, expected_var, rtol=1e-14)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_finite_differences(training):
    rng = np.random.default_rng(7)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    finite_difference_check(
        lambda x, g, b: F.batchnorm2d_forward(x, g, b, running_mean.copy(), running_var.copy(), training),
        F.batchnorm2d_backward,
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
@pytest.mark.parametrize(
    "name", ["relu", "relu6"]
)
def test_activation_matches_torch_including_the_kinks(torch, dtype, name):
    torch_op = {"relu": torch.nn.functional.relu, "relu6": torch.nn.functional.relu6}[name]
    forward, backward = getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward")
    x = activation_input((3, 4, 5, 7), seed=8)
    compare_with_torch(torch, forward, backward, torch_op, [x], dtype)


def test_relu6_gradient_is_zero_at_and_above_six_and_at_zero():
    x = np.array([-1.0, 0.0, 0.5, 5.99, 6.0, 7.0])
    out, cache = F.relu6_forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 5.99, 6.0, 6.0])
    np.testing.assert_array_equal(F.relu6_backward(np.ones(6), cache), [0, 0, 1, 1, 0, 0])


@pytest.mark.parametrize("name", ["relu", "relu6"])
def test_activation_finite_differences(name):
    x = np.random.default_rng(9).uniform(-3.0, 9.0, (2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # central differences are meaningless at a kink
    x[np.abs(x - 6) < 1e-3] = 5.5
    finite_difference_check(getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward"), [x])


# --- dropout ------------------------------------------------------------------------------------


def test_dropout_uses_torch_meaning_of_p_and_scaling(torch):
    """Both drop a fraction p and scale the survivors by exactly 1 / (1 - p)."""
    x = np.random.default_rng(10).uniform(1.0, 2.0, (200, 500))  # no zeros: a zero output means dropped
    p = 0.3
    out, mask = F.dropout_forward(x, p, True, np.random.default_rng(11))
    torch_out = torch.nn.functional.dropout(to_torch(torch, x), p, True).numpy()
    for result in (out, torch_out):
        kept = result != 0
        assert abs((1 - kept.mean()) - p) < 0.005  # 100,000 draws: the standard error is 0.0015
        np.testing.assert_allclose(result[kept] / x[kept], 1 / (1 - p), rtol=1e-12)
    dout = np.random.default_rng(12).standard_normal(x.shape)
    np.testing.assert_array_equal(F.dropout_backward(dout, mask) != 0, out != 0)
    np.testing.assert_allclose(F.dropout_backward(dout, mask), dout * (out / x), rtol=1e-12)


def test_dropout_same_seed_same_mask():
    x = np.ones((4, 1000), dtype=np.float32)
    first, _ = F.dropout_forward(x, 0.5, True, np.random.default_rng(42))
    second, _ = F.dropout_forward(x, 0.5, True, np.random.default_rng(42))
    other, _ = F.dropout_forward(x, 0.5, True, np.random.default_rng(43))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert first.dtype == np.float32


@pytest.mark.parametrize("training, p", [(False, 0.5), (True, 0.0)])
def test_dropout_identity_in_eval_and_at_p_zero(training, p):
    x = np.random.default_rng(13).standard_normal((3, 5))
    out, cache = F.dropout_forward(x, p, training, np.random.default_rng(0))
    assert out is x
    dout = np.ones_like(x)
    np.testing.assert_array_equal(F.dropout_backward(dout, cache), dout)


def test_dropout_p_one_drops_everything(torch):
    x = np.random.default_rng(14).standard_normal((3, 5))
    out, cache = F.dropout_forward(x, 1.0, True, np.random.default_rng(0))
    np.testing.assert_array_equal(out, torch.nn.functional.dropout(to_torch(torch, x), 1.0, True).numpy())
    np.testing.assert_array_equal(F.dropout_backward(np.ones_like(x), cache), np.zeros_like(x))


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
def test_linear_matches_torch(torch, dtype, case):
    compare_with_torch(torch, F.linear_forward, F.linear_backward, torch.nn.functional.linear, list(case), dtype)


def test_linear_finite_differences():
    rng = np.random.default_rng(17)
    finite_difference_check(
        F.linear_forward, F.linear_backward,
        [rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 5), (3, 4, 1, 9)])
def test_global_avg_pool_matches_torch(torch, dtype, shape):
    x = np.random.default_rng(18).standard_normal(shape)
    compare_with_torch(
        torch, F.global_avg_pool_forward, F.global_avg_pool_backward,
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1), [x], dtype,
    )


def test_global_avg_pool_finite_differences():
    finite_difference_check(
        F.global_avg_pool_forward, F.global_avg_pool_backward,
        [np.random.default_rng(19).standard_normal((2, 3, 5, 4))],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 1e4], ids=["normal", "huge-logits"])
def test_softmax_cross_entropy_matches_torch(torch, dtype, scale):
    rng = np.random.default_rng(20)
    logits = rng.standard_normal((6, 10)) * scale
    targets = rng.integers(0, 10, 6)
    loss, cache = F.softmax_cross_entropy_forward(logits.astype(dtype), targets)
    assert np.isfinite(loss)
    torch_logits = to_torch(torch, logits.astype(dtype), requires_grad=True)
    torch_loss = torch.nn.functional.cross_entropy(torch_logits, torch.from_numpy(targets))
    dloss = 0.7
    torch_loss.backward(torch.tensor(dloss, dtype=torch_loss.dtype))
    assert_close(loss, torch_loss.detach().numpy(), dtype, "loss")
    assert_close(F.softmax_cross_entropy_backward(dloss, cache), torch_logits.grad.numpy(), dtype, "dlogits")


def test_softmax_cross_entropy_finite_differences():
    rng = np.random.default_rng(21)
    targets = rng.integers(0, 7, 5)
    finite_difference_check(
        lambda z: F.softmax_cross_entropy_forward(z, targets),
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


def test_every_pair_keeps_float32():
    """No silent upcast: float32 in, float32 out, float32 gradients."""
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    cases = [
        (F.conv2d_forward, F.conv2d_backward, (x, rng.standard_normal((4, 3, 3, 3)).astype(np.float32))),
        (F.depthwise_conv2d_forward, F.depthwise_conv2d_backward, (x, rng.standard_normal((3, 1, 3, 3)).astype(np.float32))),
        (F.batchnorm2d_forward, F.batchnorm2d_backward, (x, ones, zeros, zeros.copy(), ones.copy(), True)),
        (F.relu_forward, F.relu_backward, (x,)),
        (F.relu6_forward, F.relu6_backward, (x,)),
        (F.dropout_forward, F.dropout_backward, (x, 0.5, True, rng)),
        (F.global_avg_pool_forward, F.global_avg_pool_backward, (x,)),
        (F.linear_forward, F.linear_backward, (x[:, :, 0, 0], rng.standard_normal((4, 3)).astype(np.float32))),
    ]
    for forward, backward, args in cases:
        out, cache = forward(*args)
        assert out.dtype == np.float32, forward.__name__
        grads = backward(np.ones_like(out), cache)
        for grad in grads if isinstance(grads, tuple) else (grads,):
            assert grad is None or grad.dtype == np.float32, backward.__name__
    loss, cache = F.softmax_cross_entropy_forward(x[:, :, 0, 0], np.array([0, 2]))
    assert loss.dtype == np.float32 and F.softmax_cross_entropy_backward(1.0, cache).dtype == np.float32
