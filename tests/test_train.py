"""The training loop: equal to torch step for step, evaluation, checkpoints and resuming, Ctrl-C, progress, pictures."""

import io

import numpy as np
import pytest
from conftest import require_module

import npmobilenet
from npmobilenet import nn, optim, train


class BatchList:
    """A loader of fixed batches, as ``fit`` sees a DataLoader: ``len`` and iteration."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def random_batches(count, batch_size, size, num_classes, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return BatchList([
        (rng.standard_normal((batch_size, 3, size, size)).astype(dtype), rng.integers(0, num_classes, batch_size))
        for _ in range(count)
    ])


def test_five_training_steps_equal_torchvisions(torch):
    """fit() on five batches: MobileNetV2 at width 0.5, 64x64, SGD with momentum and weight decay,
    batch norm in training mode; every weight and buffer equals torchvision's after the same steps.

    Training amplifies rounding differences: at 64x64 the last stages' batch norms normalise
    16 values per channel, where the gradient is ill-conditioned, and each step multiplies a
    difference by about 5 at lr 1e-3 (measured: 3e-13 after one step, 9e-11 after five; about
    30 times a step at lr 0.05). So the comparison is float64 to 1e-9 of the largest value, at
    lr 1e-3. The projection batch norms' biases of the residual blocks have a gradient of
    exactly 0 (a bias-free convolution and a batch norm with batch statistics follow them), so
    both sides hold rounding noise there, far below that scale.
    """
    import torchvision

    model = npmobilenet.MobileNetV2(num_classes=4, width_mult=0.5, dropout=0.0, seed=0).astype(np.float64)
    start = model.state_dict()
    torch_model = torchvision.models.mobilenet_v2(num_classes=4, width_mult=0.5, dropout=0.0).double()
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
    loader = random_batches(5, 4, 64, 4, seed=1)
    settings = {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-3}

    train.fit(model, loader, optim.SGD(model.parameters(), **settings), epochs=1, log=None)

    torch_optimizer = torch.optim.SGD(torch_model.parameters(), **settings)
    torch_model.train()
    for x, y in loader:
        torch_optimizer.zero_grad()
        torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch_optimizer.step()
    theirs = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    scale = max(np.abs(value).max() for value in theirs.values() if value.dtype.kind == "f")
    for name, value in model.state_dict().items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(value, theirs[name], rtol=1e-9, atol=1e-9 * scale, err_msg=name)
        else:
            np.testing.assert_array_equal(value, theirs[name], err_msg=name)
    moved = np.abs(model.state_dict()["classifier.1.weight"] - start["classifier.1.weight"]).max()
    assert moved > 1e-4, "the weights must have moved"


def test_history_records_every_epoch_and_keeps_the_best_weights():
    model = npmobilenet.MobileNetV2(num_classes=3, width_mult=0.35, seed=0)
    loader, val = random_batches(2, 4, 32, 3, seed=2, dtype=np.float32), random_batches(1, 6, 32, 3, seed=3, dtype=np.float32)
    history = train.fit(model, loader, optim.SGD(model.parameters(), lr=0.01), epochs=3, val_loader=val, log=None)
    assert history.epochs == 3
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"):
        assert len(getattr(history, name)) == 3, name
    best = int(np.argmax(history.val_accuracy)) + 1
    assert history.best_epoch == best
    assert set(history.best_state) == set(model.state_dict())
    assert history.val_loss[-1] == pytest.approx(train.evaluate(model, val).loss, rel=1e-6)


def test_evaluate_counts_the_confusion_matrix_by_hand():
    model = npmobilenet.MobileNetV2(num_classes=3, width_mult=0.35, seed=0)
    loader = random_batches(3, 5, 32, 3, seed=4, dtype=np.float32)
    model.train()
    result = train.evaluate(model, loader)
    assert model.training, "evaluate puts the model back in the mode it was in"
    model.eval()
    with npmobilenet.no_grad():
        predicted = np.concatenate([model(x).argmax(axis=1) for x, _ in loader])
    truth = np.concatenate([y for _, y in loader])
    expected = np.zeros((3, 3), dtype=np.int64)
    for t, p in zip(truth, predicted):
        expected[t, p] += 1
    np.testing.assert_array_equal(result.confusion_matrix, expected)
    assert result.accuracy == pytest.approx(np.mean(truth == predicted))
    assert result.count == 15
    for k in range(3):
        mine = truth == k
        if mine.any():
            assert result.per_class_accuracy[k] == pytest.approx(np.mean(predicted[mine] == k))


def test_freeze_batchnorm_keeps_running_statistics_and_batchnorm_in_eval_mode():
    model = npmobilenet.MobileNetV2(num_classes=2, width_mult=0.35, seed=0)
    before = {k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    train.fit(model, random_batches(2, 4, 32, 2, seed=5, dtype=np.float32), optim.SGD(model.parameters(), lr=0.01),
              epochs=1, freeze_batchnorm=True, log=None)
    after = model.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    model2 = npmobilenet.MobileNetV2(num_classes=2, width_mult=0.35, seed=0)
    train.fit(model2, random_batches(2, 4, 32, 2, seed=5, dtype=np.float32), optim.SGD(model2.parameters(), lr=0.01),
              epochs=1, log=None)
    assert not np.array_equal(model2.state_dict()["features.0.1.running_mean"], before["features.0.1.running_mean"])


def test_a_per_batch_schedule_steps_every_batch():
    model = npmobilenet.MobileNetV2(num_classes=2, width_mult=0.35, seed=0)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=6)
    history = train.fit(model, random_batches(3, 2, 32, 2, seed=6, dtype=np.float32), optimizer, epochs=2,
                        scheduler=scheduler, log=None)
    assert scheduler.last_epoch == 6
    replay = optim.lr_scheduler.OneCycleLR(optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1, momentum=0.9), max_lr=0.1, total_steps=6)
    for _ in range(3):  # the three batches of epoch 1
        replay.optimizer.step()
        replay.step()
    assert history.learning_rate[1] == replay.get_last_lr()[0] != history.learning_rate[0]


def test_an_epoch_summary_line_and_a_progress_bar():
    log = io.StringIO()
    model = npmobilenet.MobileNetV2(num_classes=2, width_mult=0.35, seed=0)
    train.fit(model, random_batches(2, 4, 32, 2, seed=7, dtype=np.float32), optim.SGD(model.parameters(), lr=1e-3),
              epochs=2, log=log, progress=False)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2  train loss ")
    stream = io.StringIO()
    bar = train.ProgressBar(4, "epoch 1/1", enabled=True, stream=stream)
    bar.update(images=8, loss=0.5, accuracy=0.25)
    assert "epoch 1/1 [#####---------------] 1/4" in stream.getvalue()
    assert "loss 0.5000" in stream.getvalue() and "img/s" in stream.getvalue() and "ETA" in stream.getvalue()
    quiet = io.StringIO()
    train.ProgressBar(4, "x", stream=quiet).update(images=1)  # not a terminal: nothing drawn
    assert quiet.getvalue() == ""


def test_plot_history_draws_both_curves(tmp_path):
    require_module("matplotlib")
    history = train.History(train_loss=[1.0, 0.5], train_accuracy=[0.5, 0.8], val_loss=[1.1, 0.7],
                            val_accuracy=[0.4, 0.7], learning_rate=[0.1, 0.1], seconds=[1.0, 1.0], best_epoch=2)
    path = tmp_path / "curves.png"
    figure = train.plot_history(history, path)
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == 2
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (900, 350)


# --- checkpoints, resuming, Ctrl-C ---------------------------------------------------------------


def image_folder(root, per_class=6, size=(40, 52)):
    """A small ImageFolder tree of random PNGs: ``root/a`` and ``root/b``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    return root


def augmenting_loader(root):
    from npmobilenet import transforms as T
    from npmobilenet.data import DataLoader, ImageFolder

    transform = T.Compose([T.RandomResizedCrop(48), T.RandomHorizontalFlip(), T.ToArray(),
                           T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    return DataLoader(ImageFolder(root, transform=transform), batch_size=4, shuffle=True, seed=3, workers=2)


def training_run(root, epochs, checkpoint=None, resume=None, step_hook=None, width_mult=0.35):
    """A run with everything random in play: shuffling, random crops and flips, dropout, momentum, a schedule."""
    model = npmobilenet.MobileNetV2(num_classes=2, width_mult=width_mult, dropout=0.3, seed=0)
    optimizer = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    if step_hook is not None:
        optimizer.step = step_hook(optimizer.step)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = train.fit(model, augmenting_loader(root), optimizer, epochs, scheduler=scheduler,
                        checkpoint=checkpoint, resume=resume, log=None)
    return model, history


def test_two_epochs_a_stop_and_one_more_equal_three_epochs_bit_for_bit(tmp_path):
    root = image_folder(tmp_path / "images")
    straight, straight_history = training_run(root, 3)
    path = tmp_path / "run.pth"
    training_run(root, 2, checkpoint=path)
    resumed, resumed_history = training_run(root, 3, checkpoint=path, resume=path)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
    assert resumed_history.train_loss == straight_history.train_loss
    assert resumed_history.learning_rate == straight_history.learning_rate
    assert train.load_checkpoint(path)["epoch"] == 3


def test_the_checkpoint_is_torch_loadable_and_names_the_classes(torch, tmp_path):
    root = image_folder(tmp_path / "images")
    path = tmp_path / "run.pth"
    model, _ = training_run(root, 1, checkpoint=path)
    contents = torch.load(path, weights_only=True)
    assert contents["class_names"] == ["a", "b"] and contents["epoch"] == 1
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(contents["model"][name].numpy(), value, err_msg=name)
    assert set(contents["optimizer"]) == {"state", "param_groups"}
    assert npmobilenet.load_torch_checkpoint(path).keys() == model.state_dict().keys()


def test_ctrl_c_leaves_the_last_complete_checkpoint(tmp_path):
    """KeyboardInterrupt in the middle of epoch 2: the file still holds epoch 1, whole, and resuming from it works."""
    root = image_folder(tmp_path / "images")
    path = tmp_path / "run.pth"
    calls = []

    def interrupt_in_epoch_two(step):
        def step_or_interrupt(*args, **kwargs):
            calls.append(1)
            if len(calls) == 5:  # three batches an epoch: the second batch of epoch 2
                raise KeyboardInterrupt
            return step(*args, **kwargs)
        return step_or_interrupt

    with pytest.raises(KeyboardInterrupt):
        training_run(root, 3, checkpoint=path, step_hook=interrupt_in_epoch_two)
    assert train.load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "run.pth"], "no temporary file is left"
    straight, _ = training_run(root, 3)
    resumed, _ = training_run(root, 3, checkpoint=path, resume=path)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_predict_with_a_fine_tuned_checkpoint_names_its_classes(tmp_path):
    root = image_folder(tmp_path / "images", size=(64, 64))
    path = tmp_path / "run.pth"
    model, _ = training_run(root, 1, checkpoint=path, width_mult=1.0)  # predict() builds torchvision's width
    photo = root / "b" / "0.png"
    predictions = npmobilenet.predict(photo, topk=2, weights=path)
    assert sorted(p.label for p in predictions) == ["a", "b"]
    model.eval()
    from npmobilenet.transforms import preprocess

    with npmobilenet.no_grad():
        probabilities = npmobilenet.functional.softmax(model(preprocess(photo)[None]))[0]
    best = predictions[0]
    assert best.label == ["a", "b"][best.index] and best.probability == pytest.approx(probabilities.max(), rel=1e-5)
