"""``npmobilenet bench --profile``: where npmobilenet's time goes, by cProfile."""

import os
import time

import numpy as np

from .. import __version__, nn, parallel
from ..grad_mode import no_grad
from .cases import make_images, make_numpy_model

__all__ = ["profile_numpy"]


def profile_numpy(config, top=14):
    """Where npmobilenet's time goes: cProfile on one inference and one training step; a text table.

    The model runs at the first batch size of ``config.eval_batches`` (eval, ``no_grad()``) and
    of ``config.train_batches`` (forward, loss, backward), after one warm-up each. Each table
    lists the ``top`` functions by their *own* time (time inside the function itself, not in
    the functions it calls; NumPy's C routines count for the Python function that calls them),
    with their share of the step and their number of calls.

    cProfile sees only the thread that calls it: with several threads (see
    :mod:`npmobilenet.parallel`) the work would happen in the pool's threads and the profile
    would show the caller waiting. So the profile runs npmobilenet on one thread.
    """
    model, weights_text = make_numpy_model(config.weights)
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
                 "cProfile, own time per function, one run after a warm-up, on one thread")]
    threads = parallel.get_num_threads()
    parallel.set_num_threads(1)
    try:
        _profile_steps(sections, config, inference, training_step, top)
    finally:
        parallel.set_num_threads(threads)
    return "\n".join(sections)


def _profile_steps(sections, config, inference, training_step, top):
    """Append the table of each step to ``sections``."""
    import cProfile
    import pstats

    for title, step, batch in [("inference (eval, no_grad)", inference, config.eval_batches[0]),
                               ("training step", training_step, config.train_batches[0])]:
        images = make_images(batch)
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
