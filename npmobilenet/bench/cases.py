"""The rows: inference and a training step of the whole network, and forward + backward of each
kind of layer at the shapes it has inside MobileNetV2; each timed for numpy and for torch.
"""

import numpy as np

from .. import nn
from ..functional.fast import channels_last
from ..grad_mode import no_grad
from ..models import MobileNetV2, mobilenet_v2
from .onnx import run_session
from .timing import make_row, measure_side

__all__ = [
    "EVAL_CASE", "LAYER_CASES", "TRAIN_CASE", "bench_eval", "bench_layer", "bench_train", "make_images",
    "make_numpy_model", "make_torch_model", "torch_twin",
]

IMAGE_SIZE = 224
EVAL_CASE = "inference (eval)"
TRAIN_CASE = "training step"


# --- the models and the inputs -------------------------------------------------------------------


def make_numpy_model(weights):
    """``(model, description)``: MobileNetV2(seed=0), or the weights ``resolve_weights`` finds."""
    if weights is None:
        return MobileNetV2(seed=0), "random, MobileNetV2(seed=0)"
    return mobilenet_v2(weights), str(weights)


def make_torch_model(torchvision, torch, state_dict, num_classes):
    """torchvision's MobileNetV2 holding ``state_dict`` (NumPy arrays)."""
    model = torchvision.models.mobilenet_v2(num_classes=num_classes)
    model.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in state_dict.items()})
    return model


def make_images(batch):
    """The input every side sees at this batch size: standard normal, seed 0, float32 NCHW."""
    return np.random.default_rng(0).standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)


def _release_caches(model):
    """Drop the caches a NumPy model keeps from its last training forward (a tiny eval forward, no_grad)."""
    was_training = model.training
    model.eval()
    with no_grad():
        model(np.zeros((1, 3, 32, 32), dtype=np.float32))
    model.train(was_training)


def bench_eval(model, torch_model, torch, batch, config, method, session=None):
    """The inference row at ``batch``: eval mode, ``no_grad()`` on both sides; ONNX Runtime's ``session`` too if given."""
    images = make_images(batch)
    model.eval()

    def numpy_step():
        with no_grad():
            model(images)

    numpy_side = measure_side(numpy_step, config, "eval", method, lambda: _release_caches(model))
    torch_side = None
    if torch_model is not None:
        torch_model.eval()
        torch_images = torch.from_numpy(images)

        def torch_step():
            with torch.no_grad():
                torch_model(torch_images)

        torch_side = measure_side(torch_step, config, "eval", method, count_memory=method == "vmhwm")
    onnx_side = None
    if session is not None:
        onnx_side = measure_side(lambda: run_session(session, images), config, "eval", method,
                                 count_memory=method == "vmhwm")
    return make_row(EVAL_CASE, "eval", batch, numpy_side, torch_side, onnx_side)


def bench_train(model, torch_model, torch, batch, config, method):
    """The training-step row at ``batch``: forward, cross-entropy, backward, SGD update, zero_grad."""
    images, targets = make_images(batch), np.arange(batch, dtype=np.int64) % 1000
    lr = config.learning_rate
    criterion = nn.CrossEntropyLoss()
    parameters = list(model.parameters())
    model.train()

    def numpy_step():
        criterion(model(images), targets)
        model.backward(criterion.backward())
        for parameter in parameters:
            parameter.data -= lr * parameter.grad
        model.zero_grad()

    numpy_side = measure_side(numpy_step, config, "train", method, lambda: _release_caches(model))
    torch_side = None
    if torch_model is not None:
        torch_model.train()
        # model.backward returns dL/dx, so torch computes it too (it skips it for an input
        # that does not require a gradient): both sides do the same work.
        torch_images = torch.from_numpy(images).requires_grad_(True)
        torch_targets = torch.from_numpy(targets)
        optimizer = torch.optim.SGD(torch_model.parameters(), lr=lr)
        torch_criterion = torch.nn.CrossEntropyLoss()

        def torch_step():
            torch_images.grad = None
            torch_criterion(torch_model(torch_images), torch_targets).backward()
            optimizer.step()
            optimizer.zero_grad()

        torch_side = measure_side(torch_step, config, "train", method, count_memory=method == "vmhwm")
    return make_row(TRAIN_CASE, "train", batch, numpy_side, torch_side)


# --- layers ---------------------------------------------------------------------------------


def _conv(in_channels, out_channels, kernel_size, stride=1, depthwise=False):
    """A bias-free conv as MobileNetV2 has them ("same" padding), with seeded weights."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                     groups=in_channels if depthwise else 1, bias=False, seed=0)


# (row name, factory of the NumPy layer, input shape without the batch): MobileNetV2's shapes.
LAYER_CASES = (
    ("conv 3x3/2 3->32 @224", lambda: _conv(3, 32, 3, stride=2), (3, 224, 224)),
    ("conv 1x1 24->144 @56", lambda: _conv(24, 144, 1), (24, 56, 56)),
    ("conv 1x1 144->24 @56", lambda: _conv(144, 24, 1), (144, 56, 56)),
    ("depthwise 3x3/1 144 @56", lambda: _conv(144, 144, 3, depthwise=True), (144, 56, 56)),
    ("depthwise 3x3/2 96 @112", lambda: _conv(96, 96, 3, stride=2, depthwise=True), (96, 112, 112)),
    ("batchnorm 144 @56", lambda: nn.BatchNorm2d(144), (144, 56, 56)),
    ("relu6 144 @56", nn.ReLU6, (144, 56, 56)),
    ("avgpool 1280 @7", nn.GlobalAvgPool2d, (1280, 7, 7)),
    ("linear 1280->1000", lambda: nn.Linear(1280, 1000, seed=0), (1280,)),
)


def _copy_into(torch, tensor, array):
    """Copy a NumPy array into a torch parameter or buffer."""
    with torch.no_grad():
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def torch_twin(layer, torch):
    """The torch layer that computes what the NumPy ``layer`` does, with a copy of its weights."""
    tnn = torch.nn
    if isinstance(layer, nn.Conv2d):
        twin = tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                          layer.padding, groups=layer.groups, bias=layer.bias is not None)
    elif isinstance(layer, nn.BatchNorm2d):
        twin = tnn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        _copy_into(torch, twin.running_mean, layer.running_mean)
        _copy_into(torch, twin.running_var, layer.running_var)
    elif isinstance(layer, nn.Linear):
        twin = tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    elif isinstance(layer, nn.ReLU6):
        return tnn.ReLU6()
    elif isinstance(layer, nn.GlobalAvgPool2d):
        return tnn.Sequential(tnn.AdaptiveAvgPool2d(1), tnn.Flatten())
    else:
        raise TypeError(f"torch_twin: no torch layer for {type(layer).__name__}")
    _copy_into(torch, twin.weight, layer.weight.data)
    if getattr(layer, "bias", None) is not None:
        _copy_into(torch, twin.bias, layer.bias.data)
    return twin.train()


def bench_layer(name, make_layer, input_shape, torch, config, method):
    """One layer row: forward + backward (training mode, random upstream gradient) at ``config.layer_batch``."""
    batch = config.layer_batch
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
    layer = make_layer()
    with no_grad():
        dout = rng.standard_normal(layer(x).shape).astype(np.float32)
    # Inside the network every activation is stored channels-last (see functional/fast/layout.py);
    # the layer gets its input and gradient the same way, so the row times the layer alone.
    x_numpy, dout_numpy = (channels_last(a) if a.ndim == 4 else a for a in (x, dout))

    def numpy_step():
        layer(x_numpy)
        layer.backward(dout_numpy)

    def release():
        with no_grad():
            layer(x_numpy)

    numpy_side = measure_side(numpy_step, config, "layer", method, release)
    torch_side = None
    if torch is not None:
        twin = torch_twin(layer, torch)
        torch_x = torch.from_numpy(x).requires_grad_(True)  # both sides compute dL/dx
        torch_dout = torch.from_numpy(dout)

        def torch_step():
            torch_x.grad = None
            twin(torch_x).backward(torch_dout)

        torch_side = measure_side(torch_step, config, "layer", method, count_memory=method == "vmhwm")
    return make_row(name, "layer", batch, numpy_side, torch_side)
