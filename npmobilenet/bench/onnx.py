"""ONNX Runtime, the second reference: torchvision's model exported with ``torch.onnx``, run on the CPU.

PyTorch's eager mode runs one operator at a time, as npmobilenet does. ONNX Runtime is what
people deploy a MobileNetV2 with on a CPU: it takes the whole graph at once, fuses batch norm
and the activations into the convolutions, and picks a kernel per layer. It is the bar a fast
CPU implementation is measured against.

The export happens in memory (no file is written), from the same torchvision model with the
same weights the torch column runs. The session gets the benchmark's thread count and does
not spin: ONNX Runtime's idle workers otherwise busy-wait for new work, taking the cores from
whatever runs next (the other library's timed runs). Before anything is timed the session's
output is compared with npmobilenet's (:func:`onnx_agreement`).

``pip install ".[bench]"`` brings ``onnxruntime`` and ``onnx`` (which ``torch.onnx`` needs).
Without them, :func:`import_onnxruntime` says why, and the column says it too.
"""

import io
import warnings

import numpy as np

__all__ = ["export_onnx", "import_onnxruntime", "make_session", "onnx_agreement", "run_session"]


def import_onnxruntime():
    """``(onnxruntime, None)``, or ``(None, reason)`` when it (or ``onnx``, for the export) is missing."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
    except (ImportError, OSError) as error:
        return None, f"{type(error).__name__}: {error} (pip install \".[bench]\" brings onnxruntime and onnx)"
    return onnxruntime, None


def export_onnx(torch, module, example):
    """``module`` (in eval mode) as ONNX bytes, its batch size free: ``torch.onnx.export`` into memory.

    The TorchScript exporter (``dynamo=False``) takes about a second for MobileNetV2, the
    newer dynamo one several; both give the same graph for this network. The warnings the
    exporter prints about its own future are silenced.
    """
    buffer = io.BytesIO()
    module = module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
            return buffer.getvalue()
        except TypeError:  # a torch whose export takes no ``dynamo`` argument, or only the new exporter
            program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=({0: "batch"},))
            return program.model_proto.SerializeToString()


def make_session(onnxruntime, model_bytes, threads):
    """An ONNX Runtime CPU session on ``threads`` threads, its workers not spinning, all graph optimisations on."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def run_session(session, x):
    """The session's one output for the float32 input ``x``."""
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def onnx_agreement(session, expected, x):
    """How far ONNX Runtime's output for ``x`` is from ``expected`` (npmobilenet's): a dict like ``same_model_check``'s."""
    output = run_session(session, x)
    difference, largest = float(np.max(np.abs(output - expected))), float(np.max(np.abs(expected)))
    return {"batch": int(x.shape[0]), "max_abs_logit_diff": difference, "max_abs_logit": largest,
            "relative_diff": difference / largest if largest > 0 else difference}
