"""Threads: how many npmobilenet uses, and the one way the fast operations share work among them.

NumPy runs each operation on one core. Only its matrix products use several, through the BLAS
library under it (OpenBLAS in NumPy's wheels), which starts its own threads. The rest of a
MobileNetV2 step (the depthwise taps, batch norm, ReLU6, the padding copies) would leave all
cores but one idle. So the fast operations cut their work into pieces that do not overlap (a
block of rows, a slice of pixels) and give the pieces to a pool of threads
(:func:`parallel_map`). This works in Python because NumPy lets go of the interpreter lock
while it computes on a large array: two threads really do run at once.

**Matrix products, too** (:func:`matmul`): the rows of the result are split between the
threads, and BLAS is asked for one thread of its own while npmobilenet works (through
:mod:`threadpoolctl`, when installed). Two thread pools on two cores would fight: OpenBLAS's
threads wait for their next product by spinning on a core, which takes it from the pool's
threads doing a depthwise convolution in the meantime. Without threadpoolctl, products are
left to BLAS's own threads, unsplit.

**The same bits whatever the count.** The pieces depend on the shapes alone, never on the
number of threads, and per-piece sums are added in the pieces' order; a matrix product is
split along its rows, which does not change how any one value is summed. So a forward pass
gives the same bits on 1 thread or 8, and a training run gives the same bits run after run.

**How many.** :func:`set_num_threads`, or before the first use the environment variable
``NPMOBILENET_NUM_THREADS``, else ``OMP_NUM_THREADS`` (the one most numerical libraries
honour), else the cores this process may run on. With 1 thread everything runs in the calling
thread, as plain NumPy code does.
"""

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["get_num_threads", "matmul", "parallel_map", "set_num_threads", "split_rows"]

ENVIRONMENT_VARIABLES = ("NPMOBILENET_NUM_THREADS", "OMP_NUM_THREADS")

# A matrix product is split only when each thread gets at least this many multiply-adds:
# below it, the cost of handing out the pieces is more than the time saved.
MIN_WORK_PER_THREAD = 1 << 20

_lock = threading.Lock()
_state = {"threads": None, "pool": None, "blas": None}
_inside = threading.local()  # set in the pool's threads: work they hand out runs where it is


def default_num_threads():
    """The environment's choice (``NPMOBILENET_NUM_THREADS``, then ``OMP_NUM_THREADS``), else the usable cores."""
    for name in ENVIRONMENT_VARIABLES:
        text = os.environ.get(name, "").strip()
        if text:
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{name}: expected a positive integer number of threads, got {text!r}") from None
            if value < 1:
                raise ValueError(f"{name}: expected a positive integer number of threads, got {value}")
            return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(count):
    """Use ``count`` threads (a positive ``int``) for npmobilenet's work from now on, as ``torch.set_num_threads``.

    Raises ``TypeError`` for a non-integer and ``ValueError`` for less than 1. The pool of the
    previous count is shut down once its work is done.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"set_num_threads: expected a positive int, got {type(count).__name__}")
    if count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count}")
    with _lock:
        old_pool = _state["pool"]
        _state.update(threads=int(count), pool=None)
    if old_pool is not None:
        old_pool.shutdown(wait=True)


def get_num_threads():
    """The number of threads npmobilenet uses (see :func:`set_num_threads`)."""
    if _state["threads"] is None:
        with _lock:
            if _state["threads"] is None:
                _state["threads"] = default_num_threads()
    return _state["threads"]


def _pool():
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(_state["threads"], thread_name_prefix="npmobilenet",
                                                initializer=_mark_worker)
        return _state["pool"]


def _mark_worker():
    _inside.worker = True


def parallel_map(function, items):
    """``[function(item) for item in items]``, the items shared among the threads; results in order.

    The items must not write to the same memory. With one thread, one item, or when called
    from one of the pool's own threads, it is that plain loop. If a call raises, the items not
    started are cancelled, the running ones are waited for (so no thread still writes into an
    array the caller is about to drop), and the first exception is raised.
    """
    items = list(items)
    if len(items) <= 1 or get_num_threads() == 1 or getattr(_inside, "worker", False):
        return [function(item) for item in items]
    with blas_on_one_thread():
        futures = [_pool().submit(function, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:  # an item raised, or Ctrl-C while waiting
            for future in futures:
                future.cancel()
            for future in futures:
                with contextlib.suppress(BaseException):
                    future.result()
            raise


def split_rows(rows, pieces):
    """``pieces`` slices (fewer if there are fewer rows) covering ``range(rows)`` in order, of near-equal sizes."""
    pieces = max(1, min(pieces, rows))
    bounds = [rows * k // pieces for k in range(pieces + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(pieces)]


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays, the rows of the result split among the threads.

    Each thread multiplies its slice of ``a``'s rows by all of ``b`` (BLAS on one thread
    inside), writing its rows of ``out``: every value is summed as one unsplit product sums it.
    A product too small to share runs in the calling thread, BLAS on one thread too, so that
    npmobilenet uses the threads it was given and no more. Without threadpoolctl, BLAS's own
    threads do the product, unsplit.
    """
    rows = a.shape[0]
    if out is None:
        out = np.empty((rows, b.shape[1]), dtype=np.result_type(a, b))
    if not _blas_controller():
        return np.matmul(a, b, out=out)
    work = rows * a.shape[1] * b.shape[1]
    pieces = split_rows(rows, min(get_num_threads(), work // MIN_WORK_PER_THREAD))
    with blas_on_one_thread():
        parallel_map(lambda part: np.matmul(a[part], b, out=out[part]), pieces)
    return out


def _blas_controller():
    """threadpoolctl's controller of NumPy's BLAS, found once; None when threadpoolctl is not installed."""
    if _state["blas"] is None:
        try:
            import threadpoolctl
        except ImportError:
            _state["blas"] = False
        else:
            controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
            _state["blas"] = controller if controller.lib_controllers else False
    return _state["blas"]


@contextlib.contextmanager
def blas_on_one_thread():
    """Ask BLAS for one thread while the pool works (see the module's docstring); its count is restored after."""
    controller = _blas_controller()
    if not controller or getattr(_inside, "limiting", False):
        yield
        return
    _inside.limiting = True
    try:
        with controller.limit(limits=1):
            yield
    finally:
        _inside.limiting = False
