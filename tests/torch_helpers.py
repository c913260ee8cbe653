"""One helper that runs the same op in NumPy and in PyTorch and compares values and gradients.

Tolerances are stated once, here: relative to the largest magnitude of the expected array,
about 1e-10 in float64 and 1e-4 in float32.
"""

import numpy as np

TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


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


def compare_with_torch(torch, numpy_forward, numpy_backward, torch_forward, inputs, dtype, seed=0):
    """Run an op both ways on the same inputs and a random upstream gradient; compare everything.

    ``inputs`` is a list of arrays (or None for an absent bias); each is cast to ``dtype``.
    ``numpy_forward(*inputs)`` returns ``(out, cache)``; ``numpy_backward(dout, cache)`` returns a
    gradient for each input, in order (None where the input is None, or a single array for an op
    of one input). ``torch_forward(*tensors)`` is the PyTorch op. The output and the gradient of
    every input are compared. Returns ``(numpy_out, torch_out)`` for further checks.
    """
    arrays = [None if a is None else np.asarray(a, dtype=dtype) for a in inputs]
    out, cache = numpy_forward(*arrays)
    dout = upstream_gradient(np.shape(out), seed).astype(dtype)
    grads = numpy_backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)

    tensors = [to_torch(torch, a, requires_grad=True) for a in arrays]
    torch_out = torch_forward(*tensors)
    torch_out.backward(torch.from_numpy(dout))

    assert_close(out, torch_out.detach().numpy(), dtype, "forward output")
    assert len(grads) == len(arrays), f"backward returned {len(grads)} gradients for {len(arrays)} inputs"
    for index, (grad, tensor) in enumerate(zip(grads, tensors)):
        if tensor is None:
            assert grad is None, f"gradient {index}: expected None for an absent input"
        else:
            assert_close(grad, tensor.grad.numpy(), dtype, f"gradient of input {index}")
    return out, torch_out


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


def finite_difference_check(numpy_forward, numpy_backward, inputs, seed=0, tolerance=1e-7):
    """Check every gradient of a pair against central differences, in float64, random ``dout``.

    Same calling convention as :func:`compare_with_torch`. Returns the relative errors.
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
