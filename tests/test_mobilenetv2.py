"""The whole network against torchvision's MobileNetV2: structure, initialisation, forward and backward.

Both networks get the same weights and the same random, non-default batch-norm state
(``network_twins``); then one forward and one backward with the same random upstream gradient
must give the same logits, dL/dx, gradient of every parameter and (in training mode) running
statistics (``compare_module``). Through some fifty layers rounding adds up, so the tolerances
are the issue's for a whole network (``NETWORK_TOLERANCE``): about 1e-8 in float64 and 1e-4 in
float32, relative to each array's largest magnitude.

Each gradient is compared relative to its own largest magnitude, except gradients that are
zero in exact arithmetic (``negligible_gradients=True``). In training mode these exist: batch
norm with batch statistics subtracts each channel's mean, so a constant added to a channel
before a bias-free conv and such a batch norm changes nothing, and the gradient of the beta
that adds it is exactly 0. Both libraries then return rounding noise (about 1e-14), which no
relative comparison can match; for those the check is that ours is negligible too, next to the
largest gradient of the network.
"""

import io
import itertools

import numpy as np
import pytest
from torch_helpers import NETWORK_TOLERANCE, compare_module, upstream_gradient
from twins import with_measured_running_statistics

from npmobilenet import errors, nn
from npmobilenet.gradcheck import relative_error
from npmobilenet.models.mobilenetv2 import InvertedResidual, MobileNetV2, make_divisible

NETWORK = dict(tolerance=NETWORK_TOLERANCE, negligible_gradients=True)


# --- the network against torchvision --------------------------------------------------------

CASES = [
    pytest.param(width, size, batch, training, id=f"w{width}-{size[0]}x{size[1]}-n{batch}-{'train' if training else 'eval'}")
    for width, size, batch, training in itertools.product(
        [0.5, 1.0, 1.4], [(224, 224), (97, 131)], [1, 3], [False, True]
    )
]


@pytest.mark.parametrize("width_mult, size, batch, training", CASES)
def test_network_matches_torchvision(network_twins, width_mult, size, batch, training):
    """float64: logits, dL/dx, every gradient and buffer equal torchvision's to 1e-8. float32: to 1e-4, see below."""
    x = np.random.default_rng(batch).standard_normal((batch, 3, *size))
    model, torch_model = network_twins(width_mult, np.float64, seed=batch, training=training)
    logits, _ = compare_module(model, torch_model, x, **NETWORK)
    assert logits.shape == (batch, 1000)
    check_float32_step(network_twins, x.astype(np.float32), width_mult, batch, training)


def check_float32_step(network_twins, x, width_mult, batch, training):
    """The same step in float32: logits equal to torchvision's float32 ones, gradients to the float64 ones.

    The gradients are compared with the exact ones (float64, proved above), not with another
    float32 run, and that needs care at the kinks of ReLU6. It is not differentiable at 0
    and 6, and a pre-activation within float32 rounding of a kink lands on either side of it
    depending on the order a library sums in. One such value in a million sends its gradient
    down the other branch and changes dL/dx by about 1e-3 nearby: two correct float32 runs
    (ours and torchvision's, or either and float64) then disagree there, each rightly. So
    torchvision's float64 run takes its gradient branches from our float32 run (its
    activations' backward uses our masks: ``pin_activations=True``), and all else is compared
    to 1e-4: the float32 rounding of the arithmetic, which is what this test is about.
    """
    model, torch_model = network_twins(width_mult, np.float32, seed=batch, training=training)
    compare_module(model, torch_model, x, tolerance=NETWORK_TOLERANCE, compare=("output", "buffers"))
    _, exact = network_twins(width_mult, np.float64, seed=batch, training=training)
    compare_module(model, exact, x, compare=("output", "dx", "gradients"), pin_activations=True, **NETWORK)


def test_backward_twice_accumulates_like_torchvision(network_twins):
    model, torch_model = network_twins(0.5, np.float64, training=False)
    x = np.random.default_rng(5).standard_normal((2, 3, 64, 48))
    for seed in (1, 2):
        compare_module(model, torch_model, x, seed=seed, **NETWORK)  # the second pass: the sums


def test_smallest_input_32x32_gives_logits_like_torchvision(network_twins):
    model, torch_model = network_twins(1.0, np.float32, training=False)
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    compare_module(model, torch_model, x, tolerance=NETWORK_TOLERANCE, compare=("output", "dx"))


def test_relu_variant_matches_torchvision_with_relu(torch, network_twins):
    """``activation="relu"`` is torchvision's network with every ReLU6 replaced by ReLU."""
    model, torch_model = network_twins(0.5, np.float64, training=False)
    relu_model = MobileNetV2(width_mult=0.5, activation="relu").astype(np.float64).eval()
    relu_model.load_state_dict(model.state_dict())
    for parent in torch_model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.ReLU6):
                setattr(parent, name, torch.nn.ReLU())
    assert not any(isinstance(m, nn.ReLU6) for m in relu_model.modules())
    x = np.random.default_rng(4).standard_normal((2, 3, 64, 64)) * 4  # large enough to exceed 6 somewhere
    logits, _ = compare_module(relu_model, torch_model, x, **NETWORK)
    relu6_logits = model(x)
    assert relative_error(relu6_logits, logits) > 1e-6, "ReLU and ReLU6 networks should differ on this input"


# --- structure and initialisation --------------------------------------------------------------


@pytest.mark.parametrize("width_mult", [0.5, 0.75, 1.0, 1.4])
def test_state_dict_keys_shapes_dtypes_are_torchvisions(torchvision, width_mult):
    ours = MobileNetV2(width_mult=width_mult).state_dict()
    theirs = torchvision.models.mobilenet_v2(width_mult=width_mult).state_dict()
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        assert ours[key].shape == tuple(tensor.shape), key
        assert str(ours[key].dtype) == str(tensor.dtype).replace("torch.", ""), key
    if width_mult == 1.0:
        assert len(ours) == 314


def test_parameter_count_and_mult_adds_match_an_independent_count(torch, torchvision):
    """3,504,872 parameters; multiply-adds as counted by hooks on torchvision's convs and linear layer."""
    torch_model = torchvision.models.mobilenet_v2().eval()
    counted = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            counted.append(output.numel() * module.in_channels // module.groups * kh * kw)
        else:
            counted.append(output.numel() * module.in_features)

    for module in torch_model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(count)
    with torch.no_grad():
        torch_model(torch.zeros(1, 3, 224, 224))

    model = MobileNetV2()
    summary = model.summary(file=io.StringIO())
    assert summary.total_parameters == 3_504_872 == sum(p.numel() for p in torch_model.parameters())
    assert summary.total_mult_adds == sum(counted)
    assert 295e6 < summary.total_mult_adds < 305e6  # "about 300M", as the paper reports


def test_summary_prints_every_block_with_its_output_shape(capsys):
    summary = MobileNetV2().summary(input_size=(2, 3, 97, 131))
    printed = capsys.readouterr().out
    names = [row.name for row in summary.rows]
    assert names == [f"features.{i}" for i in range(19)] + ["pool", "classifier.0", "classifier.1"]
    for row in summary.rows:
        assert row.name in printed and str(row.output_shape) in printed
    x = np.zeros((2, 3, 97, 131), dtype=np.float32)
    model = MobileNetV2().eval()
    for row, block in zip(summary.rows, list(model.features)):
        x = block(x)
        assert row.output_shape == x.shape, row.name
    assert f"{summary.total_parameters:,}" in printed and "3,504,872" in printed
    assert summary.rows[-1].output_shape == (2, 1000)


def test_init_follows_torchvision():
    """Kaiming normal (fan_out) convs, unit/zero batch norm, N(0, 0.01) classifier, zero bias."""
    model = MobileNetV2(seed=0)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.weight.data.size >= 10_000:
            out_channels, _, kh, kw = module.weight.shape
            expected_std = np.sqrt(2.0 / (out_channels * kh * kw))
            assert abs(module.weight.data.std() / expected_std - 1) < 0.05, name
            assert abs(module.weight.data.mean()) < 0.05 * expected_std, name
        elif isinstance(module, nn.BatchNorm2d):
            assert np.all(module.weight.data == 1) and np.all(module.bias.data == 0), name
    classifier = model.classifier[1]
    assert abs(classifier.weight.data.std() / 0.01 - 1) < 0.01
    assert np.all(classifier.bias.data == 0)


def test_seed_makes_weights_and_dropout_reproducible():
    first, second, other = MobileNetV2(seed=3), MobileNetV2(seed=3), MobileNetV2(seed=4)
    for (name, a), (_, b), (_, c) in zip(first.named_parameters(), second.named_parameters(), other.named_parameters()):
        assert np.array_equal(a.data, b.data), name
        if a.data.std() > 0:
            assert not np.array_equal(a.data, c.data), name
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(first.train()(x), second.train()(x))


@pytest.mark.parametrize("value, expected", [(32, 32), (16, 16), (33.6, 32), (13.6, 16), (1280, 1280), (4, 8), (44.8, 48)])
def test_make_divisible_equals_torchvision(torchvision, value, expected):
    from torchvision.models._utils import _make_divisible

    assert make_divisible(value, 8) == _make_divisible(value, 8) == expected


# --- by finite differences ----------------------------------------------------------------------
#
# In eval mode, with running statistics measured on a batch and then moved at random. (In
# training mode the gradient of an expand layer's gamma is almost 0 in exact arithmetic, since
# the next batch norm undoes a rescaling, so central differences measure only rounding there;
# training mode is checked against torchvision in float64 above.)


def with_seeded_convolutions(module, seed):
    """``module`` with every convolution's weights drawn from ``seed`` (He's scale), the same on every run.

    An unseeded block would be a new case at every run, and now and then one of its values
    would lie within ``eps`` of a ReLU6 kink, where a central difference straddles the kink and
    measures no derivative at all: a test that fails at random, though the backward pass is right.
    """
    rng = np.random.default_rng([0xC0, seed])
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            fan_in = layer.weight.data[0].size
            layer.weight.data[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), layer.weight.shape)
    return module


@pytest.mark.parametrize("in_channels, out_channels, stride, expand", [(8, 8, 1, 6), (8, 16, 2, 6), (8, 8, 1, 1)])
def test_inverted_residual_gradients_by_finite_differences(in_channels, out_channels, stride, expand):
    from npmobilenet.gradcheck import check_module

    block = with_seeded_convolutions(InvertedResidual(in_channels, out_channels, stride, expand).astype(np.float64), 2)
    assert block.use_res_connect == (stride == 1 and in_channels == out_channels)
    x = np.random.default_rng(0).standard_normal((2, in_channels, 5, 4))
    with_measured_running_statistics(block, x, seed=0)
    errors_by_name = check_module(block, x, seed=1)
    worst = max(errors_by_name, key=errors_by_name.get)
    assert errors_by_name[worst] < 1e-6, f"{worst}: relative error {errors_by_name[worst]:.2e}"


def test_whole_network_gradients_by_finite_differences_on_sampled_entries():
    """dL/dx and dL/dparameter of the full network, at 12 random entries each, by central differences."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 48, 40))
    model = MobileNetV2(num_classes=5, width_mult=0.25, seed=0).astype(np.float64)
    with_measured_running_statistics(model, x, seed=1)
    dlogits = upstream_gradient((2, 5), 2)
    model(x)
    dx = model.backward(dlogits)

    def loss():
        return float(np.sum(model(x) * dlogits))

    def numeric(array, index, eps=1e-6):
        original = array[index]
        array[index] = original + eps
        plus = loss()
        array[index] = original - eps
        minus = loss()
        array[index] = original
        return (plus - minus) / (2 * eps)

    checks = [("input", x, dx)]
    parameters = list(model.named_parameters())
    for position in rng.choice(len(parameters), size=11, replace=False):
        name, parameter = parameters[position]
        checks.append((name, parameter.data, parameter.grad))
    for name, array, grad in checks:
        index = tuple(int(rng.integers(0, size)) for size in array.shape)
        expected = numeric(array, index)
        scale = max(float(np.max(np.abs(grad))), 1e-12)  # the gradient's own size, as relative_error measures
        assert abs(grad[index] - expected) <= 1e-6 * scale, f"{name}{index}: {grad[index]} vs {expected}"


# --- errors -----------------------------------------------------------------------------------


def test_wrong_input_channels_raise_shape_error():
    with pytest.raises(errors.ShapeError, match="3"):
        MobileNetV2().eval()(np.zeros((1, 4, 32, 32), dtype=np.float32))


@pytest.mark.parametrize("kwargs, match", [
    ({"activation": "gelu"}, "relu6"),
    ({"width_mult": 0}, "width_mult"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MobileNetV2(**kwargs)


def test_backward_before_forward_raises():
    with pytest.raises(errors.BackwardError):
        MobileNetV2().backward(np.zeros((1, 1000), dtype=np.float32))
