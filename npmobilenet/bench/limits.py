"""The machine's two limits, measured on this machine with the benchmark's threads: the roofs of the roofline.

* **Compute roof** (GFLOP/s): the rate of NumPy's BLAS at its best work, a large float32
  matrix product. ``C = A @ B`` with ``n x n`` matrices does ``n**3`` multiply-adds, that is
  ``2 * n**3`` floating-point operations (a multiply and an add each); the rate is that over
  the time of the fastest of a few products, after a warm-up. A matrix product reuses every number it
  reads about ``n`` times from the caches, so memory never holds it back: it shows what the
  cores can compute. The BLAS gets the benchmark's thread count (threadpoolctl, see
  :func:`~npmobilenet.bench.machine.limit_threads`).
* **Memory roof** (GB/s): the rate of copying a large array (256 MiB, far beyond any cache, so
  every byte comes from and goes to main memory): the bytes read plus the bytes written over
  the median time. The array is cut into ``threads`` chunks copied at once by ``threads``
  Python threads (``np.copyto`` lets go of the GIL while it copies), since one core alone
  cannot use all of a machine's memory bandwidth. The destination is written once before the
  timed copies, so the operating system's first-touch page faults are not timed. The rate is
  the bytes read plus the bytes written over the time of the fastest copy.

Why the fastest run, where the benchmark's rows take the median: a roof is the most the
machine can do, and other work on the machine can only slow a run down, never speed it up;
so the best run is the best estimate of the limit (STREAM, the standard bandwidth benchmark,
reports its best rate for the same reason). Every sample and the median are kept in the JSON.

These are *measured* limits, not the data sheet's: what this machine gives NumPy right now
(other work on a shared machine lowers them, as it lowers every timing of the benchmark).
"""

import concurrent.futures
import contextlib
import statistics
import time

import numpy as np

from .machine import limit_threads

__all__ = ["COPY_MIB", "MATMUL_SIZE", "measure_bandwidth", "measure_limits", "measure_matmul_rate"]

MATMUL_SIZE = 2048  # 2 * 2048**3 = 17.2 GFLOP a product: a fraction of a second, long enough to time well
COPY_MIB = 256  # 8 times the largest L3 cache of common desktop and server processors' core clusters


def _timed(step, warmup, repeats):
    """``step()`` ``warmup`` times untimed, then ``repeats`` times: ``{"best_ms", "median_ms", "samples_ms"}``."""
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1000.0)
    return {"best_ms": min(samples), "median_ms": statistics.median(samples), "samples_ms": samples}


def measure_matmul_rate(n=MATMUL_SIZE, warmup=1, repeats=3):
    """The compute roof: ``2 n^3`` flops over the best time of a float32 ``n x n`` matmul, in GFLOP/s.

    Runs with whatever BLAS threads are set now (:func:`measure_limits` sets them).
    Returns ``{"gflops", "n", "best_ms", "median_ms", "samples_ms"}``.
    """
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), dtype=np.float32)
    timed = _timed(lambda: np.matmul(a, b, out=out), warmup, repeats)
    return {"gflops": 2.0 * n**3 / (timed["best_ms"] / 1000.0) / 1e9, "n": n, **timed}


def measure_bandwidth(threads, mib=COPY_MIB, warmup=1, repeats=3):
    """The memory roof: bytes read + written over the best time of copying ``mib`` MiB with ``threads`` threads, in GB/s.

    Returns ``{"gbs", "mib", "threads", "bytes_moved", "best_ms", "median_ms", "samples_ms"}``.
    """
    count = mib * 2**20 // 4
    source = np.ones(count, dtype=np.float32)
    target = np.empty_like(source)  # its pages are touched by the warm-up copy, before any timing
    chunks = [(target[start:stop], source[start:stop]) for start, stop in _bounds(count, threads)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:

        def copy():
            if len(chunks) == 1:
                np.copyto(*chunks[0])
                return
            for done in [pool.submit(np.copyto, to, from_) for to, from_ in chunks]:
                done.result()

        timed = _timed(copy, max(warmup, 1), repeats)  # the warm-up copy touches the destination's pages
    moved = 2 * source.nbytes  # every byte is read once and written once
    return {"gbs": moved / (timed["best_ms"] / 1000.0) / 1e9, "mib": mib, "threads": threads, "bytes_moved": moved,
            **timed}


def _bounds(count, parts):
    """``parts`` contiguous ``(start, stop)`` ranges covering ``range(count)``, as even as can be."""
    edges = [count * i // parts for i in range(parts + 1)]
    return [(start, stop) for start, stop in zip(edges, edges[1:]) if stop > start]


def measure_limits(threads, quick=False):
    """Both roofs with ``threads`` threads (BLAS threads set here, and restored after): a JSON-ready dict.

    ``{"threads", "matmul_gflops", "bandwidth_gbs", "ridge_flop_per_byte", "matmul": {...},
    "copy": {...}}``. The *ridge point* ``matmul_gflops / bandwidth_gbs`` (flop per byte) is
    the arithmetic intensity where the two roofs meet: a layer doing fewer flops per byte it
    moves than that is limited by memory, one doing more by computation. ``quick`` times 3
    products and copies instead of 5.
    """
    repeats = 3 if quick else 5
    with contextlib.ExitStack() as stack:
        limit_threads(stack, threads, torch=None)
        matmul = measure_matmul_rate(repeats=repeats)
    copy = measure_bandwidth(threads, repeats=repeats)
    return {"threads": threads, "matmul_gflops": matmul["gflops"], "bandwidth_gbs": copy["gbs"],
            "ridge_flop_per_byte": matmul["gflops"] / copy["gbs"], "matmul": matmul, "copy": copy}
