"""One helper a level that runs the same computation in NumPy and in PyTorch and compares everything.

:func:`compare_pair` checks the versions of one forward/backward pair against PyTorch's op;
:func:`compare_module` checks a module of ``npmobilenet.nn`` (a layer, or the whole network)
against its torch twin (``twins.py`` builds the twins).

Tolerances are stated once, here: relative to the largest magnitude of the expected array,
about 1e-10 in float64 and 1e-4 in float32. Through the fifty-odd layers of the whole network
rounding adds up, so a network is held to about 1e-8 in float64 (1e-4 in float32 still).
"""

import contextlib
import itertools

import numpy as np

from npmobilenet import nn

TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
NETWORK_TOLERANCE = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-4}


def upstream_gradient(shape, seed):
    """A random ``dout`` from its own stream: ``default_rng([UPSTREAM, seed])`` can never equal the
    ``default_rng(seed)`` that made the inputs, so ``dout`` is never a copy of an input."""
    return np.random.default_rng([0xD0D0, seed]).standard_normal(shape)


def assert_close(actual, expected, dtype, what, tolerance=None):
    """``actual`` has ``dtype`` and equals ``expected`` to the dtype's tolerance (or ``tolerance[dtype]``)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    tolerance = (TOLERANCE if tolerance is None else tolerance)[np.dtype(dtype)]
    scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale, err_msg=what)


def to_torch(torch, array, requires_grad=False):
    """A float or integer array as a torch tensor (a copy, so in-place updates stay separate)."""
    if array is None:
        return None
    tensor = torch.from_numpy(np.array(array))
    return tensor.requires_grad_(requires_grad)


def compare_pair(torch, pairs, torch_forward, inputs, dtype, seed=0):
    """Run every version of one operation and PyTorch on the same inputs; compare everything.

    ``pairs`` maps a label (``"loops"``, ``"plain"``, ``"fast"``, ...) to ``(forward,
    backward)``: ``forward(*inputs)`` returns ``(out, cache)`` and ``backward(dout, cache)`` a
    gradient for each input, in order (None where the input is None; a single array for an op
    of one input). ``torch_forward(*tensors)`` is the PyTorch op. Every version's output and
    every gradient must equal PyTorch's to the dtype's tolerance, and so equal one another:
    the same random upstream gradient goes into every backward. ``inputs`` are cast to
    ``dtype``; each version gets its own copies, so an op that writes into an input cannot
    change what the next one sees. Returns ``{label: (out, grads)}``, with ``"torch"`` too.
    """
    arrays = [None if a is None else np.asarray(a, dtype=dtype) for a in inputs]
    tensors = [to_torch(torch, a, requires_grad=True) for a in arrays]
    torch_out = torch_forward(*tensors)
    dout = upstream_gradient(tuple(torch_out.shape), seed).astype(dtype)
    torch_out.backward(torch.from_numpy(dout))
    expected_grads = tuple(None if t is None else t.grad.numpy() for t in tensors)
    results = {"torch": (torch_out.detach().numpy(), expected_grads)}
    for label, (forward, backward) in pairs.items():
        out, cache = forward(*[None if a is None else a.copy() for a in arrays])
        grads = backward(dout.copy(), cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        assert_close(out, results["torch"][0], dtype, f"{label}: forward output")
        assert len(grads) == len(arrays), f"{label}: backward returned {len(grads)} gradients for {len(arrays)} inputs"
        for index, (grad, expected) in enumerate(zip(grads, expected_grads)):
            if expected is None:
                assert grad is None, f"{label}: gradient {index}: expected None for an absent input"
            else:
                assert_close(grad, expected, dtype, f"{label}: gradient of input {index}")
        results[label] = (out, grads)
    return results


PARTS = ("output", "dx", "gradients", "buffers")


def compare_module(ours, theirs, x, *, seed=0, tolerance=None, compare=PARTS, negligible_gradients=False,
                   pin_activations=False):
    """One forward and one backward through our module and its torch twin; compare what ``compare`` names.

    ``ours`` is an ``npmobilenet.nn.Module`` and ``theirs`` its torch twin: the same weights, the
    same mode. ``x`` is the input in our dtype, the dtype every comparison is made in;
    ``theirs`` gets ``x`` cast to its own dtype, which may be wider (a float64 twin gives the
    exact values a float32 module is compared with). Both backward passes get the same random
    upstream gradient, :func:`upstream_gradient` of ``seed``. Nothing is zeroed first, so
    gradients accumulate in both, as PyTorch's do. ``compare`` names the parts that must be
    equal, to ``tolerance`` (default :data:`TOLERANCE`):

    * ``"output"``: the forward output;
    * ``"dx"``: dL/dx;
    * ``"gradients"``: every parameter's ``.grad``, by name: the same names in the same order;
    * ``"buffers"``: after the step, the whole state dict, the same keys in the same order:
      running statistics to tolerance, integers (``num_batches_tracked``) exactly.

    Without ``"dx"`` and ``"gradients"`` no backward runs. In training mode the twin's dropout
    multiplies by our mask (no seed makes torch draw the same one). For the whole network:

    * ``negligible_gradients``: a parameter whose twin gradient is below ``tolerance`` times the
      largest gradient of the module is zero in exact arithmetic and the twin's value is
      rounding noise (see ``test_mobilenetv2.py``); ours must then be as negligible, rather than
      equal relative to that noise.
    * ``pin_activations``: the twin's ReLU and ReLU6 take their gradient masks from our forward,
      so that a float32 module can be held to a float64 twin where a pre-activation within
      rounding of a kink went the other way (see ``test_mobilenetv2.py``).

    Returns ``(out, dx)``, ours (``dx`` None when no backward ran).
    """
    import torch

    unknown = set(compare) - set(PARTS)
    assert not unknown, f"compare: unknown parts {sorted(unknown)}, expected some of {PARTS}"
    assert ours.training == theirs.training, f"ours training={ours.training}, the twin's {theirs.training}"
    tolerance = TOLERANCE if tolerance is None else tolerance
    dtype, twin_dtype = x.dtype, _float_dtype(theirs, x.dtype)
    tx = to_torch(torch, x.astype(twin_dtype), requires_grad=True)
    out = ours(x)
    backward = "dx" in compare or "gradients" in compare
    dout = upstream_gradient(np.shape(out), seed).astype(dtype)
    dx = ours.backward(dout.copy()) if backward else None
    with _pinned_to_ours(torch, ours, theirs, twin_dtype, pin_activations):
        torch_out = theirs(tx)
    if backward:
        torch_out.backward(torch.from_numpy(dout.astype(twin_dtype)))

    if "output" in compare:
        assert_close(out, torch_out.detach().numpy(), dtype, "output", tolerance)
    if "dx" in compare:
        assert_close(dx, tx.grad.numpy(), dtype, "dL/dx", tolerance)
    if "gradients" in compare:
        _assert_gradients_match(ours, theirs, dtype, tolerance, negligible_gradients)
    if "buffers" in compare:
        _assert_state_matches(ours, theirs, dtype, tolerance)
    return out, dx


def _float_dtype(torch_module, default):
    """The NumPy dtype of the module's floating-point parameters and buffers (``default`` when it has none)."""
    for tensor in itertools.chain(torch_module.parameters(), torch_module.buffers()):
        if tensor.is_floating_point():
            return tensor.detach().numpy().dtype
    return np.dtype(default)


def _assert_gradients_match(ours, theirs, dtype, tolerance, negligible):
    mine, twins = list(ours.named_parameters()), list(theirs.named_parameters())
    assert [name for name, _ in mine] == [name for name, _ in twins], "parameter names or their order differ"
    limit = tolerance[np.dtype(dtype)] * max((float(np.max(np.abs(p.grad.numpy()))) for _, p in twins), default=0.0)
    for (name, parameter), (_, twin) in zip(mine, twins):
        expected = twin.grad.numpy()
        if negligible and np.max(np.abs(expected)) <= limit:
            found = float(np.max(np.abs(parameter.grad)))
            assert found <= limit, f"grad of {name}: {found:.2e}, the twin's is ~0 (rounding noise)"
        else:
            assert_close(parameter.grad, expected, dtype, f"grad of {name}", tolerance)


def _assert_state_matches(ours, theirs, dtype, tolerance):
    mine, twins = ours.state_dict(), {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    assert list(mine) == list(twins), "state_dict keys or their order differ"
    for key, expected in twins.items():
        if expected.dtype.kind == "f":
            assert_close(mine[key], expected, dtype, f"state {key}", tolerance)
        else:
            assert mine[key].dtype == expected.dtype, f"state {key}: dtype {mine[key].dtype}, twin's {expected.dtype}"
            np.testing.assert_array_equal(mine[key], expected, err_msg=f"state {key}")


def _matching(ours, theirs, our_types, twin_types):
    """The modules of these types in ``ours`` and in ``theirs``, paired in order."""
    mine = [m for m in ours.modules() if isinstance(m, our_types)]
    twins = [m for m in theirs.modules() if isinstance(m, twin_types)]
    assert len(mine) == len(twins), f"{len(mine)} of {our_types} in ours, {len(twins)} in the twin"
    return zip(mine, twins)


@contextlib.contextmanager
def _pinned_to_ours(torch, ours, theirs, twin_dtype, activations):
    """Inside: the twin's dropout multiplies by our last mask; with ``activations``, its ReLU and ReLU6
    take their backward masks from ours."""
    forwards = []
    for dropout, twin in _matching(ours, theirs, nn.Dropout, torch.nn.Dropout):
        (mask,) = dropout.cache
        if mask is not None:
            forwards.append((twin, _multiplied_by(torch.from_numpy(mask.astype(twin_dtype)))))
    if activations:
        for activation, twin in _matching(ours, theirs, (nn.ReLU6, nn.ReLU), (torch.nn.ReLU6, torch.nn.ReLU)):
            upper = 6.0 if isinstance(twin, torch.nn.ReLU6) else None
            forwards.append((twin, _pinned_activation(torch, activation.cache.astype(twin_dtype), upper)))
    for twin, forward in forwards:
        twin.forward = forward
    try:
        yield
    finally:
        for twin, _ in forwards:
            del twin.forward


def _multiplied_by(mask):
    return lambda x: x * mask


def _pinned_activation(torch, mask, upper):
    """A torch ReLU6 (``upper=6``) or ReLU (``upper=None``) whose backward passes the gradient where ``mask`` is 1."""

    class Pinned(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, mask):
            ctx.save_for_backward(mask)
            return x.clamp(0, upper)

        @staticmethod
        def backward(ctx, grad):
            (mask,) = ctx.saved_tensors
            return grad * mask, None

    mask = torch.from_numpy(mask)
    return lambda x: Pinned.apply(x, mask)


def finite_difference_check(numpy_forward, numpy_backward, inputs, seed=0, tolerance=1e-7):
    """Check every gradient of a pair against central differences, in float64, random ``dout``.

    Same calling convention as one pair of :func:`compare_pair`. Returns the relative errors.
    """
    from npmobilenet.gradcheck import numerical_gradient, relative_error

    arrays = [None if a is None else np.array(a, dtype=np.float64) for a in inputs]
    out, cache = numpy_forward(*arrays)
    dout = upstream_gradient(np.shape(out), seed)
    grads = numpy_backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    errors = []
    for index, array in enumerate(arrays):
        if array is None:
            continue
        numeric = numerical_gradient(lambda _: numpy_forward(*arrays)[0], array, dout)
        error = relative_error(grads[index], numeric)
        assert error < tolerance, f"gradient of input {index}: relative error {error:.2e} against finite differences"
        errors.append(error)
    return errors
