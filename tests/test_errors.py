"""Bad input raises the documented exception type, with a message that helps.

Each check asserts the type and that the message names both what was expected and what was
found (the shape, the key, the dtype), so a user can fix the call from the message alone.
"""

import re

import numpy as np
import pytest

import npmobilenet
from npmobilenet import functional as F
from npmobilenet import nn
from npmobilenet.errors import BackwardError, NpMobileNetError, ShapeError, WeightsError


def raises_naming(exc_type, call, *fragments):
    """``call()`` raises ``exc_type`` whose message contains every fragment (the first via ``match``)."""
    with pytest.raises(exc_type, match=re.escape(fragments[0])) as info:
        call()
    message = str(info.value)
    for fragment in fragments[1:]:
        assert fragment in message, f"message {message!r} does not mention {fragment!r}"
    return info.value


def arr(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- functional forwards -----------------------------------------------------------------------

W_CONV = arr((6, 3, 3, 3))  # conv2d weight: 3 input channels
W_DW = arr((4, 1, 3, 3))  # depthwise weight: 4 channels
BN_VECTORS = [np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)]
W_LIN = arr((5, 7))  # linear weight: 7 input features


def bn_forward(x, training=False):
    return F.batchnorm2d_forward(x, *[v.copy() for v in BN_VECTORS], training)


# name: (call, fragments that must all appear in the message: expected first, then found)
FUNCTIONAL_CASES = {
    # a 3-D input where NCHW is expected
    "conv2d_3d_input": (lambda: F.conv2d_forward(arr((3, 5, 5)), W_CONV), "4 dimensions (N, C, H, W)", "(3, 5, 5)"),
    "depthwise_3d_input": (lambda: F.depthwise_conv2d_forward(arr((4, 5, 5)), W_DW), "4 dimensions (N, C, H, W)", "(4, 5, 5)"),
    "batchnorm_3d_input": (lambda: bn_forward(arr((4, 5, 5))), "4 dimensions (N, C, H, W)", "(4, 5, 5)"),
    "global_avg_pool_3d_input": (lambda: F.global_avg_pool_forward(arr((3, 5, 5))), "4 dimensions (N, C, H, W)", "(3, 5, 5)"),
    # linear accepts (..., features), as torch's does; a 0-d input has no feature axis
    "linear_0d_input": (lambda: F.linear_forward(np.ones((), np.float32), W_LIN), "7 features", "shape ()"),
    # a wrong channel (feature) count
    "conv2d_channels": (lambda: F.conv2d_forward(arr((2, 4, 5, 5)), W_CONV), "3 channels", "with 4 channels"),
    "depthwise_channels": (lambda: F.depthwise_conv2d_forward(arr((2, 3, 5, 5)), W_DW), "4 channels", "with 3 channels"),
    "batchnorm_channels": (lambda: bn_forward(arr((2, 3, 5, 5))), "4 channels", "with 3 channels"),
    "linear_features": (lambda: F.linear_forward(arr((4, 6)), W_LIN), "7 features", "(4, 6)"),
    "linear_features_3d": (lambda: F.linear_forward(arr((2, 3, 6)), W_LIN), "7 features", "(2, 3, 6)"),
    # an integer input
    "conv2d_int": (lambda: F.conv2d_forward(np.ones((2, 3, 5, 5), np.int64), W_CONV), "float32 or float64", "int64"),
    "depthwise_int": (lambda: F.depthwise_conv2d_forward(np.ones((2, 4, 5, 5), np.int64), W_DW), "float32 or float64", "int64"),
    "batchnorm_int": (lambda: bn_forward(np.ones((2, 4, 5, 5), np.int32)), "float32 or float64", "int32"),
    "linear_int": (lambda: F.linear_forward(np.ones((4, 7), np.int64), W_LIN), "float32 or float64", "int64"),
    "global_avg_pool_int": (lambda: F.global_avg_pool_forward(np.ones((2, 3, 4, 4), np.uint8)), "float32 or float64", "uint8"),
    # a Python list
    "conv2d_list": (lambda: F.conv2d_forward(arr((1, 3, 4, 4)).tolist(), W_CONV), "numpy.ndarray", "list"),
    "depthwise_list": (lambda: F.depthwise_conv2d_forward(arr((1, 4, 4, 4)).tolist(), W_DW), "numpy.ndarray", "list"),
    "batchnorm_list": (lambda: bn_forward(arr((1, 4, 4, 4)).tolist()), "numpy.ndarray", "list"),
    "linear_list": (lambda: F.linear_forward(arr((2, 7)).tolist(), W_LIN), "numpy.ndarray", "list"),
    "global_avg_pool_list": (lambda: F.global_avg_pool_forward(arr((1, 3, 4, 4)).tolist()), "numpy.ndarray", "list"),
    # float64 input with float32 weights: no silent upcast
    "conv2d_mixed": (lambda: F.conv2d_forward(arr((2, 3, 5, 5), np.float64), W_CONV), "weight has dtype float32", "input has dtype float64"),
    "depthwise_mixed": (lambda: F.depthwise_conv2d_forward(arr((2, 4, 5, 5), np.float64), W_DW), "weight has dtype float32", "input has dtype float64"),
    "batchnorm_mixed": (lambda: bn_forward(arr((2, 4, 5, 5), np.float64)), "weight has dtype float32", "input has dtype float64"),
    "linear_mixed": (lambda: F.linear_forward(arr((4, 7), np.float64), W_LIN), "weight has dtype float32", "input has dtype float64"),
    # a kernel bigger than the padded input
    "conv2d_kernel_too_big": (
        lambda: F.conv2d_forward(arr((1, 3, 3, 4)), arr((2, 3, 5, 5)), padding=0), "expected at least 5x5", "3x4",
    ),
    "conv2d_kernel_too_big_padded": (
        lambda: F.conv2d_forward(arr((1, 3, 3, 3)), arr((2, 3, 7, 7)), padding=1), "expected at least 7x7", "is 5x5",
    ),
    "depthwise_kernel_too_big": (
        lambda: F.depthwise_conv2d_forward(arr((1, 4, 2, 2)), arr((4, 1, 5, 5)), padding=1), "expected at least 5x5", "is 4x4",
    ),
    # batch norm needs two values per channel to compute a variance
    "batchnorm_train_one_value": (lambda: bn_forward(arr((1, 4, 1, 1)), training=True), "more than one value per channel", "(1, 4, 1, 1)"),
    # cross-entropy targets
    "ce_float_targets": (
        lambda: F.softmax_cross_entropy_forward(arr((4, 10)), np.array([0.0, 1.0, 2.0, 3.0])), "integer class indices", "float64",
    ),
    "ce_wrong_length": (
        lambda: F.softmax_cross_entropy_forward(arr((4, 10)), np.array([0, 1, 2])), "shape (4,)", "got shape (3,)",
    ),
    "ce_index_too_big": (
        lambda: F.softmax_cross_entropy_forward(arr((4, 10)), np.array([0, 10, 2, 3])), "[0, 9]", "to 10",
    ),
    "ce_index_negative": (
        lambda: F.softmax_cross_entropy_forward(arr((4, 10)), np.array([0, -1, 2, 3])), "[0, 9]", "from -1",
    ),
}


@pytest.mark.parametrize("name", list(FUNCTIONAL_CASES))
def test_functional_forward_rejects_bad_input(name):
    """Each bad call raises ShapeError naming what was expected and what was found."""
    call, *fragments = FUNCTIONAL_CASES[name]
    error = raises_naming(ShapeError, call, *fragments)
    assert isinstance(error, ValueError)


# --- layer forwards --------------------------------------------------------------------------------

LAYERS = {
    "conv2d": lambda: nn.Conv2d(3, 6, 3, padding=1, seed=0),
    "depthwise": lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False, seed=0),
    "conv2d_5x5": lambda: nn.Conv2d(3, 6, 5, padding=1, seed=0),
    "depthwise_5x5": lambda: nn.Conv2d(4, 4, 5, padding=1, groups=4, seed=0),
    "batchnorm": lambda: nn.BatchNorm2d(4),
    "linear": lambda: nn.Linear(7, 5, seed=0),
    "global_avg_pool": lambda: nn.GlobalAvgPool2d(),
}

LAYER_CASES = {
    "conv2d_3d_input": ("conv2d", arr((3, 5, 5)), "4 dimensions (N, C, H, W)", "(3, 5, 5)"),
    "conv2d_channels": ("conv2d", arr((2, 4, 5, 5)), "3 channels", "with 4 channels"),
    "conv2d_int": ("conv2d", np.ones((2, 3, 5, 5), np.int64), "float32 or float64", "int64"),
    "conv2d_list": ("conv2d", arr((1, 3, 4, 4)).tolist(), "numpy.ndarray", "list"),
    "conv2d_mixed": ("conv2d", arr((2, 3, 5, 5), np.float64), "weight has dtype float32", "input has dtype float64"),
    "conv2d_kernel_too_big": ("conv2d_5x5", arr((1, 3, 2, 3)), "expected at least 5x5", "2x3 with padding (1, 1) is 4x5"),
    "depthwise_3d_input": ("depthwise", arr((4, 5, 5)), "4 dimensions (N, C, H, W)", "(4, 5, 5)"),
    "depthwise_channels": ("depthwise", arr((2, 3, 5, 5)), "4 channels", "with 3 channels"),
    "depthwise_int": ("depthwise", np.ones((2, 4, 5, 5), np.int16), "float32 or float64", "int16"),
    "depthwise_list": ("depthwise", arr((1, 4, 4, 4)).tolist(), "numpy.ndarray", "list"),
    "depthwise_mixed": ("depthwise", arr((2, 4, 5, 5), np.float64), "weight has dtype float32", "input has dtype float64"),
    "depthwise_kernel_too_big": ("depthwise_5x5", arr((1, 4, 3, 2)), "expected at least 5x5", "3x2 with padding (1, 1) is 5x4"),
    "batchnorm_3d_input": ("batchnorm", arr((4, 5, 5)), "4 dimensions (N, C, H, W)", "(4, 5, 5)"),
    "batchnorm_channels": ("batchnorm", arr((2, 3, 5, 5)), "4 channels", "with 3 channels"),
    "batchnorm_int": ("batchnorm", np.ones((2, 4, 5, 5), np.int64), "float32 or float64", "int64"),
    "batchnorm_list": ("batchnorm", arr((1, 4, 4, 4)).tolist(), "numpy.ndarray", "list"),
    "batchnorm_mixed": ("batchnorm", arr((2, 4, 5, 5), np.float64), "weight has dtype float32", "input has dtype float64"),
    "batchnorm_one_value_per_channel": ("batchnorm", arr((1, 4, 1, 1)), "more than one value per channel", "(1, 4, 1, 1)"),
    "linear_0d_input": ("linear", np.ones((), np.float32), "7 features", "shape ()"),
    "linear_features": ("linear", arr((4, 6)), "7 features", "(4, 6)"),
    "linear_int": ("linear", np.ones((4, 7), np.int64), "float32 or float64", "int64"),
    "linear_list": ("linear", arr((2, 7)).tolist(), "numpy.ndarray", "list"),
    "linear_mixed": ("linear", arr((4, 7), np.float64), "weight has dtype float32", "input has dtype float64"),
    "global_avg_pool_3d_input": ("global_avg_pool", arr((3, 5, 5)), "4 dimensions (N, C, H, W)", "(3, 5, 5)"),
    "global_avg_pool_int": ("global_avg_pool", np.ones((2, 3, 4, 4), np.int64), "float32 or float64", "int64"),
    "global_avg_pool_list": ("global_avg_pool", arr((1, 3, 4, 4)).tolist(), "numpy.ndarray", "list"),
}


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layer_forward_rejects_bad_input(name):
    """Layer forwards (train mode) raise ShapeError naming what was expected and what was found."""
    layer_name, x, *fragments = LAYER_CASES[name]
    layer = LAYERS[layer_name]()
    error = raises_naming(ShapeError, lambda: layer(x), *fragments)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.ReLU6(), nn.Dropout(0.5, seed=0)], ids=["relu", "relu6", "dropout"])
def test_activation_and_dropout_reject_int_and_list(layer):
    """The parameter-free elementwise layers check their input too."""
    raises_naming(ShapeError, lambda: layer(np.ones((2, 3), np.int64)), "float32 or float64", "int64")
    raises_naming(ShapeError, lambda: layer([[1.0, 2.0]]), "numpy.ndarray", "list")


def test_float64_model_rejects_float32_input():
    """After astype(float64) a float32 input is refused, not silently upcast."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).astype(np.float64)
    raises_naming(ShapeError, lambda: model(arr((2, 3, 5, 5))), "weight has dtype float64", "input has dtype float32")


def test_cross_entropy_loss_layer_rejects_bad_targets():
    """The CrossEntropyLoss layer passes the same checks on."""
    loss = nn.CrossEntropyLoss()
    raises_naming(ShapeError, lambda: loss(arr((3, 5)), np.array([0.5, 1.0, 2.0])), "integer class indices", "float64")
    raises_naming(ShapeError, lambda: loss(arr((3, 5)), np.array([0, 1, 5])), "[0, 4]", "to 5")
    raises_naming(ShapeError, lambda: loss(arr((3, 5)), np.array([0, 1])), "shape (3,)", "got shape (2,)")


# --- backward without a cache -----------------------------------------------------------------------

# name: (make the layer, a valid forward call on it)
BACKWARD_CASES = {
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), lambda m: m(arr((2, 3, 5, 5)))),
    "Conv2d_depthwise": (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), lambda m: m(arr((2, 4, 5, 5)))),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(4), lambda m: m(arr((2, 4, 3, 3)))),
    "ReLU": (lambda: nn.ReLU(), lambda m: m(arr((2, 3)))),
    "ReLU6": (lambda: nn.ReLU6(), lambda m: m(arr((2, 3)))),
    "Dropout": (lambda: nn.Dropout(0.5, seed=0), lambda m: m(arr((2, 3)))),
    "Linear": (lambda: nn.Linear(7, 5), lambda m: m(arr((2, 7)))),
    "GlobalAvgPool2d": (lambda: nn.GlobalAvgPool2d(), lambda m: m(arr((2, 3, 4, 4)))),
    "CrossEntropyLoss": (lambda: nn.CrossEntropyLoss(), lambda m: m(arr((2, 5)), np.array([1, 4]))),
    "Sequential": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU6(), nn.GlobalAvgPool2d(), nn.Linear(4, 2)),
        lambda m: m(arr((2, 3, 4, 4))),
    ),
}


def class_in_message(name):
    """The class named in the error: Sequential's comes from its last layer."""
    return {"Conv2d_depthwise": "Conv2d", "Sequential": "Linear"}.get(name, name) + ".backward()"


@pytest.mark.parametrize("name", list(BACKWARD_CASES))
def test_backward_before_forward_raises(name):
    """backward() with no forward yet raises BackwardError (a RuntimeError) that says to call forward()."""
    make, _ = BACKWARD_CASES[name]
    error = raises_naming(BackwardError, lambda: make().backward(np.ones((2, 4), np.float32)), class_in_message(name), "forward()")
    assert isinstance(error, RuntimeError)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(BACKWARD_CASES))
def test_backward_after_no_grad_forward_raises(name, mode):
    """A forward under no_grad drops the previous cache too: backward must not use a stale one."""
    make, forward = BACKWARD_CASES[name]
    layer = make().train(mode == "train")
    out = forward(layer)  # grad mode: a cache is kept ...
    with npmobilenet.no_grad():
        out = forward(layer)  # ... and must be dropped here
    raises_naming(BackwardError, lambda: layer.backward(np.ones_like(out)), class_in_message(name), "no_grad()")


@pytest.mark.parametrize("name", [n for n in BACKWARD_CASES if n != "CrossEntropyLoss"])
def test_backward_rejects_dout_of_the_wrong_shape_or_dtype(name):
    """dout must look like the forward's output: a wrong shape would broadcast into wrong
    gradients, a wrong dtype would upcast them silently."""
    make, forward = BACKWARD_CASES[name]
    layer = make()
    out = forward(layer)
    expected = f"shape {out.shape} and dtype float32"
    raises_naming(ShapeError, lambda: layer.backward(np.ones((1,) * out.ndim, np.float32)), expected, "got shape")
    raises_naming(ShapeError, lambda: layer.backward(np.ones(out.shape, np.float64)), expected, "dtype float64")
    raises_naming(ShapeError, lambda: layer.backward(np.ones(out.shape).tolist()), expected, "got list")


def test_cross_entropy_backward_takes_a_number_or_a_0d_array():
    """A loss's upstream gradient is a number (or a 0-d array); anything shaped is refused."""
    criterion = nn.CrossEntropyLoss()
    criterion(arr((2, 5)), np.array([1, 4]))
    unit = criterion.backward()
    assert unit.dtype == np.float32  # a Python float does not upcast the gradient
    np.testing.assert_allclose(criterion.backward(np.float64(2.5)), 2.5 * unit, rtol=1e-6)
    np.testing.assert_allclose(criterion.backward(np.array(2.5, np.float32)), 2.5 * unit, rtol=1e-6)
    raises_naming(ShapeError, lambda: criterion.backward(np.ones(2, np.float32)), "shape ()", "got shape (2,)")


def test_float16_is_refused():
    """Only float32 and float64 are computed in; float16 is refused, not half supported."""
    raises_naming(ShapeError, lambda: F.conv2d_forward(arr((1, 3, 4, 4), np.float16), arr((2, 3, 1, 1), np.float16)), "float32 or float64", "float16")
    raises_naming(ShapeError, lambda: nn.Linear(3, 2).astype(np.float16), "float32 or float64", "float16")


def test_failed_batchnorm_forward_changes_nothing():
    """A forward that raises neither counts a batch nor moves the running statistics."""
    bn = nn.BatchNorm2d(4)
    before = bn.state_dict()
    with pytest.raises(ShapeError):
        bn(arr((1, 4, 1, 1)))  # one value per channel: no variance in training mode
    with pytest.raises(ShapeError):
        bn(arr((2, 4, 3, 3), np.float64))  # float64 input into a float32 layer
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_backward_after_astype_raises():
    """astype drops caches (they hold arrays of the old dtype): backward needs a new forward."""
    layer = nn.Conv2d(3, 4, 3)
    out = layer(arr((1, 3, 4, 4)))
    layer.astype(np.float64)
    raises_naming(BackwardError, lambda: layer.backward(np.ones_like(out, dtype=np.float64)), "Conv2d.backward()", "forward()")


# --- load_state_dict ----------------------------------------------------------------------------------


def small_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False, seed=1), nn.BatchNorm2d(4), nn.Linear(4, 2, seed=2))


@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_names_every_bad_key_and_writes_nothing(strict):
    """Missing + unexpected + mis-shaped keys: one WeightsError naming them all; the model is unchanged."""
    model = small_model()
    before = model.state_dict()
    sd = {k: v + 1 for k, v in before.items()}  # every valid entry differs, so a partial write would show
    del sd["1.running_var"]  # missing
    sd["3.weight"] = np.zeros((2, 2), np.float32)  # unexpected
    sd["0.weight"] = np.zeros((4, 3, 1, 1), np.float32)  # mis-shaped
    fragments = ["0.weight", "(4, 3, 3, 3)", "(4, 3, 1, 1)"]
    if strict:  # strict=False tolerates missing and unexpected keys, never a shape mismatch
        fragments += ["1.running_var", "3.weight"]
    error = raises_naming(WeightsError, lambda: model.load_state_dict(sd, strict=strict), *fragments)
    assert isinstance(error, ValueError)
    after = model.state_dict()
    assert list(after) == list(before)
    for key in before:
        assert after[key].dtype == before[key].dtype, key
        np.testing.assert_array_equal(after[key], before[key], err_msg=f"{key} was written by a failed load")


def test_load_state_dict_message_distinguishes_missing_from_unexpected():
    """The message says which keys are missing and which are unexpected."""
    model = small_model()
    sd = model.state_dict()
    del sd["2.bias"]
    sd["extra.thing"] = np.zeros(1, np.float32)
    message = str(raises_naming(WeightsError, lambda: model.load_state_dict(sd), "missing keys: 2.bias", "unexpected keys: extra.thing"))
    assert "extra.thing" not in message.split("unexpected keys")[0]


# --- constructors and astype ---------------------------------------------------------------------------


def test_astype_int_raises_shape_error_and_changes_nothing():
    model = small_model()
    raises_naming(ShapeError, lambda: model.astype(np.int32), "float32 or float64", "int32")
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_conv2d_unsupported_groups_raises_value_error():
    """Only dense (groups=1) and depthwise (groups=in=out) convolutions exist."""
    raises_naming(ValueError, lambda: nn.Conv2d(4, 4, 3, groups=2), "groups=in_channels=out_channels", "groups=2")
    raises_naming(ValueError, lambda: nn.Conv2d(4, 8, 3, groups=4), "groups=1", "8 out channels")


@pytest.mark.parametrize("p", [1.5, -0.1])
def test_dropout_probability_out_of_range_raises_value_error(p):
    raises_naming(ValueError, lambda: nn.Dropout(p=p), "between 0 and 1", str(p))
    raises_naming(ValueError, lambda: F.dropout_forward(arr((2, 2)), p, True), "between 0 and 1", str(p))


def test_error_hierarchy():
    """ShapeError and WeightsError are ValueErrors; BackwardError is a RuntimeError; all share a base."""
    assert issubclass(ShapeError, ValueError)
    assert issubclass(WeightsError, ValueError)
    assert issubclass(BackwardError, RuntimeError)
    for error_type in (ShapeError, WeightsError, BackwardError):
        assert issubclass(error_type, NpMobileNetError)
    assert npmobilenet.ShapeError is ShapeError and npmobilenet.WeightsError is WeightsError
    assert npmobilenet.BackwardError is BackwardError
    with pytest.raises(ValueError):  # a user's plain `except ValueError` catches them
        nn.Linear(3, 2)(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError):
        nn.Linear(3, 2).load_state_dict({})
