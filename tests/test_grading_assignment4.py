"""Assignment 4 (optimizers, a training step, fine-tuning on ants and bees): its wrong solutions, and its data.

As in ``test_grading.py`` (whose generic tests already grade the solution, full marks, and the
student version, zero, each in a fresh process and on the real photos): each wrong solution below
is a mistake students make, as a text patch of the solution notebook; it must lose exactly the
checks listed, the first with a hint that names the mistake, and keep the others. The mistakes
of the optimizer and of the training step that break training lose the fine-tuning check too,
since ``train_classifier`` runs the student's ``SGD`` and ``train_step``.

Cheap on purpose: the notebook's pass over the 397 photos (about 10 s) is replaced, in these
graded copies, by the grader's own features of the same photos (:func:`~npmobilenet.grading.
assignment4.hymenoptera_features`, the same numbers, computed once per process and shared
with the fine-tuning check), so every wrong solution costs well under a second beyond that one
pass. The graded copies need the weights and photos of ``../shared``: without it they skip (and
fail under ``NPMOBILENET_STRICT_TESTS=1``), and a last test checks what a student without the
folder is told.
"""

import numpy as np
import pytest
from test_grading import lost, patched_solution, solution_path, wrong

from npmobilenet import nn, no_grad, optim
from npmobilenet import transforms as T
from npmobilenet.data import ImageFolder
from npmobilenet.grading import assignment4, load_assignment
from npmobilenet.grading.checks import CheckFailed, Student, run_check
from npmobilenet.grading.notebook import cell_source, read_notebook, set_cell_source
from npmobilenet.grading.runner import grade_in_this_process
from npmobilenet.models import mobilenet_v2

A4 = "04-optimizer-finetuning"
SGD_CHECKS = {"sgd/plain", "sgd/momentum", "sgd/dampening", "sgd/weight_decay", "sgd/nesterov", "sgd/model"}
ADAM_CHECKS = {"adam/first_step", "adam/steps", "adam/eps", "adam/weight_decay", "adam/model"}


@pytest.fixture
def shared_for_the_notebook(shared_dir, monkeypatch):
    """The notebook finds the shared folder through NPMOBILENET_SHARED (these tests run it from the project's root)."""
    monkeypatch.setenv("NPMOBILENET_SHARED", str(shared_dir))


PHOTOS_PASS = """\
train_features, train_labels = extract_features(model, DataLoader(train_set, batch_size=32))
val_features, val_labels = extract_features(model, DataLoader(val_set, batch_size=32))"""
GRADERS_FEATURES = """\
from npmobilenet.grading.assignment4 import hymenoptera_features
(train_features, train_labels), (val_features, val_labels) = hymenoptera_features()"""


def quick(notebook):
    """``notebook`` with its pass over the photos replaced by the grader's features of the same photos."""
    cells = [cell for cell in notebook["cells"] if PHOTOS_PASS in cell_source(cell)]
    assert len(cells) == 1, "the notebook's pass over the photos changed: update PHOTOS_PASS"
    set_cell_source(cells[0], cell_source(cells[0]).replace(PHOTOS_PASS, GRADERS_FEATURES))
    return notebook


SGD_DECAY = """\
            g = p.grad
            if self.weight_decay != 0:
                g = g + self.weight_decay * p.data  # the penalty's gradient, before the momentum
            if self.momentum != 0:"""
SGD_STEP = """\
            g = p.grad
            if self.weight_decay != 0:
                g = g + self.weight_decay * p.data  # the penalty's gradient, before the momentum
            if self.momentum != 0:
                if self.buffers[i] is None:
                    self.buffers[i] = g.copy()  # the first step: the gradient itself, undamped
                else:
                    self.buffers[i] = self.momentum * self.buffers[i] + (1 - self.dampening) * g
                g = g + self.momentum * self.buffers[i] if self.nesterov else self.buffers[i]
            p.data -= self.lr * g"""
SGD_DECAY_AFTER = SGD_STEP.replace(SGD_DECAY, "            g = p.grad\n            if self.momentum != 0:").replace(
    "            p.data -= self.lr * g",
    "            if self.weight_decay != 0:\n                g = g + self.weight_decay * p.data\n"
    "            p.data -= self.lr * g")
SGD_ZERO_GRAD = '''\
            p.grad[...] = 0
        ### END SOLUTION

    def step(self):
        """Move every parameter against its gradient'''

WRONG = [
    wrong("sgd: momentum as an average of the gradients", A4,
          "self.buffers[i] = g.copy()  # the first step: the gradient itself, undamped",
          "self.buffers[i] = (1 - self.momentum) * g",
          {"sgd/momentum", "sgd/dampening", "sgd/weight_decay", "sgd/nesterov", "sgd/model"},
          "Yours averages the gradients into the buffer"),
    wrong("sgd: the first step damped, as a buffer starting at zeros does", A4,
          "self.buffers[i] = g.copy()  # the first step: the gradient itself, undamped",
          "self.buffers[i] = (1 - self.dampening) * g",
          {"sgd/dampening"}, "torch's buffer starts as the first gradient itself"),
    wrong("sgd: weight decay added after the momentum", A4,
          SGD_STEP, SGD_DECAY_AFTER,
          {"sgd/weight_decay", "sgd/nesterov", "sgd/model"}, "Yours applies the weight decay outside the momentum"),
    wrong("sgd: nesterov=True ignored", A4,
          "g = g + self.momentum * self.buffers[i] if self.nesterov else self.buffers[i]",
          "g = self.buffers[i]",
          {"sgd/nesterov"}, "Yours takes plain momentum's step, b, where nesterov=True steps by g + mu * b"),
    wrong("sgd: a step up the gradient", A4,
          "            p.data -= self.lr * g\n", "            p.data += self.lr * g\n",
          SGD_CHECKS | {"finetune/accuracy"}, "Yours moves the parameters up the gradient"),
    wrong("sgd: zero_grad rebinds a local name, the gradients stay", A4,
          SGD_ZERO_GRAD,
          SGD_ZERO_GRAD.replace("p.grad[...] = 0", "grad = p.grad\n            grad = np.zeros_like(grad)"),
          {"sgd/model"}, "after zero_grad(), the .grad of 0.weight still holds the last gradient"),
    wrong("adam: no bias correction", A4,
          "m_hat = m / (1 - beta1**self.t)\n            v_hat = v / (1 - beta2**self.t)",
          "m_hat, v_hat = m, v",
          ADAM_CHECKS, "Yours has no bias correction"),
    wrong("adam: the steps counted from t = 0", A4,
          "        self.t += 1\n        for p, m, v in zip(", "        for p, m, v in zip(",
          ADAM_CHECKS, "count the steps from t = 1"),
    wrong("adam: eps inside the square root", A4,
          "np.sqrt(v_hat) + self.eps", "np.sqrt(v_hat + self.eps)",
          # on the network's float32 gradients too: some are small, where eps = 1e-8 inside the root weighs
          {"adam/eps", "adam/model"}, "Yours adds eps inside the square root"),
    wrong("adam: weight decay decoupled, as AdamW's", A4,
          "g = g + self.weight_decay * p.data\n            m *= beta1",
          "p.data *= 1 - self.lr * self.weight_decay\n            m *= beta1",
          {"adam/weight_decay"}, "Yours applies the weight decay to the weights directly, as AdamW does"),
    wrong("adam: params kept as a generator, used up by the constructor", A4,
          "        self.params = list(params)\n        self.lr, self.betas",
          "        self.params = params\n        self.lr, self.betas",
          {"adam/model"}, "used up by an earlier loop over it? Keep list(params)"),
    wrong("train_step: no zero_grad, the gradients add up", A4,
          "    optimizer.zero_grad()  # the layers add into .grad: clear what the last step left there\n", "",
          # train_classifier runs it and still clears the bar: momentum-like, but no longer torch's steps
          {"train_step/steps"}, "Yours adds up the gradients of every step"),
    wrong("train_step: the loss of the batch after the step", A4,
          "    optimizer.step()\n    ### END SOLUTION\n    return float(loss)",
          "    optimizer.step()\n    loss = criterion(model(x), y)\n    ### END SOLUTION\n    return float(loss)",
          {"train_step/loss"}, "That is the loss after the step"),
    wrong("train_step: criterion.backward(loss), every gradient times the loss", A4,
          "    model.backward(criterion.backward())\n", "    model.backward(criterion.backward(loss))\n",
          {"train_step/one_step", "train_step/steps"}, "Yours has every gradient multiplied by the loss"),
    wrong("extract_features: batch norm left in training mode", A4,
          "    model.eval()\n    features, labels = [], []", "    features, labels = [], []",
          {"finetune/features"}, "Yours normalises with the statistics of each batch"),
    wrong("train_classifier: the labels not shuffled with the features", A4,
          "features[batch], labels[batch])", "features[batch], labels[start : start + batch_size])",
          {"finetune/accuracy"}, "That is about chance: the training does not work"),
]


def test_the_wrong_solutions_name_real_checks_and_cover_every_task():
    ids = {check.id for task in load_assignment(A4).TASKS for check in task.checks}
    assert len(WRONG) >= 8
    for case in WRONG:
        assert case.assignment == A4 and case.loses and case.loses <= ids, case.mistake
    covered = set().union(*(case.loses for case in WRONG))
    assert {check_id.split("/")[0] for check_id in covered} == {"sgd", "adam", "train_step", "finetune"}


@pytest.mark.usefixtures("shared_for_the_notebook")
@pytest.mark.parametrize("case", WRONG, ids=lambda case: case.mistake)
def test_a_wrong_solution_loses_the_checks_it_should_and_keeps_the_others(case):
    result = grade_in_this_process(quick(patched_solution(case.assignment, case.old, case.new)))
    assert lost(result) == case.loses
    failed = [check for check in result["checks"] if check["id"] in case.loses]
    assert case.hint in failed[0]["hint"], failed[0]["hint"]
    assert all(check["hint"] and "Traceback" not in check["hint"] for check in failed)
    assert result["score"] == 100 - sum(check["points"] for check in failed)


@pytest.mark.usefixtures("shared_for_the_notebook")
def test_the_quick_copy_of_the_solution_scores_full_marks_and_its_features_are_the_notebooks():
    result = grade_in_this_process(quick(read_notebook(solution_path(A4))))
    assert (result["score"], result["notes"]) == (100, [])
    # the grader's features are those the notebook's extract_features computes: the first photos, through both
    (train_features, train_labels), (val_features, _) = assignment4.hymenoptera_features()
    assert train_features.shape == (244, 1280) and val_features.shape == (153, 1280)
    assert train_features.dtype == np.float32 and not train_features.flags.writeable
    folder = assignment4.shared_folder()
    photos = ImageFolder(folder / assignment4.DATA_FOLDER / "train", transform=T.Compose([
        T.Resize(assignment4.RESIZE_SIZE), T.CenterCrop(assignment4.CROP_SIZE), T.ToArray(),
        T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)]))
    x = np.stack([photos[i][0] for i in range(4)])
    with pytest.warns(UserWarning):
        model = mobilenet_v2(weights=str(folder / assignment4.WEIGHTS_FILE), num_classes=2).eval()
    model.classifier = nn.Sequential()  # the model now ends at the pooled features
    with no_grad():
        assert np.allclose(model(x), train_features[:4], atol=1e-5)
    assert np.array_equal(train_labels[:4], [photos[i][1] for i in range(4)])


@pytest.mark.parametrize("name, settings", [
    ("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=0.1, weight_decay=0.1)),
])
def test_the_graders_own_steps_are_the_librarys(name, settings):
    """The right rule of :func:`sgd_steps` and :func:`adam_steps`, base of their mistakes, is npmobilenet.optim's."""
    initial, gradients = assignment4.random_case(5, seed=7)
    simulate = assignment4.sgd_steps if name == "SGD" else assignment4.adam_steps
    simulated = simulate(initial, gradients, **settings)
    params = [nn.Parameter(array.copy()) for array in initial]
    optimizer = getattr(optim, name)(params, **settings)
    for k, step_gradients in enumerate(gradients):
        for param, grad in zip(params, step_gradients):
            param.grad[...] = grad
        optimizer.step()
        for param, expected in zip(params, simulated[k]):
            np.testing.assert_allclose(param.data, expected, rtol=0, atol=1e-12)


def test_without_the_shared_folder_a_student_is_told_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("NPMOBILENET_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(assignment4, "__file__", str(tmp_path / "a" / "b" / "c" / "assignment4.py"))
    with pytest.raises(CheckFailed) as failure:
        assignment4.shared_folder()
    assert "set NPMOBILENET_SHARED to it" in str(failure.value) and str(tmp_path / "nowhere") in str(failure.value)

    def train_classifier(features, labels):
        return np.zeros((2, features.shape[1])), np.zeros(2)

    result = {}
    for check in load_assignment(A4).TASKS[-1].checks:
        if check.id == "finetune/accuracy":
            result = run_check(check, Student({"train_classifier": train_classifier}))
    assert result["score"] == 0 and result["hint"].startswith("the grader needs the shared folder")
