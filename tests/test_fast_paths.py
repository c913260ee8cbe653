"""The paths that make the network fast, checked against the plain ones they replace.

* Inference folds each batch norm into the convolution before it (eval mode, under
  ``no_grad()``): the logits equal the unfolded network's to float32 precision.
* Every operation stores its output channels-last and accepts either memory order: the
  results are the same, bit for bit, whichever order the input has.
* Training caches keep what backward needs and no more: no more than torchvision saves.
"""

import numpy as np
import pytest
from torch_helpers import upstream_gradient
from twins import with_measured_running_statistics

import npmobilenet
from npmobilenet.functional import fast as F
from npmobilenet import nn
from npmobilenet.functional.fast import fused as fused_module
from npmobilenet.functional.fast.layout import is_channels_last
from npmobilenet.models.mobilenetv2 import MobileNetV2


def eval_model(dtype, seed=0, width_mult=0.5, size=(64, 80)):
    """A small MobileNetV2 in eval mode with non-default running statistics, and an input batch."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 3, *size)).astype(dtype)
    model = MobileNetV2(num_classes=10, width_mult=width_mult, seed=seed).astype(dtype)
    return with_measured_running_statistics(model, x, seed), x


# --- batch norm folded into the convolution -----------------------------------------------------


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-4), (np.float64, 1e-12)], ids=["float32", "float64"])
def test_folded_inference_gives_the_unfolded_logits(dtype, tolerance):
    """Eval mode with gradients on runs conv and batch norm apart; under no_grad they are folded.

    float32 rounds differently on the two paths, so they agree to float32 precision: the 1e-4
    of the largest logit that every float32 comparison of the whole network uses (here they
    differ by about 1e-5 after 50 layers). float64 shows that the folding itself is exact.
    """
    model, x = eval_model(dtype)
    unfolded = model(x)  # gradients on: every layer runs, and keeps its cache
    assert model.features[1].conv[1].cache is not None
    with npmobilenet.no_grad():
        folded = model(x)
    assert folded.dtype == unfolded.dtype == dtype
    scale = float(np.max(np.abs(unfolded)))
    np.testing.assert_allclose(folded, unfolded, rtol=tolerance, atol=tolerance * scale)
    assert not np.array_equal(folded, unfolded) or dtype == np.float64, "the folded path did not run"


def test_folding_happens_only_in_eval_mode_under_no_grad(monkeypatch):
    calls = []
    original = F.fold_batchnorm
    monkeypatch.setattr(F, "fold_batchnorm", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    model, x = eval_model(np.float32)
    pairs = sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    model(x)  # eval, gradients on
    assert calls == []
    with npmobilenet.no_grad():
        model(x)
    assert len(calls) == pairs == 52
    calls.clear()
    running_mean = model.features[0][1].running_mean.copy()
    with npmobilenet.no_grad():
        model.train()(x)  # training mode: batch statistics, running statistics move
    assert calls == []
    assert not np.array_equal(model.features[0][1].running_mean, running_mean)


@pytest.mark.parametrize("depthwise, stride, bias", [(False, 1, False), (False, 2, True), (True, 1, False), (True, 2, True)])
def test_fold_batchnorm_equals_batchnorm_after_the_convolution(depthwise, stride, bias):
    rng = np.random.default_rng(7)
    channels, out_channels = 6, (6 if depthwise else 5)
    x = rng.standard_normal((2, channels, 9, 11))
    w = rng.standard_normal((out_channels, 1 if depthwise else channels, 3, 3))
    b = rng.standard_normal(out_channels) if bias else None
    gamma, beta = rng.uniform(0.5, 1.5, out_channels), rng.uniform(-1, 1, out_channels)
    mean, var = rng.standard_normal(out_channels), rng.uniform(0.2, 3, out_channels)
    conv = F.depthwise_conv2d_forward if depthwise else F.conv2d_forward

    expected, _ = F.batchnorm2d_forward(conv(x, w, b, stride, 1)[0], gamma, beta, mean, var, training=False)
    w_folded, b_folded = F.fold_batchnorm(w, b, gamma, beta, mean, var)
    folded, _ = conv(x, w_folded, b_folded, stride, 1)
    np.testing.assert_allclose(folded, expected, rtol=1e-12, atol=1e-12)


def test_folded_weights_follow_changed_parameters():
    """The folded weights are made from the parameters at every call: never stale."""
    model, x = eval_model(np.float32)
    with npmobilenet.no_grad():
        before = model(x)
        model.features[0][1].weight.data *= 2  # a change in place, as an optimiser makes
        after = model(x)
    model.features[0][1].weight.data /= 2
    assert not np.allclose(before, after)
    unfolded = model(x)
    np.testing.assert_allclose(before, unfolded, rtol=1e-5, atol=1e-5 * np.abs(unfolded).max())


# --- inference: the bias and the activation on each block of a convolution's output ---------------


INFERENCE_CASES = {  # (depthwise, kernel, stride, padding, bias, activation); shapes big enough for several blocks
    "stem 3x3/2 + relu6": (False, 3, 2, 1, True, "relu6"),
    "pointwise + relu6": (False, 1, 1, 0, True, "relu6"),
    "pointwise, no bias, no activation": (False, 1, 1, 0, False, None),
    "pointwise + relu": (False, 1, 1, 0, True, "relu"),
    "depthwise 3x3/1 + relu6": (True, 3, 1, 1, True, "relu6"),
    "depthwise 3x3/2 + relu": (True, 3, 2, 1, True, "relu"),
    "depthwise 3x3/1, no bias": (True, 3, 1, 1, False, None),
}


@pytest.mark.parametrize("name", list(INFERENCE_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_convolutions_give_the_plain_convolution_then_the_activation(name, dtype):
    """The fused inference versions against the plain (unfused) conv and activation: the same bits.

    Each output value is the same product, bias and activation, in the same order, so the
    fused result is bit for bit the layer-by-layer one; the input (12 channels at 40x36, 2
    images) makes several blocks, and values beyond 6 and below 0 meet both kinks.
    """
    depthwise, kernel, stride, padding, bias, activation = INFERENCE_CASES[name]
    rng = np.random.default_rng(11)
    x = F.channels_last(4 * rng.standard_normal((2, 12, 40, 36)).astype(dtype))
    w = rng.standard_normal((12 if depthwise else 64, 1 if depthwise else 12, kernel, kernel)).astype(dtype)
    b = rng.standard_normal(w.shape[0]).astype(dtype) if bias else None
    forward, inference = ((F.depthwise_conv2d_forward, F.depthwise_conv2d_inference) if depthwise
                          else (F.conv2d_forward, F.conv2d_inference))
    expected = forward(x, w, b, stride, padding)[0]
    if activation is not None:
        expected = getattr(F, activation)(expected)
    in_place = None if activation is None else getattr(F, activation + "_in_place")
    fused = inference(x, w, b, stride, padding, in_place)
    assert fused.shape == expected.shape and fused.dtype == dtype and is_channels_last(fused)
    assert np.array_equal(fused, expected)
    if activation is not None:
        assert fused.min() == 0 and (activation == "relu" or fused.max() == 6)


@pytest.mark.parametrize("stride, dw_bias, pw_bias, images", [(1, True, True, 2), (2, True, False, 2), (1, False, True, 9)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_and_projection_in_one_pass_give_the_two_layers_bit_for_bit(stride, dw_bias, pw_bias, images, dtype):
    """Blocks of one image's rows (2 images of 40x36) and of several whole images (9 of 6x5)."""
    rng = np.random.default_rng(12)
    size = (40, 36) if images == 2 else (6, 5)
    x = F.channels_last(4 * rng.standard_normal((images, 48, *size)).astype(dtype))
    dw_weight, pw_weight = (rng.standard_normal(shape).astype(dtype) for shape in ((48, 1, 3, 3), (16, 48, 1, 1)))
    dw_b = rng.standard_normal(48).astype(dtype) if dw_bias else None
    pw_b = rng.standard_normal(16).astype(dtype) if pw_bias else None
    middle = F.depthwise_conv2d_inference(x, dw_weight, dw_b, stride, 1, F.relu6_in_place)
    expected = F.conv2d_inference(middle, pw_weight, pw_b)
    fused = F.depthwise_pointwise_inference(x, dw_weight, dw_b, stride, 1, F.relu6_in_place, pw_weight, pw_b)
    assert fused.shape == expected.shape and fused.dtype == dtype and is_channels_last(fused)
    assert np.array_equal(fused, expected)
    np.testing.assert_allclose(fused, F.conv2d_forward(F.relu6(F.depthwise_conv2d_forward(x, dw_weight, dw_b, stride, 1)[0]),
                                                       pw_weight, pw_b)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, dtype", [((16, 47, 1, 1), np.float32), ((16, 48, 3, 3), np.float32), ((16, 48, 1, 1), np.float64)])
def test_depthwise_and_projection_refuse_a_projection_weight_that_does_not_fit(shape, dtype):
    x = F.channels_last(np.zeros((1, 48, 8, 8), np.float32))
    with pytest.raises(npmobilenet.errors.ShapeError, match=r"expected a 1x1 weight of shape \(16, 48, 1, 1\)"):
        F.depthwise_pointwise_inference(x, np.zeros((48, 1, 3, 3), np.float32), None, 1, 1, None, np.zeros(shape, dtype))


def test_under_no_grad_every_inverted_residual_block_runs_fused(monkeypatch):
    model, x = eval_model(np.float32)
    calls = []
    for name in ("depthwise_pointwise_inference", "inverted_residual_inference"):
        original = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *args, name=name, original=original: calls.append(name) or original(*args))
    with npmobilenet.no_grad():
        model(x)
    # the first block has no expansion: its depthwise convolution and projection alone
    assert calls == ["depthwise_pointwise_inference"] + 16 * ["inverted_residual_inference"]


@pytest.mark.parametrize("stride, bias, images", [(1, True, 2), (2, True, 2), (2, False, 9), (1, False, 9)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_whole_inverted_residual_block_gives_its_three_layers_bit_for_bit(stride, bias, images, dtype):
    """Expansion of each block's rows into its padded phases, then depthwise and projection: the three layers' bits.

    Odd widths (37, 7) make the two column phases of stride 2 of different widths.
    """
    x, weights, biases = inverted_residual_case(stride, bias, images, dtype)
    expected = inverted_residual_layer_by_layer(x, weights, biases, stride)
    fused = F.inverted_residual_inference(x, weights[0], biases[0], F.relu6_in_place, weights[1], biases[1], stride, 1,
                                          F.relu6_in_place, weights[2], biases[2])
    assert fused.shape == expected.shape and fused.dtype == dtype and is_channels_last(fused)
    assert np.array_equal(fused, expected)


@pytest.mark.parametrize("stride, bias, images", [(1, True, 2), (2, True, 2), (2, False, 9), (1, False, 9)])
@pytest.mark.parametrize("block_values", [20_000, 1], ids=["rows", "one-row"])
def test_an_inverted_residual_block_cut_in_small_blocks_gives_the_same_values_on_any_number_of_threads(
        stride, bias, images, block_values, monkeypatch):
    """Blocks of a few rows, or of one, whose input rows overlap (each block computes them) and reach into the padding.

    Every value is the three layers' up to the order BLAS adds a small product in (OpenBLAS
    has its own kernel for small matrices: the bits of a row of a product can depend on how
    many rows the product has), so float64 agrees to 1e-13 of the largest value. The blocks
    depend on the shape alone, so 1 and 2 threads give the same bits.
    """
    monkeypatch.setattr(fused_module, "BLOCK_VALUES", block_values)
    x, weights, biases = inverted_residual_case(stride, bias, images, np.float64)
    expected = inverted_residual_layer_by_layer(x, weights, biases, stride)
    results, threads_before = [], npmobilenet.get_num_threads()
    try:
        for threads in (1, 2):
            npmobilenet.set_num_threads(threads)
            results.append(F.inverted_residual_inference(x, weights[0], biases[0], F.relu6_in_place, weights[1],
                                                         biases[1], stride, 1, F.relu6_in_place, weights[2], biases[2]))
    finally:
        npmobilenet.set_num_threads(threads_before)
    np.testing.assert_allclose(results[0], expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    assert np.array_equal(results[0], results[1])


def inverted_residual_case(stride, bias, images, dtype):
    """An input (2 images of 40x37, or 9 of 6x7) and the three convolutions' weights and biases (or None)."""
    rng = np.random.default_rng(13)
    size = (40, 37) if images == 2 else (6, 7)
    x = F.channels_last(rng.standard_normal((images, 8, *size)).astype(dtype))
    weights = [rng.standard_normal(shape).astype(dtype) for shape in ((48, 8, 1, 1), (48, 1, 3, 3), (16, 48, 1, 1))]
    biases = [rng.standard_normal(len(w)).astype(dtype) if bias else None for w in weights]
    return x, weights, biases


def inverted_residual_layer_by_layer(x, weights, biases, stride):
    """Expansion, depthwise and projection as three inference layers, each writing its whole output."""
    expanded = F.conv2d_inference(x, weights[0], biases[0], 1, 0, F.relu6_in_place)
    middle = F.depthwise_conv2d_inference(expanded, weights[1], biases[1], stride, 1, F.relu6_in_place)
    return F.conv2d_inference(middle, weights[2], biases[2])


def test_an_inverted_residual_block_refuses_an_expansion_that_is_not_1x1():
    x = F.channels_last(np.zeros((1, 8, 8, 8), np.float32))
    with pytest.raises(npmobilenet.errors.ShapeError, match=r"expected a 1x1 expansion weight, got shape \(48, 8, 3, 3\)"):
        F.inverted_residual_inference(x, np.zeros((48, 8, 3, 3), np.float32), None, None,
                                      np.zeros((48, 1, 3, 3), np.float32), None, 1, 1, None,
                                      np.zeros((16, 48, 1, 1), np.float32))


def test_under_no_grad_an_activation_after_a_folded_batch_norm_runs_inside_the_convolution(monkeypatch):
    model, x = eval_model(np.float32)
    activations = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    calls = []
    monkeypatch.setattr(nn.ReLU6, "function", staticmethod(lambda *args: calls.append(1)))
    with npmobilenet.no_grad():
        model(x)
    assert len(activations) == 35 and calls == []  # every ReLU6 follows a batch norm: none runs as a layer


# --- training: batch norm and the activation after it in one sweep -------------------------------


@pytest.mark.parametrize("upper, activation", [(6.0, "relu6"), (None, "relu")])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_with_its_activation_gives_the_two_layers_bit_for_bit(upper, activation, training, dtype):
    """Output, caches, running statistics and every gradient: the same bits as the two layers one after the other."""
    rng = np.random.default_rng(14)
    x = F.channels_last(3 * rng.standard_normal((3, 24, 40, 36)).astype(dtype))  # several blocks
    gamma, beta = (v.astype(dtype) for v in channel_vectors(24, 15))
    beta *= 5  # some channels are shifted past 6, so ReLU6's upper kink is met
    statistics = [rng.standard_normal(24).astype(dtype), rng.uniform(0.5, 2, 24).astype(dtype)]
    dout = F.channels_last(rng.standard_normal(x.shape).astype(dtype))
    separate_statistics, fused_statistics = [v.copy() for v in statistics], [v.copy() for v in statistics]

    normalised, bn_cache = F.batchnorm2d_forward(x, gamma, beta, *separate_statistics, training)
    expected, mask = getattr(F, activation + "_forward")(normalised, True)
    out, fused_cache, fused_mask = F.batchnorm2d_activation_forward(x, gamma, beta, *fused_statistics, training,
                                                                     upper=upper)
    assert np.array_equal(out, expected) and np.array_equal(fused_mask, mask) and is_channels_last(out)
    assert all(np.array_equal(a, b) for a, b in zip(separate_statistics + list(bn_cache[1:4]),
                                                    fused_statistics + list(fused_cache[1:4])))
    assert 0 < mask.mean() < 1 and (upper is None or out.max() == upper)  # both kinks are met

    separate = F.batchnorm2d_backward(getattr(F, activation + "_backward")(dout, mask), bn_cache)
    fused = F.batchnorm2d_activation_backward(dout, fused_mask, fused_cache)
    for a, b in zip(fused, separate):
        assert a.dtype == dtype and np.array_equal(a, b)


def test_a_training_step_runs_each_batch_norm_with_its_activation_and_guided_backprop_still_works(monkeypatch):
    model = MobileNetV2(num_classes=10, width_mult=0.25, seed=0).train()
    x = np.random.default_rng(16).standard_normal((2, 3, 64, 64)).astype(np.float32)
    calls = []
    for name in ("batchnorm2d_activation_forward", "batchnorm2d_activation_backward", "batchnorm2d_backward"):
        original = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *a, name=name, original=original, **k: calls.append(name) or original(*a, **k))
    logits = model(x)
    model.backward(np.ones_like(logits))
    assert calls.count("batchnorm2d_activation_forward") == calls.count("batchnorm2d_activation_backward") == 35
    assert calls.count("batchnorm2d_backward") == 17  # the projections' batch norms, with no activation after them

    calls.clear()
    for module in model.modules():
        if isinstance(module, nn.ReLU6):
            module.guided = True  # the guided rule lives in the activation's own backward: the pairs run apart
    model.zero_grad()
    model.backward(np.ones_like(model(x)))
    assert calls.count("batchnorm2d_activation_backward") == 0 and calls.count("batchnorm2d_backward") == 52


def test_a_batch_norm_and_an_activation_run_apart_are_not_paired_in_the_backward_pass():
    """Only a pair that ran as one forward runs backward as one: here the activation ran again on its own."""
    rng = np.random.default_rng(17)
    bn, relu6 = nn.BatchNorm2d(4), nn.ReLU6()
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32) * 4
    out = bn.forward_with(relu6, x)
    assert bn.ran_with(relu6)
    relu6(out + 1)  # the activation's cache is now another input's
    assert not bn.ran_with(relu6)
    dout = np.ones_like(out)
    np.testing.assert_array_equal(nn.backward_chain([bn, relu6], dout),
                                  bn.backward(relu6.backward(dout)))


# --- channels-last memory -----------------------------------------------------------------------


def nchw_and_channels_last(shape, seed):
    """The same values twice: in NCHW memory and in channels-last memory."""
    x = np.random.default_rng(seed).standard_normal(shape)
    x_last = F.channels_last(x)
    assert x.flags.c_contiguous and is_channels_last(x_last) and not x_last.flags.c_contiguous
    return x, x_last


@pytest.mark.parametrize("source", ["nchw", "strided view", "channels-last"])
def test_channels_last_copies_any_memory_order_into_channels_last_blocks_on_any_number_of_threads(source):
    """The copy goes in blocks of rows on the threads: 3 images of 200x300 with 5 channels span several blocks."""
    x = np.random.default_rng(23).standard_normal((3, 5, 200, 300)).astype(np.float32)
    given = {"nchw": x, "strided view": x[:, ::-1, ::2, 1::3], "channels-last": F.channels_last(x)}[source]
    threads_before = npmobilenet.get_num_threads()
    try:
        for threads in (1, 2):
            npmobilenet.set_num_threads(threads)
            x_last = F.channels_last(given)
            assert is_channels_last(x_last) and x_last.shape == given.shape and np.array_equal(x_last, given)
            assert (x_last is given) == (source == "channels-last")
    finally:
        npmobilenet.set_num_threads(threads_before)


def channel_vectors(channels, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, channels), rng.uniform(-1, 1, channels)


OPERATIONS = {
    "conv3x3/2": (lambda x, r: F.conv2d_forward(x, r.standard_normal((5, 4, 3, 3)), r.standard_normal(5), 2, 1), F.conv2d_backward),
    "conv1x1": (lambda x, r: F.conv2d_forward(x, r.standard_normal((5, 4, 1, 1))), F.conv2d_backward),
    "depthwise/1": (lambda x, r: F.depthwise_conv2d_forward(x, r.standard_normal((4, 1, 3, 3)), None, 1, 1), F.depthwise_conv2d_backward),
    "depthwise/2": (lambda x, r: F.depthwise_conv2d_forward(x, r.standard_normal((4, 1, 3, 3)), r.standard_normal(4), 2, 1), F.depthwise_conv2d_backward),
    "batchnorm-train": (lambda x, r: F.batchnorm2d_forward(x, *channel_vectors(4, 1), None, None, training=True), F.batchnorm2d_backward),
    "batchnorm-eval": (lambda x, r: F.batchnorm2d_forward(x, *channel_vectors(4, 1), r.standard_normal(4), r.uniform(0.5, 2, 4), training=False), F.batchnorm2d_backward),
    "relu6": (lambda x, r: F.relu6_forward(3 * x), lambda d, c: (F.relu6_backward(d, c),)),
    "avgpool": (lambda x, r: F.global_avg_pool_forward(x), lambda d, c: (F.global_avg_pool_backward(d, c),)),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_operations_give_the_same_bits_in_either_memory_order(name):
    forward, backward = OPERATIONS[name]
    x, x_last = nchw_and_channels_last((2, 4, 7, 9), seed=3)
    out, cache = forward(x, np.random.default_rng(5))
    out_last, cache_last = forward(x_last, np.random.default_rng(5))
    np.testing.assert_array_equal(out_last, out)
    dout = upstream_gradient(out.shape, 4)
    for grad, grad_last in zip(backward(dout, cache), backward(F.channels_last(dout) if dout.ndim == 4 else dout, cache_last)):
        if grad is not None:
            np.testing.assert_array_equal(grad_last, grad)
    if out.ndim == 4 and name != "relu6":  # elementwise ops keep the input's order
        assert is_channels_last(out) and is_channels_last(out_last)


def test_model_takes_either_memory_order_and_returns_dx_in_nchw_memory():
    model, x = eval_model(np.float64)
    logits = model(x)
    dx = model.backward(upstream_gradient(logits.shape, 1))
    logits_last = model(F.channels_last(x))
    dx_last = model.backward(upstream_gradient(logits.shape, 1))
    np.testing.assert_array_equal(logits_last, logits)
    np.testing.assert_array_equal(dx_last, dx)
    assert dx.flags.c_contiguous and dx.shape == x.shape


def test_inplace_activation_writes_over_its_input_with_the_same_result_and_gradient():
    x = 4 * np.random.default_rng(2).standard_normal((2, 3, 5, 5))
    expected, expected_mask = F.relu6_forward(x)
    inplace = nn.ReLU6(inplace=True)
    given = x.copy()
    out = inplace(given)
    assert out is given
    np.testing.assert_array_equal(out, expected)
    dout = upstream_gradient(x.shape, 3)
    np.testing.assert_array_equal(inplace.backward(dout), F.relu6_backward(dout, expected_mask))
    untouched = x.copy()
    nn.ReLU6()(untouched)
    np.testing.assert_array_equal(untouched, x)
    assert repr(inplace) == "ReLU6(inplace=True)"


# --- memory ---------------------------------------------------------------------------------


def cached_bytes(model):
    """Bytes of the distinct activation buffers the model's caches hold (parameters not counted)."""
    parameters = {id(p.data) for p in model.parameters()}
    buffers = {}

    def walk(value):
        if isinstance(value, np.ndarray):
            root = value
            while isinstance(root.base, np.ndarray):
                root = root.base
            if id(value) not in parameters and id(root) not in parameters and value.ndim == 4 and value.size > 1000:
                buffers[id(root)] = root.nbytes
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)

    for module in model.modules():
        walk(module.cache)
    return sum(buffers.values())


def torch_saved_bytes(torch, torch_model, x):
    """Bytes of the distinct activation tensors torchvision's forward saves for its backward."""
    parameters = {p.untyped_storage().data_ptr() for p in torch_model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and tensor.dim() == 4 and tensor.numel() > 1000:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = torch_model(torch.from_numpy(x).requires_grad_(True))
    return sum(storages.values()), logits


def test_training_caches_hold_no_more_than_torchvision_saves(torch, network_twins, report):
    x = np.random.default_rng(0).standard_normal((4, 3, 128, 128)).astype(np.float32)
    model, torch_model = network_twins(1.0, np.float32, training=True)
    model(x)
    assert all(module.cache is not None for module in model.modules() if not list(module.children()))
    ours = cached_bytes(model)
    theirs, _ = torch_saved_bytes(torch, torch_model, x)
    report(f"training caches at batch 4, 128x128: npmobilenet {ours / 2**20:.1f} MiB, "
           f"torchvision saves {theirs / 2**20:.1f} MiB ({ours / theirs:.2f}x)")
    assert ours <= 1.1 * theirs

    with npmobilenet.no_grad():
        model(x)
    assert all(module.cache is None for module in model.modules())


# --- accurate channel sums ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["values", "products", "strided view"])
def test_channel_sums_stay_within_two_float32_roundings_of_the_exact_sums(case):
    """300,000 values a channel with a large mean (a batch norm's sums at batch 24 of 112x112).

    Added one after another in float32 they miss the exact sum by about 250,000; grouped, by
    a few units, under two roundings of the sum (about 36 each).
    """
    from npmobilenet.functional.fast.layout import channel_sums

    rng = np.random.default_rng(21)
    a = (1000 + rng.standard_normal((300_000, 3))).astype(np.float32)
    b = rng.uniform(0.5, 1.5, a.shape).astype(np.float32)
    if case == "values":
        args, exact = (a,), a.astype(np.float64).sum(axis=0)
    elif case == "products":
        args, exact = (a, b), (a * b).astype(np.float64).sum(axis=0)  # the float32 products, summed exactly
    else:  # a strided (N, H, W, C) view, as a depthwise tap view is, with a tail of rows below one group
        padded = np.zeros((3, 103, 1000, 3), np.float32)
        padded[:, 1:101, :, :] = a.reshape(3, 100, 1000, 3)
        args, exact = (padded[:, 1:101, 1:999],), padded[:, 1:101, 1:999].astype(np.float64).sum(axis=(0, 1, 2))
    sums = channel_sums(*args)
    rounding = np.finfo(np.float32).eps * np.abs(exact)
    assert sums.dtype == np.float32 and sums.shape == (3,)
    assert np.all(np.abs(sums - exact) <= 2 * rounding)
    running = np.add.reduce(args[0] if len(args) == 1 else args[0] * args[1], axis=tuple(range(args[0].ndim - 1)))
    assert np.any(np.abs(running.astype(np.float64) - exact) > 100 * rounding)  # what the grouping is for


def test_channel_sums_of_float64_are_float64():
    from npmobilenet.functional.fast.layout import channel_sums

    rng = np.random.default_rng(22)
    a, b = rng.standard_normal((1000, 5)), rng.standard_normal((1000, 5))
    np.testing.assert_allclose(channel_sums(a, b), (a * b).sum(axis=0), rtol=1e-13, atol=1e-12)
    assert channel_sums(a).dtype == np.float64
