"""Training: :func:`fit` a model to a data loader, :func:`evaluate` it, and see the learning curves.

One training step, written out, is what :func:`fit` repeats over every batch of every epoch::

    optimizer.zero_grad()                      # gradients add up otherwise
    logits = model(x, input_grad=False)        # forward, keeping each learning layer's cache
    loss = criterion(logits, y)                # softmax cross-entropy
    model.backward(criterion.backward(), input_grad=False)   # every parameter's .grad
    optimizer.step()                           # move the parameters against their gradients

``input_grad=False`` says that nobody needs ``dL/dx`` of the images, so the backward pass
stops at the lowest layer that learns, and the forward pass runs the frozen layers below it
under ``no_grad()`` (no caches; batch norm folded when it is in evaluation mode): with a
frozen backbone (``model.features.requires_grad_(False)``), the features cost one inference
pass and only the classifier runs backward.

Around those lines :func:`fit` keeps what a real run needs:

* **a progress bar** per epoch on stderr (batches, loss, images/s, time left), shown only when
  stderr is a terminal, and one summary line per epoch;
* **a history** of loss and accuracy per epoch (:class:`History`, drawn by :func:`plot_history`),
  and the weights of the best epoch (highest validation accuracy);
* **checkpoints**: after every epoch, one ``.pth`` file (torch's format, which
  ``torch.load(weights_only=True)`` reads) holding the model, the optimizer, the schedule, the
  epoch, the random states, the class names and the history, written atomically: a run stopped
  by Ctrl-C leaves the last complete checkpoint intact. ``fit(..., resume=path)`` continues
  from it exactly: 2 epochs, a stop, then 1 more give the same weights, bit for bit, as 3
  epochs in one run. ``npmobilenet.predict(image, weights=path)`` reads such a checkpoint and
  names its classes.

**Batch norm while fine-tuning.** In training mode batch norm normalises with the statistics
of the batch and moves its running statistics. When fine-tuning a pretrained network on a
small dataset that changes what the features mean, so ``freeze_batchnorm=True`` keeps every
batch norm in evaluation mode (the running statistics, unchanged) while the rest trains. With
the weights in ``../shared`` it is required: their batch norms have the convolutions'
statistics folded in, and batch statistics would change the network.
"""

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import nn
from .errors import WeightsError
from .grad_mode import no_grad
from .optim.lr_scheduler import OneCycleLR

__all__ = [
    "fit", "evaluate", "History", "Evaluation", "plot_history", "load_checkpoint", "ProgressBar",
    "finetune", "image_folder_loaders", "OPTIMIZERS",
]

CHECKPOINT_FORMAT = "npmobilenet-training-checkpoint"
CHECKPOINT_VERSION = 1


# --- the record of a run ----------------------------------------------------------------------


@dataclass
class History:
    """What :func:`fit` measured, one entry per epoch (``val_*`` stay empty without a validation loader)."""

    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    best_epoch: int = None  # 1-based; the epoch whose weights best_state holds
    best_state: dict = field(default=None, repr=False)  # the model's state dict at its best epoch

    @property
    def epochs(self):
        return len(self.train_loss)

    def to_dict(self):
        """Plain lists and numbers (no arrays), for a checkpoint or JSON."""
        record = asdict(self)
        record.pop("best_state")
        return record


@dataclass
class Evaluation:
    """What :func:`evaluate` measured on a whole loader."""

    loss: float
    accuracy: float
    per_class_accuracy: np.ndarray  # (K,): accuracy on the images of each true class (nan if none)
    confusion_matrix: np.ndarray    # (K, K): [true class, predicted class] counts
    count: int


# --- evaluating ----------------------------------------------------------------------------------


def evaluate(model, loader, criterion=None, num_classes=None, progress=False):
    """Loss, accuracy, per-class accuracy and the confusion matrix of ``model`` on every batch of ``loader``.

    The model runs in evaluation mode under :func:`~npmobilenet.no_grad` (batch norm folded,
    no caches kept) and is put back in the mode it was in. ``num_classes`` defaults to the
    model's output size.
    """
    criterion = nn.CrossEntropyLoss() if criterion is None else criterion
    was_training = model.training
    model.eval()
    total_loss, count, matrix = 0.0, 0, None
    bar = ProgressBar(len(loader), "evaluate", enabled=progress)
    try:
        with no_grad():
            for x, y in loader:
                logits = model(x)
                if matrix is None:
                    k = num_classes or logits.shape[1]
                    matrix = np.zeros((k, k), dtype=np.int64)
                total_loss += float(criterion(logits, y)) * len(y)
                np.add.at(matrix, (y, logits.argmax(axis=1)), 1)
                count += len(y)
                bar.update(images=len(y))
    finally:
        bar.close()
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: the loader gave no images")
    per_class = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    per_class[matrix.sum(axis=1) == 0] = np.nan
    return Evaluation(total_loss / count, np.trace(matrix) / count, per_class, matrix, count)


# --- training ----------------------------------------------------------------------------------


def fit(model, train_loader, optimizer, epochs, *, criterion=None, scheduler=None, val_loader=None,
        freeze_batchnorm=False, checkpoint=None, resume=None, class_names=None, restore_best=False,
        progress=None, log=True):
    """Train ``model`` for ``epochs`` epochs in all (counting those of a resumed run); returns the :class:`History`.

    * ``criterion``: the loss, :class:`~npmobilenet.nn.CrossEntropyLoss` by default.
    * ``scheduler``: a learning-rate schedule from :mod:`npmobilenet.optim.lr_scheduler`,
      stepped after every epoch, or after every batch for ``OneCycleLR`` (as its
      total_steps counts batches).
    * ``val_loader``: evaluated after every epoch (:func:`evaluate`); the best epoch is the one
      with the highest validation accuracy (the lowest training loss without one).
    * ``freeze_batchnorm``: keep every batch norm in evaluation mode (see the module docstring).
    * ``checkpoint``: a ``.pth`` path written atomically after every epoch; ``resume``: a
      checkpoint to continue from (often the same path).
    * ``class_names``: saved in the checkpoint; by default ``train_loader.dataset.classes``.
    * ``restore_best``: load the best epoch's weights into the model at the end.
    * ``progress``: show the progress bar (default: when stderr is a terminal); ``log``: where
      the one-line summary of each epoch goes: ``True`` (the default) for stderr, a stream, or
      ``None`` for silence.

    Ctrl-C stops the run; the last checkpoint written stays whole, and the message says which
    epoch it holds.
    """
    criterion = nn.CrossEntropyLoss() if criterion is None else criterion
    class_names = class_names or list(getattr(getattr(train_loader, "dataset", None), "classes", []) or [])
    history = History()
    start = 0
    if resume is not None:
        start, history = restore_training(resume, model, optimizer, scheduler, train_loader)
    per_batch_schedule = isinstance(scheduler, OneCycleLR)
    for epoch in range(start, epochs):
        began = time.perf_counter()
        learning_rate = optimizer.param_groups[0]["lr"]
        try:
            train_loss, train_accuracy = train_one_epoch(
                model, train_loader, optimizer, criterion, freeze_batchnorm,
                scheduler if per_batch_schedule else None,
                ProgressBar(len(train_loader), f"epoch {epoch + 1}/{epochs}", enabled=progress),
            )
        except KeyboardInterrupt:
            written = checkpoint is not None and os.path.exists(checkpoint)
            _say(log, f"interrupted in epoch {epoch + 1}: " + (
                f"{checkpoint} is intact and holds the last complete epoch; resume=it continues from there"
                if written else "no checkpoint has been written"))
            raise
        if scheduler is not None and not per_batch_schedule:
            scheduler.step()
        result = evaluate(model, val_loader, criterion) if val_loader is not None else None
        record_epoch(history, model, train_loss, train_accuracy, result, learning_rate, time.perf_counter() - began)
        _say(log, epoch_summary(history, epochs))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, scheduler, train_loader, history, class_names)
    if restore_best and history.best_state is not None:
        model.load_state_dict(history.best_state)
    return history


def train_one_epoch(model, loader, optimizer, criterion, freeze_batchnorm, batch_scheduler, bar):
    """One pass over ``loader``: the training step of the module docstring on every batch. Returns mean loss and accuracy."""
    set_training_mode(model, freeze_batchnorm)
    total_loss, correct, count = 0.0, 0, 0
    try:
        for x, y in loader:
            optimizer.zero_grad()
            logits = nn.forward_through(model, x, input_grad=False)
            loss = criterion(logits, y)
            nn.backward_through(model, criterion.backward(), input_grad=False)
            optimizer.step()
            if batch_scheduler is not None:
                batch_scheduler.step()
            total_loss += float(loss) * len(y)
            correct += int((logits.argmax(axis=1) == y).sum())
            count += len(y)
            bar.update(images=len(y), loss=total_loss / count, accuracy=correct / count)
    finally:
        bar.close()
    if count == 0:
        raise ValueError("fit: the training loader gave no images (is drop_last dropping the only batch?)")
    return total_loss / count, correct / count


def set_training_mode(model, freeze_batchnorm):
    """Training mode for the model; its batch norms stay in evaluation mode when ``freeze_batchnorm``."""
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def record_epoch(history, model, train_loss, train_accuracy, result, learning_rate, seconds):
    """Append one epoch to ``history``, and keep the model's weights when this epoch is the best so far."""
    history.train_loss.append(train_loss)
    history.train_accuracy.append(train_accuracy)
    if result is not None:
        history.val_loss.append(result.loss)
        history.val_accuracy.append(result.accuracy)
    history.learning_rate.append(learning_rate)
    history.seconds.append(seconds)
    scores = history.val_accuracy if result is not None else [-loss for loss in history.train_loss]
    if history.best_epoch is None or scores[-1] > scores[history.best_epoch - 1]:
        history.best_epoch = history.epochs
        history.best_state = model.state_dict()


def epoch_summary(history, epochs):
    """``epoch 3/30  train loss 0.312 acc 0.885  val loss 0.201 acc 0.941  5.1 s``."""
    k = history.epochs - 1
    text = f"epoch {k + 1}/{epochs}  train loss {history.train_loss[k]:.4f} acc {history.train_accuracy[k]:.3f}"
    if history.val_loss:
        text += f"  val loss {history.val_loss[k]:.4f} acc {history.val_accuracy[k]:.3f}"
    return text + f"  lr {history.learning_rate[k]:.3g}  {history.seconds[k]:.1f} s"


def _say(log, text):
    """Print one line of the run's log: to stderr for ``log=True``, to ``log`` if it is a stream, nowhere for None."""
    if log is True:
        log = sys.stderr
    if log:
        print(text, file=log, flush=True)


# --- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(path, model, optimizer, scheduler, loader, history, class_names):
    """Everything needed to continue the run, in one torch-format file, written atomically."""
    from .io import save_torch_file

    save_torch_file({
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "epoch": history.epochs,
        "class_names": list(class_names),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "random_state": random_state(model, loader),
        "history": history.to_dict(),
        "best_model": history.best_state,
    }, path)


def load_checkpoint(path):
    """The contents of a checkpoint written by :func:`fit` (a dict), read without torch, safely."""
    from .io import load_torch_file

    contents = load_torch_file(path)
    if not isinstance(contents, dict) or contents.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: expected a training checkpoint written by npmobilenet.train.fit")
    return contents


def restore_training(path, model, optimizer, scheduler, loader):
    """Load a checkpoint into the model, the optimizer, the schedule and the random states; returns ``(epoch, history)``."""
    contents = load_checkpoint(path)
    model.load_state_dict(contents["model"])
    optimizer.load_state_dict(contents["optimizer"])
    if scheduler is not None:
        if contents["scheduler"] is None:
            raise WeightsError(f"{path}: the checkpoint has no schedule to resume, but a scheduler was given")
        scheduler.load_state_dict(contents["scheduler"])
    restore_random_state(model, loader, contents["random_state"])
    saved = dict(contents["history"])
    history = History(**{key: value for key, value in saved.items() if key != "best_epoch"})
    history.best_epoch, history.best_state = saved["best_epoch"], contents["best_model"]
    return contents["epoch"], history


def random_state(model, loader):
    """The state of every random generator the run draws from: the loader's, and each dropout layer's."""
    return {
        "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
        "dropout": [module.rng.bit_generator.state for module in model.modules() if isinstance(module, nn.Dropout)],
    }


def restore_random_state(model, loader, state):
    if state["loader"] is not None:
        loader.load_state_dict(state["loader"])
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    for module, generator_state in zip(dropouts, state["dropout"]):
        module.rng.bit_generator.state = generator_state


# --- the recipe: fine-tuning a pretrained MobileNetV2 on a folder of images ---------------------

# name -> (optimizer class, its settings besides lr): SGD with momentum and a little weight decay
# is the transfer-learning tutorial's recipe; the others with torch's defaults.
OPTIMIZERS = {
    "sgd": ("SGD", {"momentum": 0.9, "weight_decay": 1e-4}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "rmsprop": ("RMSprop", {"alpha": 0.9, "momentum": 0.9}),  # the paper's decay and momentum
}


def image_folder_loaders(data_dir, batch_size=16, seed=0, workers=None, crop_size=224, resize_size=256):
    """The loaders of ``data_dir/train`` (and ``data_dir/val`` when it exists), as PyTorch's transfer-learning tutorial makes them.

    Training images get a random crop of random size and aspect ratio, resized to
    ``crop_size`` (``RandomResizedCrop``), and a random horizontal flip: every epoch sees
    slightly different images. Validation images are resized (shorter side ``resize_size``)
    and centre-cropped, as for prediction. Both are normalised with ImageNet's mean and std.
    Returns ``(train_loader, val_loader or None)``.
    """
    from . import transforms as T
    from .data import DataLoader, ImageFolder

    normalize = [T.ToArray(), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)]
    augment = T.Compose([T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip(), *normalize])
    plain = T.Compose([T.Resize(resize_size), T.CenterCrop(crop_size), *normalize])
    root = os.fspath(data_dir)
    train_set = ImageFolder(os.path.join(root, "train"), transform=augment)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, seed=seed, workers=workers)
    val_dir = os.path.join(root, "val")
    if not os.path.isdir(val_dir):
        return train_loader, None
    val_set = ImageFolder(val_dir, transform=plain)
    if val_set.classes != train_set.classes:
        raise ValueError(f"{val_dir}: expected the classes of {root}/train, {train_set.classes}, found {val_set.classes}")
    return train_loader, DataLoader(val_set, batch_size=batch_size, workers=workers)


def finetune(data_dir, *, weights=None, epochs=10, batch_size=16, lr=0.01, optimizer="sgd", train_blocks=None,
             freeze_batchnorm=True, checkpoint=None, resume=None, seed=0, workers=None, progress=None, log=True):
    """Fine-tune a pretrained MobileNetV2 on ``data_dir/train`` (a folder per class), validating on ``data_dir/val``.

    Transfer learning in the usual two forms:

    * ``train_blocks=0``: the features are frozen and only a new classifier for the folder's
      classes learns (the pretrained network as a fixed feature extractor);
    * ``train_blocks=k``: the last ``k`` of the 19 feature blocks learn too, with the classifier;
    * ``train_blocks=None`` (the default): the whole network learns.

    ``weights`` are the pretrained weights (a registry name or a file; by default found as
    :func:`~npmobilenet.mobilenet_v2` finds them). ``optimizer`` is a key of
    :data:`OPTIMIZERS`. Batch norm stays in evaluation mode unless ``freeze_batchnorm=False``.
    The other arguments are :func:`fit`'s. Returns ``(model, history)``, with the model
    holding the best epoch's weights.
    """
    import warnings

    from . import optim
    from .models import mobilenet_v2

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"finetune: expected optimizer to be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if resume is not None:
        from .io.checks import existing_file

        existing_file(resume)  # before anything is said or loaded
    train_loader, val_loader = image_folder_loaders(data_dir, batch_size=batch_size, seed=seed, workers=workers)
    classes = train_loader.dataset.classes
    with warnings.catch_warnings():  # the new classifier is the point here: say it in the log instead
        warnings.simplefilter("ignore", UserWarning)
        model = mobilenet_v2(weights=weights, num_classes=len(classes), seed=seed)
    if train_blocks is not None:
        if not 0 <= train_blocks <= len(model.features):
            raise ValueError(f"finetune: expected train_blocks between 0 and {len(model.features)}, got {train_blocks}")
        model.features.requires_grad_(False)
        if train_blocks:
            model.features[-train_blocks:].requires_grad_(True)
    name, settings = OPTIMIZERS[optimizer]
    learning = [p for p in model.parameters() if p.requires_grad]
    what = ("the whole network" if train_blocks is None else
            f"a new classifier{f' and the last {train_blocks} feature blocks' if train_blocks else ''}")
    _say(log, f"fine-tuning on {len(train_loader.dataset)} images of {len(classes)} classes ({', '.join(classes)}): "
              f"{what}, {sum(p.data.size for p in learning):,} parameters learn")
    history = fit(model, train_loader, getattr(optim, name)(learning, lr=lr, **settings), epochs,
                  val_loader=val_loader, freeze_batchnorm=freeze_batchnorm, checkpoint=checkpoint, resume=resume,
                  class_names=classes, restore_best=True, progress=progress, log=log)
    return model, history


# --- the progress bar ----------------------------------------------------------------------------


class ProgressBar:
    """``epoch 2/5 [########------------]  9/16  loss 0.4123  acc 0.812  41.3 img/s  ETA 0:04`` on stderr.

    Drawn only when ``enabled`` (default: when the stream is a terminal); otherwise every call
    does nothing, so logs stay clean.
    """

    WIDTH = 20

    def __init__(self, total, description, enabled=None, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = is_terminal(self.stream) if enabled is None else bool(enabled)
        self.total, self.description = total, description
        self.done, self.images, self.start = 0, 0, time.perf_counter()

    def update(self, images=0, **values):
        """One more batch done, of ``images`` images; ``values`` (loss=..., accuracy=...) are shown."""
        self.done += 1
        self.images += images
        if self.enabled:
            self.stream.write("\r" + self.line(values))
            self.stream.flush()

    def line(self, values):
        elapsed = time.perf_counter() - self.start
        filled = self.WIDTH * self.done // max(self.total, 1)
        rate = self.images / elapsed if elapsed > 0 else 0.0
        left = elapsed / self.done * (self.total - self.done) if self.done else math.inf
        shown = "  ".join(f"{name} {value:.4f}" if name == "loss" else f"{name[:3]} {value:.3f}" for name, value in values.items())
        eta = "?" if math.isinf(left) else f"{int(left) // 60}:{int(left) % 60:02d}"
        return (f"{self.description} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {self.done}/{self.total}"
                f"  {shown}  {rate:.1f} img/s  ETA {eta}")

    def close(self):
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def is_terminal(stream):
    """True when ``stream`` is a terminal that can redraw a line (not a file, a pipe or TERM=dumb)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


# --- pictures --------------------------------------------------------------------------------------


def plot_history(history, path=None):
    """Learning curves: loss and accuracy per epoch, training and validation. Returns the matplotlib figure.

    Saved as a PNG when ``path`` is given. matplotlib is imported here, only when a picture is
    drawn (``pip install "npmobilenet[viz]"``).
    """
    import matplotlib.pyplot as plt

    epochs = np.arange(1, history.epochs + 1)
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    for axes, name in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.plot(epochs, getattr(history, f"train_{name}"), "o-", label="training")
        if getattr(history, f"val_{name}"):
            axes.plot(epochs, getattr(history, f"val_{name}"), "s-", label="validation")
        axes.set_xlabel("epoch")
        axes.set_title(name)
        axes.grid(alpha=0.3)
        axes.legend()
    if history.best_epoch is not None:
        accuracy_axes.axvline(history.best_epoch, color="gray", linestyle=":", label="best")
    figure.tight_layout()
    if path is not None:
        from .io import atomic_write

        with atomic_write(path) as file:
            figure.savefig(file, format="png", dpi=100)
    return figure
