"""The whole run: every case of a config, with the versions, threads and machine; the report."""

import contextlib
import os
import time

import numpy as np

from .. import __version__
from ..grad_mode import no_grad
from .cases import (
    EVAL_CASE,
    IMAGE_SIZE,
    LAYER_CASES,
    TRAIN_CASE,
    bench_eval,
    bench_layer,
    bench_train,
    make_images,
    make_numpy_model,
    make_torch_model,
)
from .machine import describe_machine, import_torch, limit_threads
from .memory import memory_method
from .onnx import export_onnx, import_onnxruntime, make_session, onnx_agreement
from .timing import show_progress

__all__ = ["SCHEMA", "run_bench", "same_model_check"]

SCHEMA = "npmobilenet-bench/2"


def run_bench(config):
    """Run every case of ``config``; return the report (a JSON-ready dict, see ``format_report``)."""
    started = time.perf_counter()
    machine = describe_machine()  # the load average before this run adds its own
    model, weights_text = make_numpy_model(config.weights)  # bad weights fail here, before any timing
    method = memory_method(config.memory)
    torch, torchvision, torch_missing = import_torch()
    threads = config.threads or (torch.get_num_threads() if torch is not None else os.cpu_count() or 1)
    with contextlib.ExitStack() as stack:
        thread_info = limit_threads(stack, threads, torch)
        torch_model = None
        if torch is not None:
            state_dict = model.state_dict()
            torch_model = make_torch_model(torchvision, torch, state_dict, state_dict["classifier.1.weight"].shape[0])
        agreement = same_model_check(model, torch_model, torch)
        onnxruntime, session, onnx_missing = onnx_session(torch, torch_model, threads)
        onnx_check = onnx_agreement(session, _logits(model, make_images(1)), make_images(1)) if session else None
        rows = _run_cases(config, model, torch_model, torch, method, session)
    return {
        "schema": SCHEMA,
        "config": _config_dict(config, threads, weights_text),
        "versions": {"npmobilenet": __version__, "numpy": np.__version__,
                     "torch": getattr(torch, "__version__", None),
                     "torchvision": getattr(torchvision, "__version__", None),
                     "onnxruntime": getattr(onnxruntime, "__version__", None)},
        "torch_available": torch is not None,
        "torch_missing_reason": torch_missing,
        "onnxruntime_available": session is not None,
        "onnxruntime_missing_reason": onnx_missing,
        "threads": thread_info,
        "machine": machine,
        "memory_method": method,
        "agreement": agreement,
        "onnx_agreement": onnx_check,
        "rows": rows,
        "total_seconds": time.perf_counter() - started,
    }


def onnx_session(torch, torch_model, threads):
    """``(onnxruntime, session, None)``: torchvision's model exported and loaded; or ``(module or None, None, reason)``."""
    onnxruntime, missing = import_onnxruntime()
    if onnxruntime is None:
        return None, None, missing
    if torch_model is None:
        return onnxruntime, None, "the model is exported from torchvision's, and torch is not available"
    model_bytes = export_onnx(torch, torch_model, torch.from_numpy(make_images(1)))
    return onnxruntime, make_session(onnxruntime, model_bytes, threads), None


def _logits(model, images):
    """npmobilenet's logits for ``images`` in eval mode."""
    model.eval()
    with no_grad():
        return model(images)


def same_model_check(model, torch_model, torch):
    """Both models on one image in eval mode: the largest logit difference (None without torch).

    ``relative_diff`` is that difference over the largest logit: a small number (about 1e-6)
    shows that the two sides run the same network with the same weights.
    """
    if torch_model is None:
        return None
    images = make_images(1)
    model.eval()
    torch_model.eval()
    with no_grad():
        logits = model(images)
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(images)).numpy()
    difference, largest = float(np.max(np.abs(logits - torch_logits))), float(np.max(np.abs(torch_logits)))
    return {"batch": 1, "max_abs_logit_diff": difference, "max_abs_logit": largest,
            "relative_diff": difference / largest if largest > 0 else difference}


def _run_cases(config, model, torch_model, torch, method, session):
    """Every row, in order: inference (with ONNX Runtime's side when ``session``), training steps, layers."""
    rows = []
    for batch in config.eval_batches:
        show_progress(f"{EVAL_CASE}, batch {batch}")
        rows.append(bench_eval(model, torch_model, torch, batch, config, method, session))
    for batch in config.train_batches:
        show_progress(f"{TRAIN_CASE}, batch {batch}")
        rows.append(bench_train(model, torch_model, torch, batch, config, method))
    if config.layer_batch is not None:
        for name, make_layer, input_shape in LAYER_CASES:
            show_progress(f"{name}, batch {config.layer_batch}")
            rows.append(bench_layer(name, make_layer, input_shape, torch, config, method))
    return rows


def _config_dict(config, threads, weights_text):
    """The settings of a run, for the JSON and the header."""
    return {
        "eval_batches": list(config.eval_batches), "train_batches": list(config.train_batches),
        "layer_batch": config.layer_batch, "layers": config.layer_batch is not None,
        "repeats": dict(config.repeats), "warmup": config.warmup, "threads": threads,
        "weights": weights_text, "quick": config.quick, "learning_rate": config.learning_rate,
        "image_size": IMAGE_SIZE, "statistic": "median", "memory": config.memory,
    }
