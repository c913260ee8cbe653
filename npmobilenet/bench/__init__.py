"""``npmobilenet bench``: how fast, and how hungry for memory, is the NumPy network next to PyTorch's?

What is measured
----------------

Three kinds of rows, each timed for npmobilenet ("numpy") and for torchvision's MobileNetV2
("torch") with the same weights, on the same input arrays:

* **inference**: the whole network in eval mode under ``no_grad()`` (``torch.no_grad()`` on
  the torch side), on 224x224 images, at batch 1, 8 and 32. A third side, **ONNX Runtime**
  ("ort"), runs torchvision's model exported in memory by ``torch.onnx`` (see
  :mod:`~npmobilenet.bench.onnx`): what people deploy a MobileNetV2 with on a CPU, the bar
  beyond PyTorch's eager mode. It needs ``pip install ".[bench]"``; without it its columns
  say n/a and the header says why;
* **training step**: train-mode forward, cross-entropy loss, backward, a plain SGD update
  (``p.data -= lr * p.grad`` here, ``torch.optim.SGD`` there) and ``zero_grad``, at batch 8 and 32;
  both sides compute the gradient of the input too, since ``model.backward`` returns it;
* **layers**: forward + backward (training mode, a random upstream gradient) of each kind of
  layer at the shapes it has inside MobileNetV2: the stem conv, a 1x1 expansion and a 1x1
  projection, depthwise convs at stride 1 and 2, batch norm, ReLU6, global average pooling
  and the classifier. The torch layer gets a copy of the NumPy layer's weights. The NumPy
  layer gets its input (and upstream gradient) stored channels-last, as it has them inside
  the network, so that the row times the layer and not a change of memory order.

How
---

* **Same process, same threads.** Both libraries run in this one Python process, one after the
  other, with the same number of threads: ``torch.set_num_threads(N)`` for torch, and
  ``threadpoolctl.threadpool_limits(N)`` for the BLAS library under NumPy (when threadpoolctl
  is installed; otherwise the BLAS threads are whatever the environment says).
* **Warm-up, then medians.** Each case first runs a few untimed warm-up times (first calls pay
  for memory allocation, lazy initialisation and cold caches), then ``repeats`` times under
  ``time.perf_counter``. A row shows the *median* of those samples: unlike the mean, one run
  slowed down by something else on the machine does not move it. All samples go to the JSON.
* **Ratio** = numpy median / torch median: below 1 means numpy is faster; **vs ort** = numpy
  median / ONNX Runtime median.
* **One library at a time.** Before each side of each case the process sleeps 0.2 s, so the
  worker threads of the library that ran last (they spin for a while after their work) are
  idle and do not take the cores from the other library.
* **Memory** is the extra memory one run of the case needs, on top of what the process already
  holds. On Linux: give freed heap back to the operating system (``malloc_trim(0)`` from libc),
  read the resident size ``VmRSS`` from ``/proc/self/status``, reset the kernel's peak counter
  by writing ``5`` to ``/proc/self/clear_refs``, run the case once, then read the peak resident
  size ``VmHWM``: peak = VmHWM - VmRSS before. That sees every allocation, NumPy's and torch's
  alike. Where this is not possible (not Linux, or ``clear_refs`` not writable) NumPy's peak
  comes from :mod:`tracemalloc` (NumPy reports its array buffers to it) and torch's is unknown.
  Before measuring a NumPy model, its layers' caches from the last training step are released
  (a tiny forward under ``no_grad()``), so both sides start from the same state. The memory
  ratio is left out when a side needs under 1 MiB, where page and allocator granularity rule.

The JSON (``--json PATH``)
--------------------------

``{"schema": "npmobilenet-bench/2", "config": {...}, "versions": {...}, "machine": {...},
"threads": {...}, "memory_method": "vmhwm" | "tracemalloc", "torch_available": bool,
"torch_missing_reason": str | null, "onnxruntime_available": bool, "onnxruntime_missing_reason":
str | null, "agreement": {...} | null, "onnx_agreement": {...} | null, "rows": [...],
"total_seconds": s}``, where each row is ``{"case", "kind": "eval" | "train" | "layer", "batch",
"numpy": side, "torch": side | null, "onnxruntime": side | null, "ratio", "onnx_ratio",
"memory_ratio"}`` and a side is ``{"samples_ms": [every timed run], "median_ms",
"per_image_ms", "peak_mib"}``. ``agreement`` (``onnx_agreement``) holds the largest logit
difference of numpy's and torch's (ONNX Runtime's) models on one image, to show they are the
same network.

The parts
---------

* :mod:`~npmobilenet.bench.options`: the settings of a run (:func:`make_config`);
* :mod:`~npmobilenet.bench.cases`: the rows: inference, training step, each layer;
* :mod:`~npmobilenet.bench.timing`: one side of one case: warm-up, timed runs, the row;
* :mod:`~npmobilenet.bench.memory`: peak memory (VmHWM or tracemalloc);
* :mod:`~npmobilenet.bench.machine`: torch if installed, threads, the machine;
* :mod:`~npmobilenet.bench.onnx`: ONNX Runtime, the second reference;
* :mod:`~npmobilenet.bench.limits`: the machine's compute and memory roofs, measured;
* :mod:`~npmobilenet.bench.layer_times`: each layer timed inside the whole network on each side;
* :mod:`~npmobilenet.bench.roofline`: ``--roofline``, with floors, the table and the picture;
* :mod:`~npmobilenet.bench.run`: the whole run (:func:`run_bench`), the JSON-ready report;
* :mod:`~npmobilenet.bench.report`: the report as a table (:func:`format_report`);
* :mod:`~npmobilenet.bench.profiling`: ``--profile``, where npmobilenet's time goes.

Only NumPy and the standard library are imported at import time: torch, torchvision,
onnxruntime and threadpoolctl are imported inside the functions that need them.
"""

from .cases import EVAL_CASE, LAYER_CASES, TRAIN_CASE
from .limits import measure_limits
from .memory import MIB, measure_peak_mib, memory_method
from .options import QUICK, BenchConfig, make_config, parse_batches, parse_count
from .profiling import profile_numpy
from .report import COLUMNS, format_report
from .roofline import KINDS as ROOFLINE_KINDS
from .roofline import format_roofline, plot_roofline, run_roofline
from .run import SCHEMA, run_bench

__all__ = [  # noqa: RUF022 (in reading order)
    "BenchConfig", "make_config", "parse_batches", "parse_count", "run_bench", "format_report",
    "measure_peak_mib", "memory_method", "profile_numpy", "LAYER_CASES",
    # the constants a reader of a report (and the tests) need: row names, schema, columns
    "EVAL_CASE", "TRAIN_CASE", "QUICK", "SCHEMA", "COLUMNS", "MIB",
]
