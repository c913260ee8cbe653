"""Layers by their torchvision names: find one, keep its activation, run the backward pass down to it.

Every method of :mod:`npmobilenet.explain` needs three things, and here they are, with no hooks
and no autograd, only the modules' own ``forward`` and ``backward``:

* :func:`layer_path` and :func:`find_layer`: a layer by its dotted torchvision name,
  ``"features.14"``, ``"features.18.0"``, ``"features.14.conv.1"`` (``model.named_modules()``
  lists them all);
* :func:`forward_keeping` (and :func:`activations`, its public face): the forward pass, run step
  by step from the top, keeping a copy of the output of each named layer;
* :func:`backward_to`: the chain rule from the logits down to a named layer. The layers that
  run *after* it in the forward pass (its "tail") run their ``backward`` in reverse order, with
  :func:`npmobilenet.nn.backward_chain`, level by level down the tree::

      "features.14.conv.1":  the model       features | pool, classifier      backward of pool, classifier
                             features        0 .. 14 | 15 .. 18               backward of 18, 17, 16, 15
                             features.14     conv (+ the block's input)       the sum passes dout unchanged
                             .conv           0, 1 | 2, 3                      backward of 3, 2

How each kind of container runs its children is :func:`forward_steps`: a ``Sequential`` runs them
one after another, the network runs ``features``, ``pool``, ``classifier``, and an inverted
residual block runs ``conv`` and then adds its input back when ``use_res_connect``. The model
itself is not changed, apart from the caches its layers keep for backward, as after any forward.
"""

import numpy as np

from .. import nn
from ..grad_mode import no_grad
from ..models.mobilenetv2 import InvertedResidual, MobileNetV2

__all__ = ["activations", "backward_to", "find_layer", "forward_keeping", "forward_steps", "layer_path"]


def forward_steps(module):
    """``([(name, child), ...], adds_input)``: the children ``module`` runs, in order, and whether it adds its input after them.

    ``([], False)`` for a single layer (nothing inside it to walk into).
    """
    if isinstance(module, nn.Sequential):
        return list(module.named_children()), False
    if isinstance(module, MobileNetV2):
        return [("features", module.features), ("pool", module.pool), ("classifier", module.classifier)], False
    if isinstance(module, InvertedResidual):
        return [("conv", module.conv)], module.use_res_connect
    return [], False


def layer_path(model, name):
    """``[(steps, position), ...]`` from the top of ``model`` down to the layer called ``name``.

    ``steps`` are the children of one container (see :func:`forward_steps`), ``position`` is
    where the next part of the name sits among them. Raises ``ValueError`` naming the layers
    there are, for a name that is not in the tree.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"expected a layer name such as 'features.18' or 'features.14.conv.1', got {name!r}")
    path, module, prefix = [], model, ""
    for part in name.split("."):
        steps, _ = forward_steps(module)
        names = [step_name for step_name, _ in steps]
        if part not in names:
            raise ValueError(f"unknown layer {name!r}: {_what_is_there(prefix, names)}; names are torchvision's, "
                             f"as model.named_modules() lists them (for example 'features.18' or 'features.14.conv.1')")
        position = names.index(part)
        path.append((steps, position))
        module, prefix = steps[position][1], _join(prefix, part)
    return path


def find_layer(model, name):
    """The module called ``name`` (``"features.18.0"``: the 1x1 convolution of the last block)."""
    steps, position = layer_path(model, name)[-1]
    return steps[position][1]


def forward_keeping(model, x, names):
    """``(logits, {name: activation})``: the forward pass, keeping a copy of the output of each named layer.

    The containers that hold a named layer are walked child by child (:func:`forward_steps`);
    every other module runs its own ``forward``. The copies are NCHW-contiguous and nothing
    later writes over them (ReLU6 runs in place over a batch norm's output, the residual sum
    in place over the block's).
    """
    names = list(dict.fromkeys(names))
    for name in names:
        layer_path(model, name)  # every name is checked before anything runs
    kept = {}
    logits = _run(model, x, "", set(names), kept)
    return logits, {name: kept[name] for name in names}


def _run(module, x, prefix, wanted, kept):
    """``module(x)``, walking into it when a wanted layer is inside, and keeping the wanted outputs."""
    if any(_is_inside(name, prefix) for name in wanted):
        steps, adds_input = forward_steps(module)
        out = x
        for name, child in steps:
            out = _run(child, out, _join(prefix, name), wanted, kept)
        if adds_input:
            out = out + x  # the residual connection of an inverted residual block
    else:
        out = module(x)
    if prefix in wanted:
        kept[prefix] = out.copy(order="C")
    return out


def activations(model, x, layers):
    """``{name: activation}``: the output of each named layer for the batch ``x``, NCHW (or ``(N, C)``).

    ``layers`` is one name or a list of names (``"features.14"``, ``"features.18.0"``). The
    forward pass runs under ``no_grad()`` (no cache is kept) in eval mode; ``x`` is an
    ``(N, 3, H, W)`` array or an image, as for every method (see
    :func:`npmobilenet.explain.inputs.as_batch`).
    """
    from .inputs import as_batch, check_eval_mode

    check_eval_mode(model, "activations")
    names = [layers] if isinstance(layers, str) else list(layers)
    with no_grad():
        return forward_keeping(model, as_batch(model, x), names)[1]


def backward_to(model, dlogits, name):
    """``dL/dA``, ``A`` the output of the layer ``name``, given ``dlogits = dL/dlogits``.

    Runs the backward passes of the layers that come after ``name`` in the forward pass, from
    the logits down, using the caches of the last forward pass (run with gradients enabled).
    At each level of the tree the layers after the child on the path run their ``backward``
    in reverse order (:func:`npmobilenet.nn.backward_chain`); inside an inverted residual
    block nothing runs, since the sum ``conv(x) + x`` passes ``dout`` unchanged to ``conv``'s
    output. Parameters' ``.grad`` are added to as in any backward pass (the methods freeze
    them first: see :func:`npmobilenet.explain.inputs.explaining`).
    """
    dout = dlogits
    for steps, position in layer_path(model, name):
        after = [child for _, child in steps[position + 1:]]
        if after:
            dout = nn.backward_chain(after, dout)
    return np.ascontiguousarray(dout)


def _is_inside(name, prefix):
    return prefix == "" or name.startswith(prefix + ".")


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _what_is_there(prefix, names):
    """``"'features' has features.0 .. features.18"``: the names a container offers, for an error message."""
    where = f"{prefix!r}" if prefix else "the model"
    if not names:
        return f"{where} is a single layer, with nothing inside"
    full = [_join(prefix, name) for name in names]
    if len(full) > 4 and all(name.isdigit() for name in names):
        return f"{where} has {full[0]} .. {full[-1]}"
    return f"{where} has " + ", ".join(full)
