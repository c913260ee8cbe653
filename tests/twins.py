"""Torch twins, built in one place: each layer of ``npmobilenet.nn`` beside the ``torch.nn`` layer it equals.

:data:`TWINS` maps a layer kind to (our constructor, torch's constructor); both take PyTorch's
arguments, so ``Layer("Conv2d", 3, 8, 3, stride=2)`` names a layer for either library.
:func:`make_twins` builds one layer (or a ``Sequential`` of several) both ways, gives torch's
batch norms non-default statistics and copies torch's weights into ours;
:func:`make_network_twins` does the same for the whole MobileNetV2 against torchvision's.
(``conftest.py`` hands both out as the fixtures ``twins`` and ``network_twins``.)

Batch norm is never left at its defaults (mean 0, variance 1, gamma 1, beta 0 would hide bugs):
:func:`randomize_batchnorm` for a torch layer, :func:`randomize_network` for torchvision's
network, :func:`with_measured_running_statistics` for ours alone. Nothing here imports torch:
the ``torch`` module is passed in, so a test file without torch still imports this one.
"""

import numpy as np

from npmobilenet import nn
from npmobilenet.models.mobilenetv2 import MobileNetV2

# kind: (our constructor, torch -> torch's constructor)
TWINS = {
    "Conv2d": (nn.Conv2d, lambda torch: torch.nn.Conv2d),
    "BatchNorm2d": (nn.BatchNorm2d, lambda torch: torch.nn.BatchNorm2d),
    "Linear": (nn.Linear, lambda torch: torch.nn.Linear),
    "ReLU": (nn.ReLU, lambda torch: torch.nn.ReLU),
    "ReLU6": (nn.ReLU6, lambda torch: torch.nn.ReLU6),
    "Dropout": (nn.Dropout, lambda torch: torch.nn.Dropout),
    # one module, as ours: one index in a Sequential
    "GlobalAvgPool2d": (nn.GlobalAvgPool2d, lambda torch: lambda: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1),
                                                                                       torch.nn.Flatten())),
}


class Layer:
    """A layer by its kind and PyTorch's constructor arguments: ``Layer("Conv2d", 3, 8, 3, stride=2)``."""

    def __init__(self, kind, *args, **kwargs):
        if kind not in TWINS:
            raise KeyError(f"no twin for {kind!r}: add it to TWINS ({', '.join(TWINS)})")
        self.kind, self.args, self.kwargs = kind, args, kwargs

    def ours(self):
        return TWINS[self.kind][0](*self.args, **self.kwargs)

    def theirs(self, torch):
        return TWINS[self.kind][1](torch)(*self.args, **self.kwargs)

    def __repr__(self):
        arguments = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Layer({', '.join([repr(self.kind)] + arguments)})"


def numpy_state(torch_module):
    """A torch module's state dict as NumPy arrays, exactly as a user would pass it on."""
    return {key: value.detach().numpy() for key, value in torch_module.state_dict().items()}


def copy_weights(torch_module, module):
    """Load the torch module's parameters and buffers into ours (ours keeps its dtype)."""
    module.load_state_dict(numpy_state(torch_module))
    return module


def in_mode_and_dtype(module, torch_module, dtype, training):
    """Both twins in ``dtype`` (both start as float32) and in training or eval mode."""
    if np.dtype(dtype) == np.float64:
        module.astype(np.float64)
        torch_module.double()
    return module.train(training), torch_module.train(training)


def randomize_batchnorm(torch, bn, seed=0):
    """Give a torch BatchNorm2d non-default gamma, beta, running mean and running variance."""
    rng = np.random.default_rng([0xB4, seed])
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c)))
        bn.bias.copy_(torch.from_numpy(rng.standard_normal(c)))
        bn.running_mean.copy_(torch.from_numpy(rng.standard_normal(c)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.3, 3.0, c)))
    return bn


def make_twins(torch, *layers, dtype=np.float32, training=True, seed=0):
    """Our module and its torch twin, holding the same weights: one layer, or a Sequential of several.

    torch draws the weights (from ``torch.manual_seed(seed)``); the batch norm at position ``i``
    gets non-default statistics from ``randomize_batchnorm(..., seed + i)``; ours loads them all.
    """
    torch.manual_seed(seed)
    theirs = [layer.theirs(torch) for layer in layers]
    for index, module in enumerate(theirs):
        if isinstance(module, torch.nn.BatchNorm2d):
            randomize_batchnorm(torch, module, seed + index)
    ours = [layer.ours() for layer in layers]
    if len(layers) == 1:
        (module,), (torch_module,) = ours, theirs
    else:
        module, torch_module = nn.Sequential(*ours), torch.nn.Sequential(*theirs)
    return in_mode_and_dtype(copy_weights(torch_module, module), torch_module, dtype, training)


# --- the whole network ----------------------------------------------------------------------


def randomize_network(torch, torch_model, seed):
    """Random weights for every layer, and batch-norm running statistics that are not the defaults.

    Convolutions are drawn from ``N(0, 2 / fan_in)``, which keeps every layer's output at about
    the scale of its input. (torchvision's own initialisation uses ``fan_out``, which for a
    depthwise conv of 960 channels means weights of about 0.015: its outputs then have a
    variance near batch norm's ``eps`` and float32 loses most digits dividing by it. That is a
    property of the initialisation, not of either implementation, and it would leave float32
    comparisons measuring only rounding.) The classifier keeps torchvision's initialisation,
    drawn from torch's generator.

    Running statistics drawn at random would not fit the activations either, so they are
    measured on one random batch and then moved at random by up to about 20%: far from mean 0
    and variance 1, near what training would leave, and not the statistics of any test batch.
    """
    rng = np.random.default_rng([0x5D, seed])

    def draw(low, high, like):
        return torch.from_numpy(rng.uniform(low, high, like.shape)).to(like.dtype)

    norms = [m for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for conv in (m for m in torch_model.modules() if isinstance(m, torch.nn.Conv2d)):
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.from_numpy(rng.normal(0.0, np.sqrt(2.0 / fan_in), conv.weight.shape)))
        for bn in norms:
            bn.weight.copy_(draw(0.5, 1.5, bn.weight))
            bn.bias.copy_(draw(-0.2, 0.2, bn.bias))
            bn.momentum = 1.0  # the next forward sets the running statistics to that batch's
        torch_model.train()(torch.from_numpy(rng.standard_normal((4, 3, 96, 96))).float())
        for bn in norms:
            bn.running_mean.mul_(draw(0.8, 1.2, bn.running_mean)).add_(draw(-0.1, 0.1, bn.running_mean))
            bn.running_var.mul_(draw(0.8, 1.25, bn.running_var))
            bn.num_batches_tracked.fill_(7)
            bn.momentum = 0.1


def make_network_twins(torch, width_mult=1.0, dtype=np.float64, seed=0, training=True):
    """Our MobileNetV2 and torchvision's, holding the same random weights and batch-norm state.

    The same arguments give the same weights in every dtype (torch's generator is seeded here),
    so a float32 model can be held to a float64 twin.
    """
    import torchvision

    torch.manual_seed(seed)
    torch_model = torchvision.models.mobilenet_v2(width_mult=width_mult)
    randomize_network(torch, torch_model, seed)
    model = copy_weights(torch_model, MobileNetV2(width_mult=width_mult, seed=seed))
    return in_mode_and_dtype(model, torch_model, dtype, training)


def with_measured_running_statistics(model, x, seed):
    """Set every batch norm's running statistics to those of ``x`` moved at random by up to 20%; eval mode.

    Our model alone, no twin: gamma and beta are drawn too, so nothing is left at its default.
    """
    rng = np.random.default_rng([0x5E, seed])
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.momentum = 1.0  # the next forward replaces the running statistics by the batch's
    model.train()(x)
    for bn in norms:
        bn.momentum = 0.1
        bn.running_mean *= rng.uniform(0.8, 1.2, bn.num_features)
        bn.running_var *= rng.uniform(0.8, 1.25, bn.num_features)
        bn.weight.data[...] = rng.uniform(0.5, 1.5, bn.num_features)
        bn.bias.data[...] = rng.uniform(-0.2, 0.2, bn.num_features)
    return model.eval()
