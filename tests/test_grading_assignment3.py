"""Assignment 3 (the inverted residual block and the whole network): its wrong solutions, and its shared data.

As in ``test_grading.py`` (whose generic tests already grade the solution, full marks, and the
student version, zero): each wrong solution below is a mistake students make, as a text patch of
the solution notebook; it must lose exactly the checks listed, the first with a hint that names
the mistake, and keep the others. The mistakes of the block lose the network's checks too, since
the network runs the student's block.

Four checks and the notebook's last two tasks need the real weights and photos of ``../shared``:
without it these tests skip (and fail under ``NPMOBILENET_STRICT_TESTS=1``), and a last test
checks what a student without the folder is told.
"""

import copy

import numpy as np
import pytest
from test_grading import lost, patched_solution, solution_path, wrong

from npmobilenet.grading import assignment3, load_assignment
from npmobilenet.grading.notebook import read_notebook
from npmobilenet.grading.runner import grade_in_this_process

A3 = "03-inverted-residual-network"
SHARED_CHECKS = {"mobilenet_v2_forward/imagenet", "classify/photos"}
NETWORK = {"mobilenet_v2_forward/random", "mobilenet_v2_forward/imagenet", "classify/photos"}  # what runs the block
EVERY_BLOCK_CHECK = {"inverted_residual_forward/shortcut", "inverted_residual_forward/strided",
                     "inverted_residual_forward/widening", "inverted_residual_forward/no_expansion",
                     "inverted_residual_forward/float32", "inverted_residual_backward/dx",
                     "inverted_residual_backward/grads", "inverted_residual_backward/strided",
                     "inverted_residual_backward/no_expansion"}  # all but the numerical one: against the library


@pytest.fixture(autouse=True)
def shared_for_the_notebook(shared_dir, monkeypatch):
    """The notebook finds the shared folder through NPMOBILENET_SHARED (these tests run it from the project's root)."""
    monkeypatch.setenv("NPMOBILENET_SHARED", str(shared_dir))


EXPANSION_AND_DEPTHWISE = """\
        h = layer("conv", "conv.0.0", F.conv2d_forward, h, params["conv.0.0.weight"])
        h = layer("relu6", "conv.0.2", F.relu6_forward, batchnorm(h, "conv.0.1"))
    d = 0 if expand_ratio == 1 else 1  # the depthwise layer is conv.0 without the expansion, conv.1 with it
    h = layer("depthwise", f"conv.{d}.0", F.depthwise_conv2d_forward, h, params[f"conv.{d}.0.weight"], None, stride, 1)
"""
TO_FLOATS = """\
    x = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)  # (3, 224, 224) in [0, 1]
    x = (x - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]  # per channel, R, G, B
"""
SOFTMAX = """\
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
"""
SHORTCUT = "    shortcut = stride == 1 and x.shape[1] == out.shape[1]\n"
BATCHNORM = "*bn_arguments(params, name), False, 0.1, BN_EPS)"

WRONG = [
    # The block, forward: each loses the network's checks too
    wrong("block: the shortcut left out", A3, SHORTCUT, "    shortcut = False\n",
          # the parameters' gradients do not see the shortcut; the numerical check compares with the student's own
          # forward, which agrees
          {"inverted_residual_forward/shortcut", "inverted_residual_backward/dx",
           "inverted_residual_backward/no_expansion"} | NETWORK,
          "Yours leaves out the shortcut: with stride 1 and as many channels out as in, out = layers(x) + x"),
    wrong("block: the shortcut whenever the stride is 1, whatever the channels", A3, SHORTCUT,
          "    shortcut = stride == 1\n",
          {"inverted_residual_forward/widening", "inverted_residual_forward/no_expansion"} | NETWORK,
          "raised ValueError: operands could not be broadcast together"),
    wrong("block: ReLU6 after the projection (the linear bottleneck broken)", A3,
          "    out = batchnorm(h, f\"conv.{d + 2}\")",
          "    out = layer(\"relu6\", \"after\", F.relu6_forward, batchnorm(h, f\"conv.{d + 2}\"))",
          EVERY_BLOCK_CHECK | NETWORK, "Yours applies ReLU6 after the projection"),
    wrong("block: the stride in the 1x1 expansion, not in the depthwise convolution", A3, EXPANSION_AND_DEPTHWISE,
          EXPANSION_AND_DEPTHWISE.replace('params["conv.0.0.weight"])', 'params["conv.0.0.weight"], None, stride)')
          .replace("None, stride, 1)", "None, stride if d == 0 else 1, 1)"),
          {"inverted_residual_forward/strided", "inverted_residual_forward/float32",
           "inverted_residual_backward/strided"} | NETWORK,
          "Yours applies the stride in the 1x1 expansion: the stride belongs to the 3x3 depthwise convolution"),
    wrong("block: batch norm in training mode (the batch's statistics)", A3, BATCHNORM,
          BATCHNORM.replace("False", "True"), EVERY_BLOCK_CHECK | NETWORK,
          "Yours normalises with the batch's statistics: the block runs in evaluation mode"),
    wrong("block: batch norm's eps 1e-3 (Keras's)", A3, BATCHNORM, BATCHNORM.replace("BN_EPS", "1e-3"),
          # the ImageNet weights' variances are 1 - 1e-5: an eps of 1e-3 shifts every layer a little, and 52 of
          # them shift the logits and the probabilities beyond float32's tolerance
          EVERY_BLOCK_CHECK | NETWORK, "Yours takes eps = 1e-3, Keras's default: PyTorch's BatchNorm2d adds eps = 1e-5"),
    wrong("block: t = 1 numbered as if it had the expansion", A3, "    d = 0 if expand_ratio == 1 else 1", "    d = 1",
          {"inverted_residual_forward/no_expansion", "inverted_residual_backward/no_expansion"} | NETWORK,
          "With expand_ratio 1 there is no expansion and the layers are numbered from 0"),
    # The block, backward
    wrong("block backward: the shortcut's gradient forgotten", A3, "dx = dh + dout if shortcut else dh", "dx = dh",
          {"inverted_residual_backward/dx", "inverted_residual_backward/no_expansion",
           "inverted_residual_backward/numerical"},
          "Yours leaves out the shortcut's gradient"),
    # The network
    wrong("network: every block of a row with the row's stride", A3, "s if repeat == 0 else 1, t)", "s, t)", NETWORK,
          "with t and the first block's stride from the paper's table (the other blocks of a row have stride 1)"),
    wrong("network: max pooling instead of the mean", A3, "pooled = h.mean(axis=(2, 3))",
          "pooled = h.max(axis=(2, 3))", NETWORK, "Yours pools with the maximum"),
    # The photos
    wrong("preprocess: the channels in BGR order", A3, "pixels = np.asarray(image)[top : top + 224, left : left + 224]",
          "pixels = np.asarray(image)[top : top + 224, left : left + 224, ::-1]", {"preprocess/png", "classify/photos"},
          "Yours has the channels in BGR order"),
    wrong("preprocess: the crop's offset rounded down", A3,
          "left, top = round((image.width - 224) / 2), round((image.height - 224) / 2)",
          "left, top = (image.width - 224) // 2, (image.height - 224) // 2",
          {"preprocess/png"},  # the four photos' offsets are whole numbers: only the grader's PNG shows it
          "Yours crops from (W - 224) // 2: torchvision rounds"),
    wrong("preprocess: channels last (HWC), not transposed", A3, TO_FLOATS,
          "    x = pixels.astype(np.float32) / np.float32(255)\n    x = (x - IMAGENET_MEAN) / IMAGENET_STD\n",
          {"preprocess/png", "classify/photos"},
          "x has shape (224, 224, 3), expected (3, 224, 224): the right sizes in another order"),
    wrong("top_k: the softmax over the batch", A3, SOFTMAX, SOFTMAX.replace("axis=1", "axis=0"),
          {"top_k/values", "top_k/large_logits", "classify/photos"}, "Yours takes the softmax over the batch (axis 0)"),
    wrong("top_k: np.exp of the logits as they are (overflow)", A3,
          "    shifted = logits - logits.max(axis=1, keepdims=True)\n", "    shifted = logits\n",
          {"top_k/large_logits"}, "probabilities has nan at index (0, 0): np.exp(1000) overflows to inf"),
]


def check_ids():
    return {check.id for task in load_assignment(A3).TASKS for check in task.checks}


def test_the_wrong_solutions_name_real_checks():
    assert len(WRONG) >= 8 and {case.assignment for case in WRONG} == {A3}
    assert EVERY_BLOCK_CHECK | NETWORK | SHARED_CHECKS <= check_ids()
    for case in WRONG:
        assert case.loses and case.loses <= check_ids(), case.mistake
    # every task has a mistake that loses its checks
    lost_somewhere = set().union(*(case.loses for case in WRONG))
    assert {check_id.split("/")[0] for check_id in lost_somewhere} == {
        "inverted_residual_forward", "inverted_residual_backward", "mobilenet_v2_forward", "preprocess", "top_k",
        "classify"}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # np.exp(1000) in the notebook's own cells
@pytest.mark.parametrize("case", WRONG, ids=lambda case: case.mistake)
def test_a_wrong_solution_loses_the_checks_it_should_and_keeps_the_others(case):
    result = grade_in_this_process(patched_solution(case.assignment, case.old, case.new))
    assert lost(result) == case.loses
    failed = [check for check in result["checks"] if check["id"] in case.loses]
    assert case.hint in failed[0]["hint"], failed[0]["hint"]
    assert all(check["hint"] and "Traceback" not in check["hint"] for check in failed)
    assert result["score"] == 100 - sum(check["points"] for check in failed)


@pytest.mark.parametrize("case", sorted(assignment3.BLOCK_CASES))
def test_the_graders_own_block_is_the_librarys_and_each_known_mistake_changes_its_output(case):
    """The hints' machinery: the functional block without a mistake is the library's module; each mistake is not."""
    x, block, params, stride, expand_ratio, _, _ = assignment3.block_case(case)
    expected = block(x.copy())
    right = assignment3.reference_block(x, copy.deepcopy(params), stride, expand_ratio)
    assert np.allclose(right, expected, rtol=0, atol=1e-12)
    for output, sentence in assignment3.block_mistakes(x, params, stride, expand_ratio):
        # far beyond the grader's tolerance (1e-6 of the largest value), so the right answer never gets its hint
        assert output.shape != expected.shape or np.abs(output - expected).max() > 1e-5 * np.abs(expected).max(), sentence


def test_without_the_shared_folder_the_checks_that_need_it_say_where_they_looked(monkeypatch, tmp_path):
    nowhere = tmp_path / "no-shared"
    monkeypatch.setenv("NPMOBILENET_SHARED", str(nowhere))
    monkeypatch.setattr(assignment3, "shared_places", lambda: [nowhere])
    result = grade_in_this_process(read_notebook(solution_path(A3)))
    assert lost(result) == SHARED_CHECKS and result["score"] == 100 - 12 - 8
    for check in result["checks"]:
        if check["id"] in SHARED_CHECKS:
            assert check["hint"].startswith("this check needs the shared data folder"), check["hint"]
            assert str(nowhere) in check["hint"] and check["hint"].endswith("Set NPMOBILENET_SHARED to the folder "
                                                                            "that holds it")
    # the notebook says so too: its data cell fails, and the test cells of tasks 3 and 4 with it
    assert "is missing: tasks 3 and 4 need the shared data folder" in result["notes"][0]
