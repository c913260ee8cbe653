"""Threads: how many npmobilenet uses, and the one way the fast operations share work among them.

NumPy runs each operation on one core. Only its matrix products use several, through the BLAS
library under it (OpenBLAS in NumPy's wheels), which starts its own threads. The rest of a
MobileNetV2 step (the depthwise taps, batch norm, ReLU6, the padding copies) would leave all
cores but one idle. So the fast operations cut their work into pieces that do not overlap (a
block of rows, a slice of pixels) and share them among threads (:func:`parallel_map`): the
calling thread and ``count - 1`` helpers (:class:`HelperPool`), each taking the next piece not
yet taken. This works in Python because NumPy lets go of the interpreter lock while it
computes on a large array: two threads really do run at once.

**Matrix products, too** (:func:`matmul`): the rows of the result are split between the
threads, and BLAS is asked for one thread of its own while npmobilenet works (through
:mod:`threadpoolctl`, when installed). Two thread pools on two cores would fight: OpenBLAS's
threads wait for their next product by spinning on a core, which takes it from the threads
doing a depthwise convolution in the meantime. A model asks once for its whole forward or
backward pass (:func:`blas_on_one_thread`), not around every product. Without threadpoolctl,
products are left to BLAS's own threads, unsplit.

**The same bits whatever the count.** The pieces depend on the shapes alone, never on the
number of threads, and per-piece sums are added in the pieces' order; a matrix product is
split along its rows, which does not change how any one value is summed. So a forward pass
gives the same bits on 1 thread or 8, and a training run gives the same bits run after run.

**How many.** :func:`set_num_threads`, or before the first use the environment variable
``NPMOBILENET_NUM_THREADS``, else ``OMP_NUM_THREADS`` (the one most numerical libraries
honour), else the cores this process may run on (1 without threadpoolctl: see
:func:`default_num_threads`). With 1 thread everything runs in the calling thread, as plain
NumPy code does.
"""

import contextlib
import os
import queue
import threading

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
    """The environment's choice (``NPMOBILENET_NUM_THREADS``, then ``OMP_NUM_THREADS``), else the usable cores.

    Without threadpoolctl the default is 1: npmobilenet cannot then hold BLAS to one thread,
    and its threads and BLAS's would fight for the cores (inference at batch 8 on 2 cores: 2
    threads take 1.2 times as long as 1 there, and twice as long as 2 threads with
    threadpoolctl), so the matrix products keep BLAS's own threads and the rest runs in the
    calling thread.
    """
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
    if not _blas_controller():
        return 1
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
        old_pool.shutdown()


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
            _state["pool"] = HelperPool(_state["threads"] - 1)
        return _state["pool"]


class HelperPool:
    """``workers`` threads that help the calling thread through a list of items.

    The caller does not hand the items out and wait: it puts the job where the helpers can see
    it and starts on the items itself, and each thread (the caller included) takes the next
    item not yet taken until none is left. Waking a sleeping thread takes tens of
    microseconds, as long as a small piece of work; here a small job is simply done by the
    caller before a helper is awake, so sharing never costs more than it saves.
    """

    def __init__(self, workers):
        self._jobs = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._help, name=f"npmobilenet-{k}", daemon=True)
                         for k in range(workers)]
        for thread in self._threads:
            thread.start()

    def _help(self):
        while (job := self._jobs.get()) is not None:
            job.run_items()

    def run(self, function, items):
        """``[function(item) for item in items]``, shared with the helpers; see :func:`parallel_map`."""
        job = Job(function, items)
        for _ in range(min(len(self._threads), len(items) - 1)):
            self._jobs.put(job)
        job.run_items()
        return job.results_when_done()

    def shutdown(self):
        """Stop the helpers once they are done with their items (a job never waits for them to start)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()


class Job:
    """The items of one :func:`parallel_map` call: who takes which, the results, the first error."""

    def __init__(self, function, items):
        self.function, self.items = function, items
        self.results = [None] * len(items)
        self.taken = 0  # items[:taken] have been taken by some thread
        self.running = 0  # taken and not finished
        self.error = None  # the first exception raised by an item: no item is taken after it
        self.lock = threading.Lock()
        self.done = threading.Event()  # set when nothing is left to take and nothing runs

    def take(self):
        """The index of the next item to run, or None when none is left (or an item failed)."""
        with self.lock:
            if self.taken == len(self.items) or self.error is not None:
                return None
            self.taken += 1
            self.running += 1
            return self.taken - 1

    def finish(self, error=None):
        with self.lock:
            self.running -= 1
            if error is not None and self.error is None:
                self.error = error
            if self.running == 0 and (self.taken == len(self.items) or self.error is not None):
                self.done.set()

    def run_items(self):
        """Run items until none is left to take. Work they hand out themselves runs right here."""
        outer, _inside.worker = getattr(_inside, "worker", False), True
        try:
            while (index := self.take()) is not None:
                try:
                    self.results[index] = self.function(self.items[index])
                except BaseException as error:  # kept, and raised in the caller once every item has stopped
                    self.finish(error)
                else:
                    self.finish()
        finally:
            _inside.worker = outer

    def results_when_done(self):
        """Wait for the items other threads run (so none still writes into an array the caller drops); raise the first error."""
        try:
            self.done.wait()
        except BaseException as interrupt:  # Ctrl-C while waiting: no new item starts, the running ones end
            with self.lock:
                self.error = self.error or interrupt
            self.done.wait()
        if self.error is not None:
            raise self.error
        return self.results


def parallel_map(function, items):
    """``[function(item) for item in items]``, the items shared among the threads; results in order.

    The items must not write to the same memory. With one thread, one item, or when called
    from inside an item, it is that plain loop. If an item raises, no item is started after
    it, the running ones are waited for (so no thread still writes into an array the caller
    is about to drop), and that first exception is raised. BLAS runs on one thread meanwhile
    (see the module's docstring).
    """
    items = list(items)
    if len(items) <= 1 or get_num_threads() == 1 or getattr(_inside, "worker", False):
        return [function(item) for item in items]
    with blas_on_one_thread():
        return _pool().run(function, items)


def split_rows(rows, pieces):
    """``pieces`` slices (fewer if there are fewer rows) covering ``range(rows)`` in order, of near-equal sizes."""
    pieces = max(1, min(pieces, rows))
    bounds = [rows * k // pieces for k in range(pieces + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(pieces)]


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays, the rows of the result split among the threads (its columns, when they are more).

    Each thread multiplies its slice of ``a``'s rows by all of ``b`` (BLAS on one thread
    inside), writing its rows of ``out``: every value is summed as one unsplit product sums it.
    A result with fewer rows than columns (a weight gradient ``dout.T @ x``, with a few
    output channels and a long sum over the pixels) is split by columns instead, so that no
    thread reads the other's share of the long operand.
    A product too small to share runs in the calling thread, BLAS on one thread too, so that
    npmobilenet uses the threads it was given and no more. Without threadpoolctl, BLAS's own
    threads do the product, unsplit.
    """
    rows, columns = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((rows, columns), dtype=np.result_type(a, b))
    if not _blas_controller():
        return np.matmul(a, b, out=out)
    count = min(get_num_threads(), rows * a.shape[1] * columns // MIN_WORK_PER_THREAD)
    with blas_on_one_thread():
        if rows >= columns:
            parallel_map(lambda part: np.matmul(a[part], b, out=out[part]), split_rows(rows, count))
        else:  # few rows (a weight gradient, dout.T @ x): split the columns, so that a's rows are read once each
            parallel_map(lambda part: np.matmul(a, b[:, part], out=out[:, part]), split_rows(columns, count))
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
    """Ask BLAS for one thread while the pool works (see the module's docstring); its count is restored after.

    threadpoolctl finds NumPy's BLAS libraries once; setting a library's thread count is
    then one call into it, cheap enough to do around every job.
    """
    controller = _blas_controller()
    if not controller or getattr(_inside, "limiting", False):
        yield
        return
    libraries = controller.lib_controllers
    counts_before = [library.get_num_threads() for library in libraries]
    _inside.limiting = True
    try:
        for library in libraries:
            library.set_num_threads(1)
        yield
    finally:
        for library, count in zip(libraries, counts_before):
            library.set_num_threads(count)
        _inside.limiting = False
