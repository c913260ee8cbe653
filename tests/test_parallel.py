"""npmobilenet's threads (``npmobilenet.parallel``): the count, the pool, and the same bits on any count.

The fast operations cut their work into pieces that depend on the shapes alone and add the
pieces' sums in order, so the number of threads must not change a single bit: inference and
a whole training step are compared bit for bit on 1, 2 and 3 threads. A failing piece must
raise in the caller and leave no thread behind.
"""

import subprocess
import time
import sys
import threading

import numpy as np
import pytest

import npmobilenet
from npmobilenet import MobileNetV2, nn, no_grad, parallel
from npmobilenet.functional import fast


@pytest.fixture(autouse=True)
def restore_threads():
    before = parallel.get_num_threads()
    yield
    parallel.set_num_threads(before)


def pool_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("npmobilenet")]


def test_set_and_get():
    npmobilenet.set_num_threads(3)
    assert npmobilenet.get_num_threads() == 3
    assert parallel.parallel_map(lambda item: (item, threading.current_thread().name), range(6))[2][0] == 2
    assert len(pool_threads()) <= 3


@pytest.mark.parametrize("count, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), ("2", TypeError),
                                          (True, TypeError)])
def test_a_bad_count_is_refused(count, error):
    with pytest.raises(error, match="set_num_threads: expected a positive int"):
        npmobilenet.set_num_threads(count)


@pytest.mark.parametrize("environment, expected", [
    ({"NPMOBILENET_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}, "3"),
    ({"OMP_NUM_THREADS": "5"}, "5"),
    ({"NPMOBILENET_NUM_THREADS": "zero"}, "ValueError: NPMOBILENET_NUM_THREADS: expected a positive integer"),
])
def test_the_environment_sets_the_default(environment, expected):
    code = ("import npmobilenet\n"
            "try:\n    print(npmobilenet.get_num_threads())\n"
            "except ValueError as error:\n    print('ValueError:', error)")
    env = {"PATH": "/usr/bin:/bin", **environment}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip().startswith(expected)


@pytest.mark.parametrize("environment, expected", [({}, "1"), ({"NPMOBILENET_NUM_THREADS": "2"}, "2")])
def test_without_threadpoolctl_the_default_is_one_thread(environment, expected):
    code = ("import sys\nsys.modules['threadpoolctl'] = None  # as if it were not installed\n"
            "import npmobilenet\nprint(npmobilenet.get_num_threads())")
    env = {"PATH": "/usr/bin:/bin", **environment}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == expected


def test_results_come_back_in_order_and_the_first_error_is_raised():
    npmobilenet.set_num_threads(2)
    assert parallel.parallel_map(lambda item: item * item, range(50)) == [item * item for item in range(50)]

    def fails_on_seven(item):
        if item == 7:
            raise ShapeErrorLike("piece 7")
        return item

    for _ in range(20):  # the pool stays the same size however often a piece fails
        with pytest.raises(ShapeErrorLike, match="piece 7"):
            parallel.parallel_map(fails_on_seven, range(30))
    assert 1 <= len(pool_threads()) <= 2


class ShapeErrorLike(Exception):
    pass


def test_a_forward_that_raises_inside_a_block_leaves_no_thread_and_the_next_forward_works(monkeypatch):
    npmobilenet.set_num_threads(2)
    model = MobileNetV2(width_mult=0.25, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with no_grad():
        expected = model(x)
    calls = []

    def broken_add_taps(block, *args):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("a block of the depthwise convolution failed")
        return original(block, *args)

    original = fast.depthwise.add_taps
    monkeypatch.setattr(fast.depthwise, "add_taps", broken_add_taps)  # alone, and fused with the projection
    with pytest.raises(MemoryError, match="a block of the depthwise"), no_grad():
        model(x)
    monkeypatch.undo()
    with no_grad():
        assert np.array_equal(model(x), expected)
    assert 1 <= len(pool_threads()) <= 2


def test_matmul_split_among_threads_is_the_unsplit_product_bit_for_bit():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3001, 96)).astype(np.float32), rng.standard_normal((96, 577)).astype(np.float32)
    c = rng.standard_normal((3001, 40)).astype(np.float32)
    npmobilenet.set_num_threads(1)
    alone, weight_gradient_alone = parallel.matmul(a, b), parallel.matmul(c.T, a)  # c.T: a strided view, as dout.T
    npmobilenet.set_num_threads(3)
    assert np.array_equal(parallel.matmul(a, b), alone)
    assert np.array_equal(parallel.matmul(c.T, a), weight_gradient_alone)
    np.testing.assert_allclose(alone, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def inference(count, x):
    npmobilenet.set_num_threads(count)
    model = MobileNetV2(width_mult=0.5, seed=1).eval()
    with no_grad():
        return model(x)


def training_step(count, x, targets):
    """Logits, input gradient and every parameter's gradient of one training step (batch-norm statistics too)."""
    npmobilenet.set_num_threads(count)
    model = MobileNetV2(width_mult=0.5, seed=1, dropout=0.0).train()
    criterion = nn.CrossEntropyLoss()
    logits = model(x)
    criterion(logits, targets)
    dx = model.backward(criterion.backward())
    state = model.state_dict()
    return [logits, dx, *(parameter.grad for parameter in model.parameters()),
            *(state[key] for key in sorted(state) if "running" in key)]


def test_inference_gives_the_same_bits_on_any_number_of_threads():
    x = np.random.default_rng(2).standard_normal((3, 3, 224, 224)).astype(np.float32)
    one = inference(1, x)
    for count in (2, 3):
        assert np.array_equal(inference(count, x), one), count


def test_a_training_step_gives_the_same_bits_run_after_run_and_on_one_thread():
    rng = np.random.default_rng(3)
    x, targets = rng.standard_normal((2, 3, 224, 224)).astype(np.float32), np.array([3, 7])
    two = training_step(2, x, targets)
    again = training_step(2, x, targets)
    one = training_step(1, x, targets)
    for a, b, c in zip(two, again, one):
        assert np.array_equal(a, b)
        assert np.array_equal(a, c)


def test_split_rows_covers_every_row_once():
    for rows in (1, 2, 7, 100):
        for pieces in (1, 2, 3, 8):
            parts = parallel.split_rows(rows, pieces)
            assert [index for part in parts for index in range(rows)[part]] == list(range(rows))
            assert len(parts) == min(rows, pieces)


def test_an_error_is_raised_only_once_every_running_item_has_stopped():
    npmobilenet.set_num_threads(2)
    finished = []

    def item(index):
        if index == 0:  # the caller takes item 0 and fails at once, while a helper is inside item 1
            time.sleep(0.05)
            raise ShapeErrorLike("item 0")
        time.sleep(0.2)
        finished.append(index)

    for _ in range(3):
        finished.clear()
        with pytest.raises(ShapeErrorLike, match="item 0"):
            parallel.parallel_map(item, range(2))
        at_the_raise = list(finished)  # item 1 either never started or ran to its end before the raise
        time.sleep(0.3)
        assert finished == at_the_raise  # nothing finishes behind the caller's back


def test_work_handed_out_from_inside_an_item_runs_in_that_item():
    npmobilenet.set_num_threads(2)

    def nested(index):
        return parallel.parallel_map(lambda inner: (index, inner, threading.current_thread().name), range(3))

    for row in parallel.parallel_map(nested, range(4)):
        assert [entry[:2] for entry in row] == [(row[0][0], inner) for inner in range(3)]
        assert len({entry[2] for entry in row}) == 1  # all on the thread that ran the outer item
