"""One side of one case, measured: warm-up, timed runs, peak memory; and the row both sides make."""

import statistics
import sys
import time

from .memory import measure_peak_mib

__all__ = ["MIN_MIB_FOR_RATIO", "SETTLE_SECONDS", "make_row", "measure_side", "show_progress", "time_step"]

# A pause before each side of each case. A threaded library's workers keep spinning on the
# cores for a while after their last task (OpenBLAS for up to ~0.1 s); without the pause
# they would steal the cores from the other library's first runs and make it look slower.
SETTLE_SECONDS = 0.2
# Below this, a peak is too close to the allocator's granularity for a ratio to mean anything.
MIN_MIB_FOR_RATIO = 1.0


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


def measure_side(step, config, kind, method, before_memory=None, count_memory=True):
    """Samples, median and peak memory of one side of one case (after a pause: see SETTLE_SECONDS)."""
    time.sleep(SETTLE_SECONDS)
    samples = time_step(step, config.warmup, config.repeats[kind])
    peak = None
    if count_memory:
        if before_memory is not None:
            before_memory()
        peak = measure_peak_mib(step, method)
    return {"samples_ms": samples, "median_ms": statistics.median(samples), "peak_mib": peak}


def make_row(name, kind, batch, numpy_side, torch_side, onnx_side=None):
    """A result row: every side, per-image figures, and the ratios numpy/torch and numpy/onnxruntime (None when unknown)."""
    for side in (numpy_side, torch_side, onnx_side):
        if side is not None:
            side["per_image_ms"] = side["median_ms"] / batch
    ratio = numpy_side["median_ms"] / torch_side["median_ms"] if torch_side else None
    onnx_ratio = numpy_side["median_ms"] / onnx_side["median_ms"] if onnx_side else None
    memory_ratio = None
    peaks = (numpy_side["peak_mib"], torch_side["peak_mib"] if torch_side else None)
    if all(peak is not None and peak >= MIN_MIB_FOR_RATIO for peak in peaks):
        memory_ratio = numpy_side["peak_mib"] / torch_side["peak_mib"]
    return {"case": name, "kind": kind, "batch": batch, "numpy": numpy_side, "torch": torch_side,
            "onnxruntime": onnx_side, "ratio": ratio, "onnx_ratio": onnx_ratio, "memory_ratio": memory_ratio}


def show_progress(text):
    """A progress line on stderr, only when a person watches it (a terminal)."""
    if sys.stderr.isatty():
        print(f"  bench: {text}", file=sys.stderr, flush=True)
