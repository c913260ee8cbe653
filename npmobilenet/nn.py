"""Layers as objects: ``Parameter``, ``Module``, ``Sequential`` and the layers MobileNetV2 needs.

Names and constructor arguments follow ``torch.nn``, so a reader can hold the two side by side.
A layer is thin: it holds its parameters, calls a forward/backward pair, and keeps the pair's
cache between ``forward`` and ``backward``::

    layer = Conv2d(3, 8, kernel_size=3, padding=1)
    out = layer(x)                 # forward; keeps the cache (unless inside no_grad())
    dx = layer.backward(dout)      # returns dL/dx and *adds* dL/dweight into layer.weight.grad

**The layers run the fast versions** of the pairs, :mod:`npmobilenet.functional.fast`
(imported here as ``F``). They compute what the plain versions in :mod:`npmobilenet.functional`
compute; the tests hold the three versions of every operation equal.

Gradients accumulate across backward passes, as in PyTorch: call ``zero_grad()`` between steps.
A backward pass may be repeated on the same cache (PyTorch's ``retain_graph=True``).
``backward(dout)`` checks that ``dout`` has the shape and dtype of the forward's output.

The cache holds references to the input, not copies (copying every activation would double
the memory of training; a depthwise convolution keeps the zero-padded copy its forward pass
makes anyway): do not change ``x`` in place between ``forward`` and ``backward``. No layer
keeps its own output, so an in-place activation after a layer (``ReLU6(inplace=True)``, as in
MobileNetV2) is safe there.
"""

from collections import namedtuple

import numpy as np

from .functional import fast as F
from ._checks import FLOAT_DTYPES, pair
from .errors import BackwardError, ShapeError, WeightsError
from .grad_mode import is_grad_enabled, no_grad

__all__ = [
    "Parameter", "Module", "Sequential", "FoldingSequential",
    "Conv2d", "BatchNorm2d", "ReLU", "ReLU6", "Dropout", "Linear", "GlobalAvgPool2d",
    "CrossEntropyLoss",
]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter:
    """A learnable array: ``.data`` holds the values, ``.grad`` the accumulated gradient (same shape and dtype).

    ``requires_grad`` (True by default) says whether backward passes add into ``.grad``, as in
    PyTorch: a frozen parameter (``requires_grad = False``) keeps its ``.grad`` untouched, and
    the optimizers of :mod:`npmobilenet.optim` leave it alone.
    """

    def __init__(self, data, requires_grad=True):
        data = np.asarray(data)
        if data.dtype not in FLOAT_DTYPES:
            raise ShapeError(f"Parameter: expected a float32 or float64 array, got dtype {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)
        self.requires_grad = bool(requires_grad)

    def accumulate(self, grad):
        """Add ``grad`` into ``.grad`` (gradients add up over backward passes), unless the parameter is frozen."""
        if self.requires_grad:
            self.grad += grad

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"


class Module:
    """Base class of every layer and of the network.

    A module finds its parts by looking at its own attributes, in the order they were set:
    attributes holding a :class:`Parameter` are its parameters, attributes holding a
    :class:`Module` are its children, and arrays named with :meth:`register_buffer` are its
    buffers (state that is saved but not learned, such as batch norm's running statistics).
    Names join with dots down the tree, as PyTorch's do: ``features.0.1.running_mean``.
    """

    def __init__(self):
        self.training = True
        self._buffer_names = []
        self._cache = None

    # --- running the module -------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} does not define backward()")

    @property
    def cache(self):
        """What the last ``forward`` kept for ``backward`` (the pair's cache), or None.

        None before any forward, after a forward under ``no_grad()``, and after
        :meth:`clear_cache`. Read it to look inside a layer (a ReLU6's mask, a dropout mask);
        never change it.
        """
        return None if self._cache is None else self._cache[0]

    def clear_cache(self):
        """Drop what this module and every module below it keep for ``backward``, freeing that memory."""
        for module in self.modules():
            module._cache = None
        return self

    def _save_for_backward(self, cache, out):
        """Keep ``cache`` (and the shape and dtype of ``out``) for backward, unless inside ``no_grad()``."""
        self._cache = (cache, np.shape(out), out.dtype) if is_grad_enabled() else None

    def _saved_cache(self, dout):
        """The cache of the last forward, once ``dout`` is checked against that forward's output."""
        if self._cache is None:
            raise BackwardError(
                f"{type(self).__name__}.backward() needs the cache of a forward() pass, and "
                f"there is none: call forward() first, outside no_grad()"
            )
        cache, out_shape, out_dtype = self._cache
        if out_shape == () and isinstance(dout, (int, float, np.number)):
            return cache  # a plain number is the upstream gradient of a scalar output (a loss)
        if not isinstance(dout, np.ndarray) or dout.shape != out_shape or dout.dtype != out_dtype:
            found = f"shape {dout.shape} and dtype {dout.dtype}" if isinstance(dout, np.ndarray) else type(dout).__name__
            raise ShapeError(
                f"{type(self).__name__}.backward(): expected dout of the forward output's shape "
                f"{out_shape} and dtype {out_dtype}, got {found}"
            )
        return cache

    # --- the tree ----------------------------------------------------------------------

    def named_children(self):
        """``(name, module)`` for each direct child, in the order they were set."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix=""):
        """``(dotted name, module)`` for this module (name ``""``) and every descendant, parents first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(prefix + name if not prefix else f"{prefix}.{name}")

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def _own_parameters(self):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield name, value

    def named_parameters(self):
        """``(dotted name, Parameter)`` for every parameter of the tree, named as PyTorch names them."""
        for module_name, module in self.named_modules():
            for name, parameter in module._own_parameters():
                yield _join(module_name, name), parameter

    def parameters(self):
        for _, parameter in self.named_parameters():
            yield parameter

    def register_buffer(self, name, array):
        """Store ``array`` as attribute ``name`` and save it in the state dict (not learned)."""
        setattr(self, name, np.asarray(array))
        if name not in self._buffer_names:
            self._buffer_names.append(name)

    def named_buffers(self):
        """``(dotted name, array)`` for every buffer of the tree."""
        for module_name, module in self.named_modules():
            for name in module._buffer_names:
                yield _join(module_name, name), getattr(module, name)

    def buffers(self):
        for _, buffer in self.named_buffers():
            yield buffer

    # --- modes, gradients, dtype ------------------------------------------------------------

    def train(self, mode=True):
        """Training mode (batch statistics, dropout on) for this module and all below; returns self."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (running statistics, dropout off); returns self."""
        return self.train(False)

    def zero_grad(self):
        """Set every parameter's ``.grad`` to zeros."""
        for parameter in self.parameters():
            parameter.grad[...] = 0

    def requires_grad_(self, requires_grad=True):
        """Freeze (``False``) or unfreeze every parameter of this module and all below; returns self.

        PyTorch's ``Module.requires_grad_``. A frozen parameter gets no gradient, and a backward
        pass stops as soon as nothing below it has a parameter that needs one:
        ``model.features.requires_grad_(False)`` makes fine-tuning the classifier cost no
        backward pass through the features at all (see :meth:`Sequential.backward`).
        """
        for parameter in self.parameters():
            parameter.requires_grad = bool(requires_grad)
        return self

    def needs_grad(self):
        """True when a parameter of this module, or of a module below it, requires a gradient."""
        return any(parameter.requires_grad for parameter in self.parameters())

    def astype(self, dtype):
        """Convert every parameter, gradient and floating-point buffer to ``dtype``; returns self.

        Integer buffers (``num_batches_tracked``) keep their dtype. Caches are dropped, since
        they hold arrays of the old dtype: run forward again before backward.
        """
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise ShapeError(f"astype: expected dtype float32 or float64, got {dtype}")
        for module in self.modules():
            for _, parameter in module._own_parameters():
                parameter.data = parameter.data.astype(dtype)
                parameter.grad = parameter.grad.astype(dtype)
            for name in module._buffer_names:
                buffer = getattr(module, name)
                if buffer.dtype.kind == "f":
                    setattr(module, name, buffer.astype(dtype))
            module._cache = None
        return self

    # --- saving and loading ---------------------------------------------------------------

    def _named_state(self):
        """``(dotted name, array)`` in PyTorch's state-dict order: per module, parameters, then buffers."""
        for module_name, module in self.named_modules():
            for name, parameter in module._own_parameters():
                yield _join(module_name, name), parameter.data
            for name in module._buffer_names:
                yield _join(module_name, name), getattr(module, name)

    def state_dict(self):
        """``{name: array}`` of every parameter and buffer, with PyTorch's names; copies, not views."""
        return {name: array.copy() for name, array in self._named_state()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy the arrays of ``state_dict`` into this module's parameters and buffers.

        Values are cast to the dtype the module already has. With ``strict=True`` (the default)
        the keys must match exactly; any missing or unexpected key raises
        :class:`~npmobilenet.errors.WeightsError` naming every one of them. A shape mismatch
        raises in either mode. Everything is checked before anything is written, so a failed
        load leaves the module as it was. Returns ``(missing_keys, unexpected_keys)``.
        """
        own = dict(self._named_state())
        given = {name: np.asarray(value) for name, value in state_dict.items()}
        missing = [name for name in own if name not in given]
        unexpected = [name for name in given if name not in own]
        mismatched = [
            f"{name}: expected shape {own[name].shape}, found {given[name].shape}"
            for name in own
            if name in given and given[name].shape != own[name].shape
        ]
        not_numbers = [name for name in own if name in given and given[name].dtype.kind not in "biuf"]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if not_numbers:
            problems.append("not numeric arrays: " + ", ".join(not_numbers))
        if problems:
            raise WeightsError(
                f"load_state_dict: the state dict does not fit {type(self).__name__}: "
                + " | ".join(problems)
            )
        for name, target in own.items():
            if name in given:
                target[...] = given[name]
        return IncompatibleKeys(missing, unexpected)

    # --- printing ---------------------------------------------------------------------------

    def extra_repr(self):
        """The text between the parentheses of this module's one-line description."""
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            child_text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_text}")
        return "\n".join(lines) + "\n)"


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class Sequential(Module):
    """Modules run one after another; ``backward`` runs them in reverse. Children are named ``"0"``, ``"1"``, ...

    It is a list as PyTorch's ``nn.Sequential`` is: ``seq[1]``, ``seq[-1]``, ``seq[1:3]`` (a new
    Sequential of the same modules), ``len(seq)``, ``for layer in seq``, ``seq[1] = layer``
    (replace one, for example a new classifier: ``model.classifier[1] = nn.Linear(1280, 2)``),
    ``del seq[i]`` (the rest are numbered again) and ``seq.append(layer)``.
    """

    def __init__(self, *layers):
        super().__init__()
        for layer in layers:
            self.append(layer)

    def append(self, layer):
        """Add ``layer`` at the end; returns self."""
        setattr(self, str(len(self)), _checked_module(layer, len(self)))
        return self

    def __len__(self):
        return sum(1 for _ in self.children())

    def __iter__(self):
        return self.children()

    def __getitem__(self, index):
        layers = list(self.children())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[self._position(index)]

    def __setitem__(self, index, layer):
        setattr(self, str(self._position(index)), _checked_module(layer, index))

    def __delitem__(self, index):
        layers = list(self.children())
        del layers[index if isinstance(index, slice) else self._position(index)]
        for name, _ in list(self.named_children()):
            delattr(self, name)
        for layer in layers:  # numbered again from 0, as PyTorch does
            self.append(layer)

    def _position(self, index):
        """``index`` (negative counts from the end) as a position in ``range(len(self))``, or IndexError."""
        count = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"Sequential indices must be integers or slices, not {type(index).__name__}")
        if not -count <= index < count:
            raise IndexError(f"index {index} is out of range for a Sequential of {count} modules")
        return int(index) % count

    def forward(self, x, input_grad=True):
        """Run the layers one after another (see :func:`forward_chain` for ``input_grad=False``)."""
        return forward_chain(list(self), x, input_grad, self.run_layers)

    def run_layers(self, layers, x):
        """``x`` through each of ``layers`` in turn."""
        return run_in_turn(layers, x)

    def backward(self, dout, input_grad=True):
        """Run the layers' backward passes in reverse order; returns ``dL/dx`` (None with ``input_grad=False``).

        See :func:`backward_chain`: with ``input_grad=False`` the layers below the lowest one
        that learns are skipped.
        """
        return backward_chain(list(self), dout, input_grad)


def backward_chain(layers, dout, input_grad=True):
    """The backward pass of ``layers`` run one after another: returns ``dL/dx``, or None with ``input_grad=False``.

    With ``input_grad=False`` the caller does not need the gradient of the first layer's
    input, so the backward pass stops at the lowest layer that has a parameter needing a
    gradient (:meth:`Module.needs_grad`): the frozen layers below it cost nothing. A frozen
    layer between two learning ones still passes the gradient on. A batch norm and the
    activation after it that ran forward as one (:meth:`BatchNorm2d.forward_with`) run
    backward as one, unless the activation is ``guided``.
    """
    first = 0 if input_grad else lowest_learning_layer(layers)
    if not input_grad and first == len(layers):
        return None  # nothing here learns, and nobody needs dx
    index = len(layers) - 1
    while index >= first:
        layer, below = layers[index], layers[index - 1] if index > first else None
        if isinstance(below, BatchNorm2d) and below.ran_with(layer) and not layer.guided:
            dout = below.backward_with(layer, dout)  # a batch norm and its activation, run as one forward
            index -= 2
        else:
            dout = backward_through(layer, dout, input_grad=input_grad or index > first)
            index -= 1
    return dout if input_grad else None


def forward_chain(layers, x, input_grad=True, run_layers=None):
    """``x`` through ``layers`` one after another; ``run_layers(layers, x)`` runs a stretch of them.

    ``input_grad=False`` promises that the backward pass will not need ``dL/dx`` (see
    :func:`backward_chain`): then the frozen layers below the lowest one that learns run under
    :func:`~npmobilenet.no_grad`, keeping no cache (and, in evaluation mode, with batch norm
    folded), since no backward pass will ever go through them. Fine-tuning the classifier of
    a frozen network then costs one inference pass through the features.
    """
    run_layers = run_in_turn if run_layers is None else run_layers
    if input_grad:
        return run_layers(layers, x)
    first = lowest_learning_layer(layers)
    with no_grad():  # nothing below the lowest learning layer will run backward
        x = run_layers(layers[:first], x)
    if first == len(layers):
        return x
    x = forward_through(layers[first], x, input_grad=False)
    return run_layers(layers[first + 1 :], x)


def run_in_turn(layers, x):
    """``x`` through each of ``layers`` in turn."""
    for layer in layers:
        x = layer(x)
    return x


def lowest_learning_layer(layers):
    """The index of the first of ``layers`` with a parameter that needs a gradient (``len(layers)`` when none has)."""
    return next((index for index, layer in enumerate(layers) if layer.needs_grad()), len(layers))


def forward_through(module, x, input_grad):
    """``module(x)``, telling a container (a module with children) whether its input's gradient will be wanted."""
    if next(module.children(), None) is not None:
        return module(x, input_grad=input_grad)
    return module(x)


def backward_through(module, dout, input_grad):
    """``module.backward(dout)``, telling a container whether the gradient of its input is wanted.

    A container (a module with children: a Sequential, an inverted residual block) can then
    skip the layers below its lowest learning one. A single layer always returns ``dx``.
    """
    if next(module.children(), None) is not None:
        return module.backward(dout, input_grad=input_grad)
    return module.backward(dout)


def _checked_module(layer, index):
    if not isinstance(layer, Module):
        raise TypeError(f"Sequential: expected Module instances, got {type(layer).__name__} at index {index}")
    return layer


class FoldingSequential(Sequential):
    """A :class:`Sequential` that folds batch norm into the convolution before it, for inference.

    In eval mode under ``no_grad()``, a ``Conv2d`` followed by a ``BatchNorm2d`` runs as one
    convolution whose weight and bias have the batch norm folded in
    (:func:`~npmobilenet.functional.fold_batchnorm`): the same result up to float rounding,
    one layer's work instead of two. The folded weights are made afresh from the current
    parameters on every call, so they can never be stale. In every other case it is a plain
    :class:`Sequential`, so training and gradients are untouched. MobileNetV2's blocks are
    built from it.
    """

    def run_layers(self, layers, x):
        """``x`` through ``layers``, each convolution followed by a batch norm folded into one where :func:`can_fold`.

        Under ``no_grad()`` a FoldingSequential among the layers is just more layers in a row
        (:func:`flat_layers`), so that each convolution sees what follows it. An activation
        right after the batch norm joins them: the convolution applies it to each block of
        its output while the block is in cache (``conv2d_inference``). A depthwise convolution
        followed by a 1x1 one (an inverted residual block's projection) runs with it in one
        pass (``depthwise_pointwise_inference``): the wide depthwise output never goes to
        main memory; with the 1x1 expansion before them the three run as one
        (``inverted_residual_inference``), and the expanded array never goes there either.
        In training, a batch norm and the ReLU6 after it run in one sweep over memory
        (:meth:`BatchNorm2d.forward_with`), and :func:`backward_chain` runs their backward
        passes as one too.
        """
        if not is_grad_enabled():
            layers = flat_layers(layers)
        index = 0
        while index < len(layers):
            first = folded_unit(layers, index)
            if first is None:
                layer, after = layers[index], layer_at(layers, index + 1)
                if isinstance(layer, BatchNorm2d) and isinstance(after, (ReLU, ReLU6)):
                    x = layer.forward_with(after, x)  # in training: one sweep for both (backward_chain pairs them)
                    index += 2
                else:
                    x = layer(x)
                    index += 1
                continue
            second = folded_unit(layers, first.end)
            third = folded_unit(layers, second.end) if second is not None else None
            if is_expansion(first) and is_depthwise_then_projection(second, third):
                x = self.folded_inverted_residual(first, second, third, x)
                end = third.end
            elif is_depthwise_then_projection(first, second):
                x = self.folded_depthwise_pointwise(first, second, x)
                end = second.end
            else:
                x = self.folded_forward(first.conv, first.batchnorm, x, first.activation)
                end = first.end
            for taken in layers[index:end]:
                taken._cache = None  # what an earlier forward kept is stale now (all are single layers)
            index = end
        return x

    @staticmethod
    def folded_forward(conv, batchnorm, x, activation=None):
        """``activation(batchnorm(conv(x)))`` as one convolution (eval mode, under ``no_grad()``: no cache is kept)."""
        weight, bias = folded_weights(conv, batchnorm)
        inference = F.depthwise_conv2d_inference if conv.is_depthwise else F.conv2d_inference
        return inference(x, weight, bias, conv.stride, conv.padding, activation)

    @staticmethod
    def folded_depthwise_pointwise(depthwise, projection, x):
        """Two :class:`FoldedUnit` s, a depthwise convolution and a 1x1 one, in one pass (``depthwise_pointwise_inference``)."""
        dw_weight, dw_bias = folded_weights(depthwise.conv, depthwise.batchnorm)
        pw_weight, pw_bias = folded_weights(projection.conv, projection.batchnorm)
        return F.depthwise_pointwise_inference(x, dw_weight, dw_bias, depthwise.conv.stride, depthwise.conv.padding,
                                               depthwise.activation, pw_weight, pw_bias)

    @staticmethod
    def folded_inverted_residual(expansion, depthwise, projection, x):
        """Three :class:`FoldedUnit` s, 1x1, depthwise and 1x1, with fewer passes (``inverted_residual_inference``)."""
        expand_weight, expand_bias = folded_weights(expansion.conv, expansion.batchnorm)
        dw_weight, dw_bias = folded_weights(depthwise.conv, depthwise.batchnorm)
        pw_weight, pw_bias = folded_weights(projection.conv, projection.batchnorm)
        return F.inverted_residual_inference(x, expand_weight, expand_bias, expansion.activation, dw_weight, dw_bias,
                                             depthwise.conv.stride, depthwise.conv.padding, depthwise.activation,
                                             pw_weight, pw_bias)


FoldedUnit = namedtuple("FoldedUnit", "conv batchnorm activation end")
FoldedUnit.__doc__ = """A convolution, the batch norm folded into it, the activation after them (an in-place
function, or None), and the index of the first layer after them."""


def folded_unit(layers, index):
    """The :class:`FoldedUnit` that starts at ``layers[index]``, or None when no convolution with a foldable batch norm does."""
    conv, batchnorm = layer_at(layers, index), layer_at(layers, index + 1)
    if not (isinstance(conv, Conv2d) and can_fold(batchnorm)):
        return None
    after = layer_at(layers, index + 2)
    activation = getattr(after, "in_place", None) if isinstance(after, _Activation) else None
    return FoldedUnit(conv, batchnorm, activation, index + 2 + (activation is not None))


def is_expansion(unit):
    """A 1x1 convolution (with anything after it): an inverted residual block's expansion."""
    return unit is not None and is_plain_pointwise(unit.conv)


def is_depthwise_then_projection(depthwise, projection):
    """A depthwise convolution followed by a 1x1 one with no activation: the second half of an inverted residual block."""
    return (depthwise is not None and depthwise.conv.is_depthwise and projection is not None
            and is_plain_pointwise(projection.conv) and projection.activation is None)


def folded_weights(conv, batchnorm):
    """The weight and bias of ``conv`` with ``batchnorm`` folded in (:func:`~npmobilenet.functional.fold_batchnorm`)."""
    return F.fold_batchnorm(
        conv.weight.data, None if conv.bias is None else conv.bias.data,
        batchnorm.weight.data, batchnorm.bias.data, batchnorm.running_mean, batchnorm.running_var, batchnorm.eps,
    )


def flat_layers(layers):
    """``layers`` with each FoldingSequential among them replaced by its own layers, recursively.

    Running a Sequential inside a Sequential is running its layers in turn, so this changes
    nothing but what each layer can see after it. A subclass with its own ``forward`` or
    ``run_layers`` stays whole, and so does one whose ``forward`` was replaced on the instance
    (a wrapper that times it, as ``npmobilenet bench --roofline`` does): it must run as itself.
    """
    flat = []
    for layer in layers:
        if (isinstance(layer, FoldingSequential) and type(layer).forward is Sequential.forward
                and type(layer).run_layers is FoldingSequential.run_layers and "forward" not in vars(layer)):
            flat += flat_layers(list(layer))
            layer._cache = None
        else:
            flat.append(layer)
    return flat


def layer_at(layers, index):
    """``layers[index]``, or None past the end."""
    return layers[index] if index < len(layers) else None


def is_plain_pointwise(layer):
    """A 1x1 convolution with stride 1, no padding and no groups: one matrix product over the pixels."""
    return (isinstance(layer, Conv2d) and not layer.is_depthwise and layer.groups == 1
            and layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.padding == (0, 0))


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Conv2d(Module):
    """2-D convolution over NCHW input, PyTorch's ``nn.Conv2d``.

    ``groups=1`` is a dense convolution (:func:`~npmobilenet.functional.fast.conv2d_forward`, im2col);
    ``groups = in_channels = out_channels`` is a depthwise convolution
    (:func:`~npmobilenet.functional.fast.depthwise_conv2d_forward`, shifted multiply-adds). Those are
    the two kinds MobileNetV2 uses; other group counts raise ``ValueError``.

    The weight has shape ``(out_channels, in_channels // groups, kH, kW)``. Weight and bias start
    as PyTorch's do: uniform in ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``, with
    ``fan_in = in_channels // groups * kH * kW``; ``seed`` (an int or a ``numpy.random.Generator``)
    makes that reproducible.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias=True, seed=None, dtype=np.float32):
        super().__init__()
        if groups != 1 and not (groups == in_channels == out_channels):
            raise ValueError(
                f"Conv2d: expected groups=1 (dense) or groups=in_channels=out_channels "
                f"(depthwise), got groups={groups} with {in_channels} in and {out_channels} out channels"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.groups = groups
        rng = np.random.default_rng(seed)
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / np.sqrt(fan_in)
        weight_shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(_uniform(rng, bound, weight_shape, dtype))
        self.bias = Parameter(_uniform(rng, bound, (out_channels,), dtype)) if bias else None

    @property
    def is_depthwise(self):
        return self.groups > 1

    @property
    def pair_forward(self):
        """The forward function this layer runs: the depthwise one or the dense (im2col) one."""
        return F.depthwise_conv2d_forward if self.is_depthwise else F.conv2d_forward

    @property
    def pair_backward(self):
        return F.depthwise_conv2d_backward if self.is_depthwise else F.conv2d_backward

    def forward(self, x):
        bias = None if self.bias is None else self.bias.data
        out, cache = self.pair_forward(x, self.weight.data, bias, self.stride, self.padding)
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout):
        dx, dw, db = self.pair_backward(dout, self._saved_cache(dout))
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class BatchNorm2d(Module):
    """Batch normalisation over the channels of NCHW input, PyTorch's ``nn.BatchNorm2d``.

    Parameters ``weight`` (gamma, ones) and ``bias`` (beta, zeros); buffers ``running_mean``
    (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (an int64 count). In training
    mode it normalises with the batch's statistics and updates the running ones
    (``momentum`` is the weight of the new value; ``momentum=None`` gives the cumulative
    average, as in PyTorch); in eval mode it normalises with the running statistics.
    See :func:`~npmobilenet.functional.norm.batchnorm2d_forward` for the math.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        self._fused_token = None  # shared with the activation whose cache the last forward_with made

    def forward(self, x):
        self._fused_token = None
        out, cache = F.batchnorm2d_forward(x, *self._arguments())
        self._count_batch()
        self._save_for_backward(cache, out)
        return out

    def forward_with(self, activation, x):
        """``activation(self(x))`` for a ReLU or ReLU6 ``activation``, in one sweep over memory.

        Both modules keep the caches their own forward passes keep, so either backward can
        run alone; :meth:`backward_with` runs the two at once
        (:func:`~npmobilenet.functional.fast.batchnorm2d_activation_forward`).
        """
        out, cache, mask = F.batchnorm2d_activation_forward(x, *self._arguments(), upper=activation.upper)
        self._count_batch()
        self._save_for_backward(cache, out)
        activation._save_for_backward(mask, out)
        self._fused_token = activation._fused_token = object()  # a mark, not a reference to the module
        return out

    def ran_with(self, activation):
        """True when the last forward passes of this batch norm and of ``activation`` were one :meth:`forward_with`."""
        return self._fused_token is not None and self._fused_token is getattr(activation, "_fused_token", None)

    def _arguments(self):
        momentum = self.momentum
        if self.training and momentum is None:  # cumulative moving average: batch n has weight 1/n
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        return self.weight.data, self.bias.data, self.running_mean, self.running_var, self.training, momentum, self.eps

    def _count_batch(self):
        if self.training:
            self.num_batches_tracked += 1  # counted once the batch went through, as nothing can fail now

    def backward(self, dout):
        dx, dgamma, dbeta = F.batchnorm2d_backward(dout, self._saved_cache(dout))
        return self._gradients(dx, dgamma, dbeta)

    def backward_with(self, activation, dout):
        """The backward passes of ``activation`` and then of this batch norm, at once: ``dL/dx`` of :meth:`forward_with`."""
        mask = activation._saved_cache(dout)
        dx, dgamma, dbeta = F.batchnorm2d_activation_backward(dout, mask, self._saved_cache(dout))
        return self._gradients(dx, dgamma, dbeta)

    def _gradients(self, dx, dgamma, dbeta):
        self.weight.accumulate(dgamma)
        self.bias.accumulate(dbeta)
        return dx

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


def can_fold(layer):
    """True when ``layer`` is a batch norm that a preceding convolution can absorb: eval mode, under ``no_grad()``."""
    return isinstance(layer, BatchNorm2d) and not layer.training and not is_grad_enabled()


class _Activation(Module):
    """An elementwise activation: a forward pair and a backward pair, nothing to learn.

    ``inplace=True`` writes the result over the input, as PyTorch's ``inplace=True`` does: use
    it only where nothing else needs the input afterwards (after a convolution or a batch norm,
    which keep their input, not their output). Under ``no_grad()`` no mask is made.

    ``guided = True`` switches the backward rule to *guided backpropagation* (Springenberg et
    al., 2015), which :mod:`npmobilenet.explain` uses: the gradient passes only where the
    forward input was in the linear part (as usual) **and** the upstream gradient is positive,
    ``dx = dout * mask * (dout > 0)``. With the backward pass written out, that is one line
    here, not a hook.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace
        self.guided = False
        self._fused_token = None  # see BatchNorm2d.forward_with

    def forward(self, x):
        self._fused_token = None
        if not is_grad_enabled():  # no backward can follow: the activation alone, no mask
            self._cache = None
            return self.function(x, self.inplace)
        out, cache = self.forward_pair(x, self.inplace)
        self._save_for_backward(cache, out)
        return out

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def backward(self, dout):
        dx = self.backward_pair(dout, self._saved_cache(dout))
        if self.guided:  # guided backpropagation: negative gradients stop here too
            dx = np.maximum(dx, 0)  # dout * mask is positive exactly where dout > 0 and mask is 1
        return dx


class ReLU(_Activation):
    """``max(x, 0)``, PyTorch's ``nn.ReLU``."""

    function = staticmethod(F.relu)
    in_place = staticmethod(F.relu_in_place)
    upper = None  # no upper kink
    forward_pair = staticmethod(F.relu_forward)
    backward_pair = staticmethod(F.relu_backward)


class ReLU6(_Activation):
    """``min(max(x, 0), 6)``, PyTorch's ``nn.ReLU6``: the activation of MobileNetV2."""

    function = staticmethod(F.relu6)
    in_place = staticmethod(F.relu6_in_place)
    upper = 6.0
    forward_pair = staticmethod(F.relu6_forward)
    backward_pair = staticmethod(F.relu6_backward)


class Dropout(Module):
    """Inverted dropout, PyTorch's ``nn.Dropout``: ``p`` is the probability of dropping a value.

    The masks come from a ``numpy.random.Generator`` made from ``seed`` (an int, a Generator,
    or None for an unseeded one): the same seed gives the same sequence of masks. Eval mode is
    the identity.
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: expected a probability p between 0 and 1, got {p}")
        self.p = p
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        out, cache = F.dropout_forward(x, self.p, self.training, self.rng)
        self._save_for_backward((cache,), out)  # wrapped: a None mask (eval mode) is still a cache
        return out

    def backward(self, dout):
        (mask,) = self._saved_cache(dout)
        return F.dropout_backward(dout, mask)

    def extra_repr(self):
        return f"p={self.p}"


class Linear(Module):
    """Fully connected layer, PyTorch's ``nn.Linear``: ``out = x @ weight.T + bias``.

    ``weight`` is ``(out_features, in_features)``; both start uniform in
    ``(-1/sqrt(in_features), 1/sqrt(in_features))`` as in PyTorch; ``seed`` makes that reproducible.
    """

    def __init__(self, in_features, out_features, bias=True, seed=None, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = Parameter(_uniform(rng, bound, (out_features, in_features), dtype))
        self.bias = Parameter(_uniform(rng, bound, (out_features,), dtype)) if bias else None

    def forward(self, x):
        bias = None if self.bias is None else self.bias.data
        out, cache = F.linear_forward(x, self.weight.data, bias)
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout):
        dx, dw, db = F.linear_backward(dout, self._saved_cache(dout))
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class GlobalAvgPool2d(Module):
    """``(N, C, H, W) -> (N, C)``: the mean over each channel's pixels.

    PyTorch has no layer of this name: it is ``nn.AdaptiveAvgPool2d(1)`` followed by
    ``nn.Flatten()``, which is what torchvision's MobileNetV2 does before its classifier.
    """

    def forward(self, x):
        out, cache = F.global_avg_pool_forward(x)
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout):
        return F.global_avg_pool_backward(dout, self._saved_cache(dout))


class CrossEntropyLoss(Module):
    """Softmax cross-entropy averaged over the batch, PyTorch's ``nn.CrossEntropyLoss(label_smoothing=0.0)``.

    ``loss = criterion(logits, targets)``, then ``dlogits = criterion.backward()`` (the upstream
    gradient of a loss defaults to 1). ``label_smoothing`` moves that much of each target's
    probability evenly onto all classes, as PyTorch defines it (see
    :func:`~npmobilenet.functional.loss.softmax_cross_entropy_forward`).
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: expected label_smoothing between 0 and 1, got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits, targets):
        loss, cache = F.softmax_cross_entropy_forward(logits, targets, self.label_smoothing)
        self._save_for_backward(cache, loss)
        return loss

    def backward(self, dout=1.0):
        """``dlogits`` for an upstream gradient ``dout = dL/dloss`` (a number; 1 by default)."""
        return F.softmax_cross_entropy_backward(dout, self._saved_cache(dout))

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
