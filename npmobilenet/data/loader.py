"""DataLoader: a dataset's samples in batches, shuffled reproducibly, decoded ahead by threads.

One pass over the loader (an epoch) is::

    order   = 0, 1, ..., n - 1, or a random permutation of it (shuffle=True)
    batches = order cut into pieces of batch_size (the last one shorter, or dropped: drop_last)
    for each batch: load its samples, stack them, yield (inputs (N, 3, H, W), labels (N,) int64)

Two things make it more than those lines.

Random numbers that do not depend on threads. The loader owns one ``numpy.random.Generator``,
seeded once from ``seed``; each ``iter(loader)`` draws that epoch's permutation from it, so
epoch 2 differs from epoch 1, yet two loaders with the same seed give the same sequence of
epochs. Augmentations draw from a generator of their own for each sample,
``np.random.default_rng([seed, epoch, index])``: a sample's crop and flip depend on what it is,
never on which thread happens to decode it first. :meth:`DataLoader.state_dict` saves the
loader's generator and epoch count, so a training run can be resumed bit for bit.

Decoding overlapped with computing. Decoding a JPEG and resizing it takes milliseconds per
image, in Pillow's C code, which releases Python's global interpreter lock (GIL) while it
works. So while the caller computes on batch ``k`` (NumPy's matrix products release the GIL
too), a pool of ``workers`` threads (``concurrent.futures.ThreadPoolExecutor``) already
decodes batches ``k + 1 .. k + prefetch_batches``. Results come back in order, whichever
thread finishes first. ``workers=0`` loads in the caller's thread, one batch when it is asked
for: slower, and the simplest to step through in a debugger.
"""

import collections
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import NpMobileNetError, ShapeError

__all__ = ["DataLoader", "collate", "default_workers"]

THREAD_NAME_PREFIX = "npmobilenet-loader"


def default_workers():
    """The number of decoding threads when none is given: one per CPU core, at most 4."""
    return min(4, os.cpu_count() or 1)


class DataLoader:
    """Batches of ``(inputs, labels)`` from ``dataset``, as ``torch.utils.data.DataLoader``.

    ``dataset`` is anything with ``len(dataset)`` and ``dataset[i] -> (x, target)``, such as
    :class:`~npmobilenet.data.ImageFolder`; a dataset with a ``load(i, rng)`` method (ImageFolder
    has one) is called through it, so that its random transforms draw from the sample's own
    generator. Every ``x`` must be an array of the same shape, e.g. ``(3, 224, 224)`` from a
    transform ending in ``ToArray()`` and ``Normalize(...)``.

    Arguments:

    * ``batch_size``: samples per batch; ``len(loader)`` is the number of batches, torch's:
      ``ceil(n / batch_size)``, or ``floor`` with ``drop_last=True`` (the last, shorter batch
      left out).
    * ``shuffle``: a new random order each epoch, drawn from the loader's generator.
    * ``seed``: the loader's generator and every sample's (see the module docstring).
      ``None``: a seed drawn once from the operating system, different every run, kept in
      ``loader.seed`` and in :meth:`state_dict`.
    * ``workers``: decoding threads; ``0`` decodes in the caller's thread. ``None``:
      :func:`default_workers`.
    * ``prefetch_batches``: batches loaded ahead of the one the caller has.

    The threads stop when the pass ends, when the caller stops early (``break``: Python closes
    the generator), and when loading a sample raises; that error is raised again in the
    caller's thread, at the batch that holds the sample.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
                 workers=None, prefetch_batches=2):
        _check_dataset(dataset)
        _check_int("batch_size", batch_size, minimum=1)
        workers = default_workers() if workers is None else workers
        _check_int("workers", workers, minimum=0)
        _check_int("prefetch_batches", prefetch_batches, minimum=0)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.workers = int(workers)
        self.prefetch_batches = int(prefetch_batches)
        self.seed = _seed_from_entropy() if seed is None else _check_seed(seed)
        self.epoch = 0  # epochs begun: the next iter() runs epoch number self.epoch
        self._generator = np.random.default_rng(self.seed)

    def __len__(self):
        full_batches, rest = divmod(len(self.dataset), self.batch_size)
        return full_batches if self.drop_last or rest == 0 else full_batches + 1

    def __iter__(self):
        """Begin an epoch: its order is drawn now, and ``self.epoch`` counts it."""
        order = self._generator.permutation(len(self.dataset)) if self.shuffle else np.arange(len(self.dataset))
        batches = self._cut_into_batches(order)
        seed, epoch = self.seed, self.epoch
        self.epoch += 1
        if self.workers == 0:
            return self._batches_in_this_thread(batches, seed, epoch)
        return self._batches_from_threads(batches, seed, epoch)

    def _cut_into_batches(self, order):
        """The list of batches, each a list of dataset indices (Python ints)."""
        batches = [order[start:start + self.batch_size].tolist() for start in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def _load_sample(self, index, seed, epoch):
        """Sample ``index`` as ``(x, target)``, its random transforms drawing from its own generator."""
        load = getattr(self.dataset, "load", None)
        if load is None:
            return self.dataset[index]
        return load(index, rng=np.random.default_rng([seed, epoch, index]))

    def _batches_in_this_thread(self, batches, seed, epoch):
        for indices in batches:
            yield collate([self._load_sample(index, seed, epoch) for index in indices])

    def _batches_from_threads(self, batches, seed, epoch):
        """Keep ``1 + prefetch_batches`` batches in the pool's hands; yield them in order."""
        waiting = iter(batches)
        in_flight = collections.deque()  # one list of futures per batch, oldest first
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=THREAD_NAME_PREFIX)

        def submit_next_batch():
            indices = next(waiting, None)
            if indices is not None:
                in_flight.append([pool.submit(self._load_sample, index, seed, epoch) for index in indices])

        try:
            for _ in range(1 + self.prefetch_batches):
                submit_next_batch()
            while in_flight:
                samples = [_result_in_this_thread(future) for future in in_flight.popleft()]
                submit_next_batch()  # the threads work on it while the caller computes
                yield collate(samples)
        finally:
            # Reached when the pass ends, when a sample raised, and when the caller stopped early
            # (break, or the generator garbage-collected: Python raises GeneratorExit at the
            # yield). Samples not begun are cancelled; the threads finish the ones they hold and exit.
            pool.shutdown(wait=True, cancel_futures=True)

    def state_dict(self):
        """The loader's random state: ``{"seed", "epoch", "generator"}``, to save beside a checkpoint.

        Taken between epochs, :meth:`load_state_dict` on a new loader continues with the same
        next epoch (its order and every sample's augmentation). Taken during an epoch, that
        epoch counts as begun: a resumed loader starts the next one.
        """
        return {"seed": self.seed, "epoch": self.epoch, "generator": self._generator.bit_generator.state}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned."""
        missing = {"seed", "epoch", "generator"} - set(state)
        if missing:
            raise ValueError(
                f"DataLoader.load_state_dict: expected the keys seed, epoch and generator (from "
                f"loader.state_dict()), missing {', '.join(sorted(missing))}"
            )
        generator = np.random.default_rng()
        generator.bit_generator.state = state["generator"]
        self.seed = _check_seed(state["seed"])
        self.epoch = _check_int("epoch", state["epoch"], minimum=0)
        self._generator = generator

    def __repr__(self):
        return (f"{type(self).__name__}(batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, workers={self.workers}, batches={len(self)})")


def collate(samples):
    """A list of ``(x, target)`` pairs -> ``(inputs, labels)``: the x's stacked on a new first axis, the targets int64.

    Four ``(3, 224, 224)`` float32 arrays make a ``(4, 3, 224, 224)`` float32 batch, the NCHW
    layout the model takes; the arrays keep their dtype.
    """
    inputs, targets = [], []
    for sample in samples:
        if not (isinstance(sample, tuple) and len(sample) == 2):
            raise TypeError(f"DataLoader: expected each sample to be a pair (x, target), got {type(sample).__name__}")
        inputs.append(sample[0])
        targets.append(sample[1])
    return _stack_inputs(inputs), _stack_targets(targets)


def _stack_inputs(inputs):
    for x in inputs:
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"DataLoader: expected each sample to be a numpy array, got a {type(x).__module__}."
                f"{type(x).__name__}; end the dataset's transform with ToArray() (and Normalize), "
                f"e.g. transforms.Compose([Resize(256), CenterCrop(224), ToArray(), Normalize(...)])"
            )
    shapes = sorted({x.shape for x in inputs})
    if len(shapes) > 1:
        raise ShapeError(
            f"DataLoader: cannot stack the samples of a batch, their shapes differ: {shapes}; "
            f"give the dataset a transform that makes every image the same size (e.g. "
            f"RandomResizedCrop(224), or Resize(256) then CenterCrop(224))"
        )
    return np.stack(inputs)


def _stack_targets(targets):
    for target in targets:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TypeError(f"DataLoader: expected each target to be a class index (an int), got {target!r}")
    return np.array(targets, dtype=np.int64)


def _result_in_this_thread(future):
    """The future's result; its error raised here, in the caller's thread."""
    try:
        return future.result()
    except NpMobileNetError as error:
        # Our errors (ImageError: a missing or corrupt file) say what is wrong and where in their
        # message; the worker's traceback, deep inside Pillow on another thread, would only
        # hide it. Any other error (a bug in a transform) keeps its full traceback.
        raise error.with_traceback(None) from None


def _seed_from_entropy():
    """A 128-bit seed from the operating system's randomness, as NumPy draws for default_rng()."""
    return np.random.SeedSequence().entropy


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"DataLoader: expected seed to be None or a non-negative int, got {seed!r}")
    return int(seed)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"DataLoader: expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_dataset(dataset):
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(
            f"DataLoader: expected a dataset with len() and [index] (e.g. ImageFolder), got "
            f"{type(dataset).__name__}"
        )
