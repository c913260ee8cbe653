"""MobileNetV2 (Sandler et al., 2018), built from :mod:`npmobilenet.nn` exactly as torchvision builds it.

The network is a stem, seventeen inverted residual blocks and a classifier::

    features.0        Conv2dNormActivation: 3x3 conv, stride 2, 3 -> 32 channels, BN, ReLU6
    features.1 .. 17  InvertedResidual blocks, from the paper's table (t, c, n, s) below
    features.18       Conv2dNormActivation: 1x1 conv to 1280 channels, BN, ReLU6
    pool              global average pooling: (N, 1280, H, W) -> (N, 1280)
    classifier        Dropout(0.2), Linear(1280, num_classes)

An inverted residual block widens its input ``t`` times with a 1x1 conv ("expand"), filters
each channel on its own with a 3x3 depthwise conv, and narrows back with a 1x1 conv
("project") that has no activation; when the block keeps the size and the channels, its input
is added to its output::

    x -> [1x1 conv, BN, ReLU6] -> 3x3 depthwise conv, BN, ReLU6 -> 1x1 conv, BN -> (+ x) -> out
         (skipped when t = 1)

The attribute names mirror torchvision's module tree, so ``state_dict()`` has torchvision's
keys with no renaming table (``features.2.conv.0.0.weight``, ``classifier.1.bias``, ...):
torchvision's checkpoints load as they are, and weights trained here load into torchvision.
(``pool`` has no parameters, so it adds no key; torchvision pools inside ``forward``.)
"""

import math
import sys
import warnings
from collections import namedtuple

import numpy as np

from .. import nn, parallel
from ..functional.fast.layout import channels_last
from .._checks import check_float_array, conv_output_size
from ..errors import WeightsError

__all__ = [
    "Conv2dNormActivation", "InvertedResidual", "MobileNetV2", "count_mult_adds", "make_divisible",
    "mobilenet_v2", "model_from_state_dict",
]

# The paper's Table 2: expansion factor t, output channels c, repeats n, stride s of the first repeat.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
CLASSIFIER_PREFIX = "classifier.1."  # the Linear layer's keys: the part of the network that knows the classes
CLASSIFIER_WEIGHT = CLASSIFIER_PREFIX + "weight"
LAST_CHANNELS = 1280

_ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


def make_divisible(value, divisor=8, min_value=None):
    """Round a channel count to the nearest multiple of ``divisor``, never going below 90% of it.

    torchvision's ``_make_divisible``: ``32 * 0.5 = 16 -> 16``, ``24 * 1.4 = 33.6 -> 32``,
    ``1280 * 1.0 -> 1280``. Multiples of 8 suit vectorised hardware; the 90% rule stops the
    rounding from taking away more than a tenth of a layer's channels.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class Conv2dNormActivation(nn.FoldingSequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> activation: children ``0``, ``1``, ``2``.

    In eval mode under ``no_grad()`` the batch norm is folded into the convolution
    (:class:`~npmobilenet.nn.FoldingSequential`).

    ``groups=channels`` makes the conv depthwise. ``activation=None`` leaves the activation out.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, activation=nn.ReLU6):
        padding = (kernel_size - 1) // 2  # keeps H and W at stride 1, halves them (rounding up) at stride 2
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))  # over the batch norm's output, which nothing else keeps
        super().__init__(*layers)
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3, ``stride``) -> project (1x1, linear), plus the input when shapes allow.

    ``conv`` is a :class:`~npmobilenet.nn.Sequential`: ``[expand, depthwise, project conv, BN]``,
    or ``[depthwise, project conv, BN]`` when ``expand_ratio`` is 1, as torchvision numbers them.
    The hidden width is ``round(in_channels * expand_ratio)``.

    Forward: ``out = conv(x) + x`` when ``use_res_connect`` (stride 1 and ``in == out`` channels),
    else ``out = conv(x)``. Backward: the sum sends ``dout`` down both paths unchanged, so
    ``dx = conv.backward(dout) + dout``.
    """

    def __init__(self, in_channels, out_channels, stride, expand_ratio, activation=nn.ReLU6):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: expected stride 1 or 2, got {stride}")
        hidden = round(in_channels * expand_ratio)
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(in_channels, hidden, kernel_size=1, activation=activation))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden, activation=activation),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.FoldingSequential(*layers)
        self.out_channels = out_channels

    def forward(self, x, input_grad=True):
        out = self.conv(x, input_grad=input_grad)
        if self.use_res_connect:
            out += x  # in place: out is the last batch norm's new output, which no cache holds
        return out

    def backward(self, dout, input_grad=True):
        """``dL/dx``: the sum sends ``dout`` down both paths. With ``input_grad=False``, see :meth:`Sequential.backward`."""
        dx = self.conv.backward(dout, input_grad=input_grad)
        if dx is None:
            return None  # the input's gradient is not wanted
        if self.use_res_connect:
            dx += dout  # in place: dx is the new array the first convolution's backward made
        return dx


class MobileNetV2(nn.Module):
    """MobileNetV2 with torchvision's module tree, weight initialisation and state-dict keys.

    Arguments keep torchvision's meaning:

    * ``num_classes``: outputs of the classifier (1000 for ImageNet).
    * ``width_mult``: scales every layer's channels (then :func:`make_divisible` rounds them to
      multiples of ``round_nearest``); the last conv never goes below 1280 channels.
    * ``dropout``: drop probability before the classifier (training mode only).
    * ``activation``: ``"relu6"`` (the paper's and torchvision's) or ``"relu"`` (this
      project's seed variant).
    * ``seed``: an int or a ``numpy.random.Generator`` for reproducible initial weights and
      dropout masks.

    Weights start as torchvision's do: convolutions from ``N(0, 2 / fan_out)`` (Kaiming normal,
    ``fan_out = out_channels * kH * kW``), batch norm at gamma 1 and beta 0, the classifier from
    ``N(0, 0.01^2)`` with zero bias. Use :func:`mobilenet_v2` to start from trained weights.

    ``model(x)`` takes ``(N, 3, H, W)`` float32 or float64 input (any H, W of at least 32;
    224 for ImageNet) and returns ``(N, num_classes)`` logits; ``model.backward(dlogits)``
    returns ``dL/dx`` and adds every parameter's gradient into its ``.grad``.
    """

    def __init__(self, num_classes=1000, width_mult=1.0, round_nearest=8, dropout=0.2,
                 activation="relu6", seed=None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MobileNetV2: expected activation 'relu6' or 'relu', got {activation!r}")
        if not width_mult > 0:
            raise ValueError(f"MobileNetV2: expected a positive width_mult, got {width_mult}")
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"MobileNetV2: expected a positive integer num_classes, got {num_classes}")
        rng = np.random.default_rng(seed)
        act = _ACTIVATIONS[activation]
        self.activation = activation
        self.width_mult = width_mult

        channels = make_divisible(STEM_CHANNELS * width_mult, round_nearest)
        last_channels = make_divisible(LAST_CHANNELS * max(1.0, width_mult), round_nearest)
        layers = [Conv2dNormActivation(3, channels, stride=2, activation=act)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(c * width_mult, round_nearest)
            for repeat in range(n):
                stride = s if repeat == 0 else 1
                layers.append(InvertedResidual(channels, out_channels, stride, expand_ratio=t, activation=act))
                channels = out_channels
        layers.append(Conv2dNormActivation(channels, last_channels, kernel_size=1, activation=act))
        self.features = nn.Sequential(*layers)
        self.pool = nn.GlobalAvgPool2d()
        self.classifier = nn.Sequential(nn.Dropout(dropout, seed=rng), nn.Linear(last_channels, num_classes))
        self.last_channel = last_channels
        self.weights_spec = None  # the registry entry of loaded weights: see mobilenet_v2()
        self._initialize_weights(rng)

    def _initialize_weights(self, rng):
        """torchvision's initialisation (see the class docstring), drawn from ``rng``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                out_channels, _, kh, kw = module.weight.shape
                std = math.sqrt(2.0 / (out_channels * kh * kw))
                module.weight.data[...] = rng.normal(0.0, std, module.weight.shape)
                if module.bias is not None:
                    module.bias.data[...] = 0
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.data[...] = 1
                module.bias.data[...] = 0
            elif isinstance(module, nn.Linear):
                module.weight.data[...] = rng.normal(0.0, 0.01, module.weight.shape)
                module.bias.data[...] = 0

    def forward(self, x, input_grad=True):
        """Logits ``(N, num_classes)`` for an ``(N, 3, H, W)`` batch.

        The input is copied once into channels-last memory (see
        :mod:`npmobilenet.functional.fast.layout`); every layer keeps that memory order, so no
        other layout conversion happens. In eval mode under ``no_grad()`` each convolution
        runs with its batch norm folded into it (:class:`npmobilenet.nn.FoldingSequential`).
        ``input_grad=False`` (training, where the backward pass will be called with it too)
        runs the frozen layers below the lowest learning one under ``no_grad()``
        (:func:`npmobilenet.nn.forward_chain`).
        """
        check_float_array("input", x, "MobileNetV2", ndim=4)
        x = channels_last(x)
        with parallel.blas_on_one_thread():  # once for the whole pass: see npmobilenet.parallel
            return nn.forward_chain([self.features, self.pool, self.classifier], x, input_grad)

    def backward(self, dlogits, input_grad=True):
        """``dL/dx`` for ``dlogits = dL/dlogits``; every parameter's ``.grad`` gets its share added.

        ``dL/dx`` is returned in NCHW memory, as the input was given. With
        ``input_grad=False`` (training, where nobody needs ``dL/dx``) the backward pass stops
        at the lowest layer whose parameters need a gradient and returns None: with frozen
        features (``model.features.requires_grad_(False)``) only the classifier runs backward.
        """
        with parallel.blas_on_one_thread():
            dx = nn.backward_chain([self.features, self.pool, self.classifier], dlogits, input_grad)
        return None if dx is None else np.ascontiguousarray(dx)

    def summary(self, input_size=(1, 3, 224, 224), file=None):
        """Print a table of the blocks: output shape, parameters and multiply-adds, with totals.

        Nothing is run: shapes follow from the conv arithmetic, and a conv's multiply-adds are
        ``N * OH * OW * out_channels * (in_channels / groups) * kH * kW`` (a linear layer's are
        ``N * in * out``); batch norm, activations and the residual sums are not counted, as in
        the paper. At width 1.0 and 224x224 the totals are 3,504,872 parameters and about 300M
        multiply-adds. Prints to ``file`` (standard output by default) and returns a
        :class:`ModelSummary` holding the rows and the totals.
        """
        rows = []
        shape = tuple(input_size)
        for name, block in [*(("features." + n, b) for n, b in self.features.named_children()),
                            ("pool", self.pool), *(("classifier." + n, b) for n, b in self.classifier.named_children())]:
            shape, mult_adds = count_mult_adds(block, shape)
            parameters = sum(p.data.size for p in block.parameters())
            rows.append(SummaryRow(name, type(block).__name__, shape, parameters, mult_adds))
        result = ModelSummary(tuple(input_size), rows)
        print(result.table(), file=sys.stdout if file is None else file)
        return result



SummaryRow = namedtuple("SummaryRow", ["name", "kind", "output_shape", "parameters", "mult_adds"])


class ModelSummary:
    """The rows of :meth:`MobileNetV2.summary` and their totals; ``table()`` renders them."""

    def __init__(self, input_size, rows):
        self.input_size = input_size
        self.rows = rows
        self.total_parameters = sum(row.parameters for row in rows)
        self.total_mult_adds = sum(row.mult_adds for row in rows)

    def table(self):
        header = f"{'layer':<14} {'kind':<22} {'output shape':<20} {'parameters':>12} {'mult-adds':>15}"
        lines = [f"input {self.input_size}", header, "-" * len(header)]
        for row in self.rows:
            lines.append(f"{row.name:<14} {row.kind:<22} {row.output_shape!s:<20} "
                         f"{row.parameters:>12,} {row.mult_adds:>15,}")
        lines.append("-" * len(header))
        lines.append(f"{'total':<58} {self.total_parameters:>12,} {self.total_mult_adds:>15,}")
        lines.append(f"{self.total_parameters / 1e6:.2f}M parameters, {self.total_mult_adds / 1e6:.1f}M multiply-adds")
        return "\n".join(lines)

    def __repr__(self):
        return f"ModelSummary(parameters={self.total_parameters}, mult_adds={self.total_mult_adds})"


def count_mult_adds(module, input_shape):
    """``(output shape, multiply-adds)`` of ``module`` on an input of ``input_shape``, by arithmetic alone."""
    if isinstance(module, nn.Conv2d):
        n, _, h, w = input_shape
        oh, ow = (conv_output_size(size, k, s, p) for size, k, s, p in
                  zip((h, w), module.kernel_size, module.stride, module.padding))
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        return (n, module.out_channels, oh, ow), n * oh * ow * module.out_channels * per_output
    if isinstance(module, nn.Linear):
        return (*input_shape[:-1], module.out_features), math.prod(input_shape) * module.out_features
    if isinstance(module, nn.GlobalAvgPool2d):
        return tuple(input_shape[:2]), 0
    if isinstance(module, nn.Sequential):
        total = 0
        for layer in module:
            input_shape, mult_adds = count_mult_adds(layer, input_shape)
            total += mult_adds
        return input_shape, total
    if isinstance(module, InvertedResidual):
        return count_mult_adds(module.conv, input_shape)
    return tuple(input_shape), 0  # batch norm, activations, dropout: shape kept, no multiply-adds counted


def mobilenet_v2(weights=None, progress=True, **kwargs):
    """A :class:`MobileNetV2`, with trained weights when ``weights`` is given.

    ``weights``: ``None`` for torchvision's random initialisation, a registry name
    (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"``), or a path to a ``.pth`` or
    ``.npz`` file; see :func:`npmobilenet.models.weights.resolve_weights` for where named weights
    come from (the cache, then a download with a progress display when ``progress``).
    ``kwargs`` go to :class:`MobileNetV2`. A ``num_classes`` other than the weights' starts a new
    classifier on the trained features, with a warning that says so (see
    :func:`model_from_state_dict`). The model is returned in training mode, as torchvision
    returns it.
    """
    if weights is None:
        return MobileNetV2(**kwargs)
    # Imported here, so that building a random model never touches the weights code.
    from .weights import resolve_weights

    state_dict, spec = resolve_weights(weights, progress=progress)
    return model_from_state_dict(state_dict, spec, source=f"weights {str(weights)!r}", new_classifier=True, **kwargs)


def model_from_state_dict(state_dict, spec=None, source=None, new_classifier=False, **kwargs):
    """A :class:`MobileNetV2` holding ``state_dict``; ``spec`` (a registry entry) is kept as ``model.weights_spec``.

    ``num_classes`` defaults to the classifier's size in ``state_dict``. With
    ``new_classifier=True``, when ``num_classes`` is given and differs from it (fine-tuning
    for new classes, as :func:`mobilenet_v2` allows), everything but the classifier
    is loaded, the classifier starts from torchvision's initialisation, and a warning says so
    (torchvision refuses such a load; here it is the first step of transfer learning). A state
    dict that does not fit otherwise (missing, unexpected or mis-shaped keys, as for another
    ``width_mult``) raises :class:`~npmobilenet.errors.WeightsError` naming the keys, and
    ``source`` (where the weights came from, for the message) when given.
    """
    classifier = state_dict.get(CLASSIFIER_WEIGHT)
    saved_classes = classifier.shape[0] if classifier is not None and np.ndim(classifier) == 2 else None
    kwargs.setdefault("num_classes", saved_classes or 1000)
    model = MobileNetV2(**kwargs)
    new_head = new_classifier and saved_classes is not None and saved_classes != model.classifier[-1].out_features
    if new_head:
        state_dict = {name: value for name, value in state_dict.items() if not name.startswith(CLASSIFIER_PREFIX)}
    try:
        missing, _ = model.load_state_dict(state_dict, strict=not new_head)
        if new_head and [name for name in missing if not name.startswith(CLASSIFIER_PREFIX)]:
            model.load_state_dict(state_dict)  # strict, to raise the error that names every problem
    except WeightsError as error:
        if source is None:
            raise
        raise WeightsError(f"{source}: {error}") from error
    if new_head:
        warnings.warn(
            f"{source or 'the weights'}: the checkpoint's classifier has {saved_classes} classes and "
            f"num_classes={model.classifier[-1].out_features} was asked for, so the features are loaded "
            f"and the classifier ({CLASSIFIER_PREFIX.rstrip('.')}) starts from random weights: train it",
            stacklevel=3,
        )
    model.weights_spec = spec
    return model
