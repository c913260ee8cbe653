"""``npmobilenet bench``: how fast, and how hungry for memory, is the NumPy network next to PyTorch's?

What is measured
----------------

Three kinds of rows, each timed for npmobilenet ("numpy") and for torchvision's MobileNetV2
("torch") with the same weights, on the same input arrays:

* **inference**: the whole network in eval mode under ``no_grad()`` (``torch.no_grad()`` on
  the torch side), on 224x224 images, at batch 1, 8 and 32;
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
* **Ratio** = numpy median / torch median: below 1 means numpy is faster.
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

``{"schema": "npmobilenet-bench/1", "config": {...}, "versions": {...}, "machine": {...},
"threads": {...}, "memory_method": "vmhwm" | "tracemalloc", "torch_available": bool,
"torch_missing_reason": str | null, "agreement": {...} | null, "rows": [...], "total_seconds": s}``,
where each row is ``{"case", "kind": "eval" | "train" | "layer", "batch", "numpy": side,
"torch": side | null, "ratio", "memory_ratio"}`` and a side is ``{"samples_ms": [every timed
run], "median_ms", "per_image_ms", "peak_mib"}``. ``agreement`` holds the largest logit
difference of the two models on one image, to show they are the same network.

Only NumPy and the standard library are imported at import time: torch, torchvision and
threadpoolctl are imported inside the functions that need them.
"""

import contextlib
import ctypes
import ctypes.util
import gc
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from . import __version__, nn
from .functional import channels_last
from .grad_mode import no_grad
from .models import MobileNetV2, mobilenet_v2

__all__ = [  # noqa: RUF022 (in reading order)
    "BenchConfig", "make_config", "parse_batches", "parse_count", "run_bench", "format_report",
    "measure_peak_mib", "memory_method", "profile_numpy", "LAYER_CASES",
]

DEFAULT_EVAL_BATCHES = (1, 8, 32)
DEFAULT_TRAIN_BATCHES = (8, 32)
DEFAULT_LAYER_BATCH = 8
DEFAULT_REPEATS = {"eval": 5, "train": 3, "layer": 5}
DEFAULT_WARMUP = 1
QUICK = {"eval_batches": (1, 8), "train_batches": (8,), "layer_batch": 2,
         "repeats": {"eval": 3, "train": 2, "layer": 3}, "warmup": 1}
LEARNING_RATE = 0.01
# A pause before each side of each case. A threaded library's workers keep spinning on the
# cores for a while after their last task (OpenBLAS for up to ~0.1 s); without the pause
# they would steal the cores from the other library's first runs and make it look slower.
SETTLE_SECONDS = 0.2
# Below this, a peak is too close to the allocator's granularity for a ratio to mean anything.
MIN_MIB_FOR_RATIO = 1.0
IMAGE_SIZE = 224
MIB = 1024 * 1024
EVAL_CASE = "inference (eval)"
TRAIN_CASE = "training step"
SCHEMA = "npmobilenet-bench/1"


# --- options ---------------------------------------------------------------------------------


def parse_batches(text):
    """``"1,8,32"`` -> ``(1, 8, 32)``: distinct positive integers; ``ValueError`` otherwise."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"expected a comma-separated list of batch sizes such as 1,8,32, got {text!r}")
    batches = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"expected a comma-separated list of positive integers such as 1,8,32, "
                             f"got {text!r}") from None
        if value < 1:
            raise ValueError(f"expected batch sizes of at least 1, got {value} in {text!r}")
        if value in batches:
            raise ValueError(f"batch size {value} is listed twice in {text!r}")
        batches.append(value)
    return tuple(batches)


def parse_count(text, minimum=1):
    """``"5"`` -> ``5``: an integer of at least ``minimum``; ``ValueError`` otherwise."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"expected an integer of at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run depends on; :func:`make_config` fills in the defaults and checks it."""

    eval_batches: tuple
    train_batches: tuple
    layer_batch: object  # an int, or None for no layer rows
    repeats: dict  # timed runs per case, by kind: "eval", "train", "layer"
    warmup: int
    threads: object  # an int, or None for torch's current count (the number of cores)
    weights: object  # a registry name or a path, or None for MobileNetV2(seed=0)
    quick: bool = False
    memory: str = "auto"  # "auto", "vmhwm" or "tracemalloc"
    learning_rate: float = LEARNING_RATE


def make_config(eval_batches=None, train_batches=None, layers=True, layer_batch=None, repeats=None,
                warmup=None, threads=None, weights=None, quick=False, memory="auto"):
    """A checked :class:`BenchConfig`; ``None`` means the default (the ``--quick`` one if ``quick``).

    ``repeats`` (one int) replaces every kind's default. Raises ``ValueError`` for a bad value.
    """
    base = QUICK if quick else {"eval_batches": DEFAULT_EVAL_BATCHES, "train_batches": DEFAULT_TRAIN_BATCHES,
                                "layer_batch": DEFAULT_LAYER_BATCH, "repeats": DEFAULT_REPEATS,
                                "warmup": DEFAULT_WARMUP}
    config = BenchConfig(
        eval_batches=tuple(base["eval_batches"] if eval_batches is None else eval_batches),
        train_batches=tuple(base["train_batches"] if train_batches is None else train_batches),
        layer_batch=(base["layer_batch"] if layer_batch is None else layer_batch) if layers else None,
        repeats=dict(base["repeats"]) if repeats is None else dict.fromkeys(DEFAULT_REPEATS, repeats),
        warmup=base["warmup"] if warmup is None else warmup,
        threads=threads, weights=weights, quick=quick, memory=memory,
    )
    _check_config(config)
    return config


def _check_config(config):
    """``ValueError`` naming the first bad value of ``config``."""
    for name in ("eval_batches", "train_batches"):
        values = getattr(config, name)
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name}: expected one or more positive integers, got {values!r}")
    if config.layer_batch is not None and config.layer_batch < 1:
        raise ValueError(f"layer_batch: expected a positive integer, got {config.layer_batch}")
    if any(count < 1 for count in config.repeats.values()):
        raise ValueError(f"repeats: expected at least 1 timed run, got {config.repeats}")
    if config.warmup < 0:
        raise ValueError(f"warmup: expected 0 or more warm-up runs, got {config.warmup}")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {config.threads}")
    if config.memory not in ("auto", "vmhwm", "tracemalloc"):
        raise ValueError(f"memory: expected 'auto', 'vmhwm' or 'tracemalloc', got {config.memory!r}")


# --- memory ----------------------------------------------------------------------------------


def _read_status_kib(key):
    """A ``kB`` figure (``VmRSS``, ``VmHWM``) from ``/proc/self/status``."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {key} line")


def _reset_peak_rss():
    """Set the kernel's peak resident size (``VmHWM``) back to the current resident size."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def _malloc_trim():
    """Give the freed parts of the C heap back to the operating system (glibc), so they are not counted."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass  # not glibc: nothing to trim with


def memory_method(requested="auto"):
    """``"vmhwm"`` when the peak resident size can be reset and read here, else ``"tracemalloc"``."""
    if requested == "tracemalloc":
        return "tracemalloc"
    try:
        if not sys.platform.startswith("linux"):
            raise OSError("not Linux")
        _read_status_kib("VmHWM")
        _reset_peak_rss()
        return "vmhwm"
    except OSError as error:
        if requested == "vmhwm":
            raise OSError(f"cannot measure the peak resident size here: {error}") from None
        return "tracemalloc"


def measure_peak_mib(step, method):
    """Run ``step()`` once; the extra memory it needed at its peak, in MiB.

    ``"vmhwm"``: peak resident size minus the resident size before (every allocation counts).
    ``"tracemalloc"``: the peak of what Python and NumPy allocated (not torch's memory).
    """
    _malloc_trim()
    if method == "vmhwm":
        before = _read_status_kib("VmRSS")
        _reset_peak_rss()
        step()
        return max(0, _read_status_kib("VmHWM") - before) / 1024
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        step()
        return max(0, tracemalloc.get_traced_memory()[1] - before) / MIB
    finally:
        if started:
            tracemalloc.stop()


# --- threads, versions, machine ----------------------------------------------------------------


def _import_torch():
    """``(torch, torchvision, None)``, or ``(None, None, reason)`` when they cannot be imported."""
    try:
        import torch
        import torchvision
    except (ImportError, OSError) as error:
        return None, None, f"{type(error).__name__}: {error}"
    return torch, torchvision, None


def _limit_threads(stack, threads, torch):
    """Set torch's and NumPy's BLAS thread counts (undone when ``stack`` closes); describe them."""
    if torch is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        stack.callback(torch.set_num_threads, previous)
    try:
        import threadpoolctl
    except ImportError:
        value = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
        return {"torch": torch.get_num_threads() if torch is not None else None, "blas": value,
                "blas_method": "environment (threadpoolctl not installed, so not set)", "blas_libraries": []}
    stack.enter_context(threadpoolctl.threadpool_limits(limits=threads, user_api="blas"))
    blas = [info for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
    counts = sorted({info["num_threads"] for info in blas})
    return {
        "torch": torch.get_num_threads() if torch is not None else None,
        "blas": counts[0] if len(counts) == 1 else (counts or "unknown"),
        "blas_method": "threadpoolctl",
        "blas_libraries": [f"{info.get('internal_api')} {info.get('version')}: {info['num_threads']} threads"
                           for info in blas],
    }


def _machine():
    """Processor, cores, operating system, Python and load average (1, 5, 15 min) of this machine."""
    model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(value, 2) for value in os.getloadavg()]  # other work on the machine skews timings
    return {
        "load_average": load,
        "processor": platform.processor() or platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# --- the models and the inputs -------------------------------------------------------------------


def _numpy_model(weights):
    """``(model, description)``: MobileNetV2(seed=0), or the weights ``resolve_weights`` finds."""
    if weights is None:
        return MobileNetV2(seed=0), "random, MobileNetV2(seed=0)"
    return mobilenet_v2(weights), str(weights)


def _torch_model(torchvision, torch, state_dict, num_classes):
    """torchvision's MobileNetV2 holding ``state_dict`` (NumPy arrays)."""
    model = torchvision.models.mobilenet_v2(num_classes=num_classes)
    model.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in state_dict.items()})
    return model


def _images(batch):
    """The input every side sees at this batch size: standard normal, seed 0, float32 NCHW."""
    return np.random.default_rng(0).standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)


def _release_caches(model):
    """Drop the caches a NumPy model keeps from its last training forward (a tiny eval forward, no_grad)."""
    was_training = model.training
    model.eval()
    with no_grad():
        model(np.zeros((1, 3, 32, 32), dtype=np.float32))
    model.train(was_training)


# --- one case: warm-up, timed runs, memory -----------------------------------------------------------


def time_step(step, warmup, repeats):
    """Run ``step()`` ``warmup`` times untimed, then ``repeats`` times; the samples in milliseconds."""
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def _measure_side(step, config, kind, method, before_memory=None, count_memory=True):
    """Samples, median and peak memory of one side of one case (after a pause: see SETTLE_SECONDS)."""
    time.sleep(SETTLE_SECONDS)
    samples = time_step(step, config.warmup, config.repeats[kind])
    peak = None
    if count_memory:
        if before_memory is not None:
            before_memory()
        peak = measure_peak_mib(step, method)
    return {"samples_ms": samples, "median_ms": statistics.median(samples), "peak_mib": peak}


def _row(name, kind, batch, numpy_side, torch_side):
    """A result row: both sides, per-image figures, and the numpy/torch ratios (None when unknown)."""
    for side in (numpy_side, torch_side):
        if side is not None:
            side["per_image_ms"] = side["median_ms"] / batch
    ratio = numpy_side["median_ms"] / torch_side["median_ms"] if torch_side else None
    memory_ratio = None
    peaks = (numpy_side["peak_mib"], torch_side["peak_mib"] if torch_side else None)
    if all(peak is not None and peak >= MIN_MIB_FOR_RATIO for peak in peaks):
        memory_ratio = numpy_side["peak_mib"] / torch_side["peak_mib"]
    return {"case": name, "kind": kind, "batch": batch, "numpy": numpy_side, "torch": torch_side,
            "ratio": ratio, "memory_ratio": memory_ratio}


def _progress(text):
    """A progress line on stderr, only when a person watches it (a terminal)."""
    if sys.stderr.isatty():
        print(f"  bench: {text}", file=sys.stderr, flush=True)


def bench_eval(model, torch_model, torch, batch, config, method):
    """The inference row at ``batch``: eval mode, ``no_grad()`` on both sides."""
    images = _images(batch)
    model.eval()

    def numpy_step():
        with no_grad():
            model(images)

    numpy_side = _measure_side(numpy_step, config, "eval", method, lambda: _release_caches(model))
    torch_side = None
    if torch_model is not None:
        torch_model.eval()
        torch_images = torch.from_numpy(images)

        def torch_step():
            with torch.no_grad():
                torch_model(torch_images)

        torch_side = _measure_side(torch_step, config, "eval", method, count_memory=method == "vmhwm")
    return _row(EVAL_CASE, "eval", batch, numpy_side, torch_side)


def bench_train(model, torch_model, torch, batch, config, method):
    """The training-step row at ``batch``: forward, cross-entropy, backward, SGD update, zero_grad."""
    images, targets = _images(batch), np.arange(batch, dtype=np.int64) % 1000
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

    numpy_side = _measure_side(numpy_step, config, "train", method, lambda: _release_caches(model))
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

        torch_side = _measure_side(torch_step, config, "train", method, count_memory=method == "vmhwm")
    return _row(TRAIN_CASE, "train", batch, numpy_side, torch_side)


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

    numpy_side = _measure_side(numpy_step, config, "layer", method, release)
    torch_side = None
    if torch is not None:
        twin = torch_twin(layer, torch)
        torch_x = torch.from_numpy(x).requires_grad_(True)  # both sides compute dL/dx
        torch_dout = torch.from_numpy(dout)

        def torch_step():
            torch_x.grad = None
            twin(torch_x).backward(torch_dout)

        torch_side = _measure_side(torch_step, config, "layer", method, count_memory=method == "vmhwm")
    return _row(name, "layer", batch, numpy_side, torch_side)


# --- the whole run -----------------------------------------------------------------------------


def run_bench(config):
    """Run every case of ``config``; return the report (a JSON-ready dict, see ``format_report``)."""
    started = time.perf_counter()
    machine = _machine()  # the load average before this run adds its own
    model, weights_text = _numpy_model(config.weights)  # bad weights fail here, before any timing
    method = memory_method(config.memory)
    torch, torchvision, torch_missing = _import_torch()
    threads = config.threads or (torch.get_num_threads() if torch is not None else os.cpu_count() or 1)
    with contextlib.ExitStack() as stack:
        thread_info = _limit_threads(stack, threads, torch)
        torch_model = None
        if torch is not None:
            state_dict = model.state_dict()
            torch_model = _torch_model(torchvision, torch, state_dict, state_dict["classifier.1.weight"].shape[0])
        agreement = same_model_check(model, torch_model, torch)
        rows = _run_cases(config, model, torch_model, torch, method)
    return {
        "schema": SCHEMA,
        "config": _config_dict(config, threads, weights_text),
        "versions": {"npmobilenet": __version__, "numpy": np.__version__,
                     "torch": getattr(torch, "__version__", None),
                     "torchvision": getattr(torchvision, "__version__", None)},
        "torch_available": torch is not None,
        "torch_missing_reason": torch_missing,
        "threads": thread_info,
        "machine": machine,
        "memory_method": method,
        "agreement": agreement,
        "rows": rows,
        "total_seconds": time.perf_counter() - started,
    }


def same_model_check(model, torch_model, torch):
    """Both models on one image in eval mode: the largest logit difference (None without torch).

    ``relative_diff`` is that difference over the largest logit: a small number (about 1e-6)
    shows that the two sides run the same network with the same weights.
    """
    if torch_model is None:
        return None
    images = _images(1)
    model.eval()
    torch_model.eval()
    with no_grad():
        logits = model(images)
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(images)).numpy()
    difference, largest = float(np.max(np.abs(logits - torch_logits))), float(np.max(np.abs(torch_logits)))
    return {"batch": 1, "max_abs_logit_diff": difference, "max_abs_logit": largest,
            "relative_diff": difference / largest if largest > 0 else difference}


def _run_cases(config, model, torch_model, torch, method):
    """Every row, in order: inference, training steps, layers."""
    rows = []
    for batch in config.eval_batches:
        _progress(f"{EVAL_CASE}, batch {batch}")
        rows.append(bench_eval(model, torch_model, torch, batch, config, method))
    for batch in config.train_batches:
        _progress(f"{TRAIN_CASE}, batch {batch}")
        rows.append(bench_train(model, torch_model, torch, batch, config, method))
    if config.layer_batch is not None:
        for name, make_layer, input_shape in LAYER_CASES:
            _progress(f"{name}, batch {config.layer_batch}")
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


# --- where the time goes --------------------------------------------------------------------------


def profile_numpy(config, top=14):
    """Where npmobilenet's time goes: cProfile on one inference and one training step; a text table.

    The model runs at the first batch size of ``config.eval_batches`` (eval, ``no_grad()``) and
    of ``config.train_batches`` (forward, loss, backward), after one warm-up each. Each table
    lists the ``top`` functions by their *own* time (time inside the function itself, not in
    the functions it calls; NumPy's C routines count for the Python function that calls them),
    with their share of the step and their number of calls.
    """
    import cProfile
    import pstats

    model, weights_text = _numpy_model(config.weights)
    criterion = nn.CrossEntropyLoss()

    def inference(images):
        model.eval()
        with no_grad():
            model(images)

    def training_step(images):
        model.train()
        criterion(model(images), np.arange(len(images)) % 1000)
        model.backward(criterion.backward())
        model.zero_grad()

    sections = [(f"npmobilenet {__version__} (numpy {np.__version__}), weights: {weights_text}; "
                 "cProfile, own time per function, one run after a warm-up")]
    for title, step, batch in [("inference (eval, no_grad)", inference, config.eval_batches[0]),
                               ("training step", training_step, config.train_batches[0])]:
        images = _images(batch)
        step(images)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(step, images)
        total_ms = (time.perf_counter() - started) * 1000.0
        rows = sorted(pstats.Stats(profiler).stats.items(), key=lambda item: -item[1][2])[:top]
        sections.append(f"\n{title}, batch {batch}: {total_ms:.0f} ms under the profiler")
        sections.append(f"{'own ms':>8} {'share':>6} {'calls':>6}  function")
        for (path, line, function), (_, calls, own, _, _) in rows:
            where = f"{os.path.basename(path)}:{line}({function})" if line else function
            sections.append(f"{own * 1000.0:8.1f} {own * 100000.0 / total_ms:5.1f}% {calls:6d}  {where}")
    return "\n".join(sections)


# --- the table ---------------------------------------------------------------------------------

COLUMNS = ("case", "batch", "numpy ms", "torch ms", "numpy ms/img", "torch ms/img", "ratio",
           "numpy MiB", "torch MiB", "mem ratio")


def _ms(value):
    """Milliseconds with about three significant digits; "n/a" for None."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _number(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cells(row):
    """The table cells of one result row, as text."""
    numpy_side, torch_side = row["numpy"], row["torch"] or {}
    return (row["case"], str(row["batch"]), _ms(numpy_side["median_ms"]), _ms(torch_side.get("median_ms")),
            _ms(numpy_side["per_image_ms"]), _ms(torch_side.get("per_image_ms")), _number(row["ratio"], 2),
            _number(numpy_side["peak_mib"], 1), _number(torch_side.get("peak_mib"), 1),
            _number(row["memory_ratio"], 2))


def _header_lines(report):
    """What was compared, on what machine, with what settings."""
    config, versions, threads, machine = report["config"], report["versions"], report["threads"], report["machine"]
    if report["torch_available"]:
        torch_text = f"torch {versions['torch']} (torchvision {versions['torchvision']})"
    else:
        torch_text = f"torch not available ({report['torch_missing_reason']}): numpy only, torch columns n/a"
    load = machine["load_average"]
    load_text = f"; load average {load[0]:.2f} at the start (other work skews timings)" if load else ""
    torch_threads = "n/a" if threads["torch"] is None else threads["torch"]
    size, repeats = config["image_size"], config["repeats"]
    if report["memory_method"] == "vmhwm":
        memory = "peak RSS above the RSS before the run (malloc_trim, then VmHWM after clear_refs)"
    else:
        why = "as asked" if config["memory"] == "tracemalloc" else "clear_refs not usable here"
        memory = f"tracemalloc peak ({why}), numpy side only, torch n/a"
    agreement = report["agreement"]
    if agreement:
        same = (f"same model: logits of numpy and torch differ by at most {agreement['relative_diff']:.1e} "
                f"of the largest (batch 1, eval)")
    else:
        same = "same model: not checked (no torch)"
    return [
        f"npmobilenet bench: npmobilenet {versions['npmobilenet']} (numpy {versions['numpy']}) vs {torch_text}",
        (f"machine: {machine['cpu_model'] or machine['processor']}, {machine['cpu_count']} CPUs (os.cpu_count), "
         f"{machine['platform']}, Python {machine['python']}{load_text}"),
        f"threads: torch {torch_threads}, numpy BLAS {threads['blas']} ({threads['blas_method']})",
        f"weights: {config['weights']}; inputs: standard normal (seed 0), {size}x{size}; {same}",
        (f"timing: median of {repeats['eval']} (inference), {repeats['train']} (training), {repeats['layer']} "
         f"(layers) timed runs after {config['warmup']} warm-up, same process, {SETTLE_SECONDS} s pause between "
         "sides; ratio = numpy / torch (below 1: numpy faster)"),
        (f"training step: train-mode forward, cross-entropy, backward (dL/dx included on both sides), SGD "
         f"(lr {config['learning_rate']}), zero_grad; layer rows: forward + backward in training mode, batch {config['layer_batch'] or '-'}"),
        f"memory (MiB): {memory}; mem ratio n/a when a side needs under {MIN_MIB_FOR_RATIO:g} MiB",
    ]


def format_report(report, markdown=False):
    """The report as text: header lines, then one aligned row per case (a Markdown table if ``markdown``)."""
    rows = [_cells(row) for row in report["rows"]]
    header = _header_lines(report)
    if markdown:
        lines = [f"- {line}" for line in header] + [""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 1)) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join([*lines, "", f"total time {report['total_seconds']:.1f} s"])
    widths = [max(len(cells[i]) for cells in [COLUMNS, *rows]) for i in range(len(COLUMNS))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(COLUMNS))
    return "\n".join([*header, "", line(COLUMNS), rule, *(line(cells) for cells in rows), rule,
                      f"total time {report['total_seconds']:.1f} s"])
