"""The ``npmobilenet`` command.

* ``npmobilenet predict IMAGE|FOLDER... [--topk K] [--weights NAME_OR_PATH] [--json]``: the
  most likely ImageNet classes of each image (a folder: its image files, sorted), as a table or
  as JSON. Images are read and classified ``MAX_BATCH`` at a time, and each result printed
  when its batch is done, so a folder of 10,000 photos runs in bounded memory; a progress
  display goes to stderr for more than a few images (or on a terminal). An image that cannot
  be read gets its own ``error: ...`` line on stderr and the others are still classified:
  the exit status is then 1 (2 when none could be read).
* ``npmobilenet explain IMAGE... [--method M] [--target CLASS] [--layer NAME] [--out DIR]
  [--weights W]``: one PNG per image, the explanation's heatmap over the photo
  (:mod:`npmobilenet.explain`); every argument and image is checked before any PNG is written.
* ``npmobilenet convert IN OUT``: a checkpoint from one format to another (``.pth`` written by
  ``torch.save`` to ``.npz``, or back), with no torch needed.
* ``npmobilenet demo``: trains a small MobileNet-style network built from the layers on random
  data for a few steps, then checks its backward pass against numerical gradients.
* ``npmobilenet bench [--quick] [--json PATH] [--threads N] ...``: times npmobilenet against
  torchvision's MobileNetV2 (inference, training step, each layer) and measures peak memory;
  see :mod:`npmobilenet.bench`. ``--finetune DATA_DIR`` compares fine-tuning instead.
* ``npmobilenet train DATA_DIR [--epochs --batch-size --lr --optimizer --freeze-backbone
  --train-blocks --out --resume --seed --weights]``: fine-tunes the pretrained network on a
  folder of class folders (:func:`npmobilenet.train.finetune`).
* ``npmobilenet evaluate DATA_DIR --weights W``: accuracy, per-class accuracy and the confusion
  matrix.
* ``npmobilenet grade NOTEBOOK [--json]`` and ``npmobilenet assignments generate``: the
  autograder of the classroom assignments and the student notebooks made from the solutions
  (:mod:`npmobilenet.grading`).

Bad input prints one line, ``error: ...``, on stderr and exits with status 2: wrong arguments,
weights that cannot be used (checked before any image is read), a missing image for
``explain``. Files are written atomically: a failure leaves no partial file.
"""

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, nn
from .errors import NpMobileNetError
from .grading.cli import add_grading_commands
from .gradcheck import check_module


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake prints the one-line ``error: ...`` and exits 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser():
    parser = _ArgumentParser(
        prog="npmobilenet",
        description="MobileNetV2 in plain NumPy, every forward and backward pass written out by hand.",
    )
    parser.add_argument("--version", action="version", version=f"npmobilenet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    commands.required = True
    predict = commands.add_parser(
        "predict",
        help="classify images with MobileNetV2's ImageNet weights",
        description="Print the most likely ImageNet classes of each image, best first. Weights "
        "come from --weights, else $NPMOBILENET_WEIGHTS, else the cache ($NPMOBILENET_HOME, "
        "default ~/.cache/npmobilenet), else a download of torchvision's IMAGENET1K_V1 file.",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE",
                         help="image files (JPEG, PNG, ...), or folders: their image files, sorted")
    predict.add_argument("--topk", type=_positive_int, default=5, help="classes to show per image (default 5)")
    predict.add_argument("--weights", metavar="NAME_OR_PATH", default=None,
                         help="IMAGENET1K_V1, IMAGENET1K_V2, or a .pth/.npz file")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.set_defaults(run=run_predict)

    convert = commands.add_parser(
        "convert",
        help="convert a checkpoint: .pth (torch.save) to .npz, or .npz to .pth",
        description="Read a state dict (a torch.save checkpoint, read safely without torch, or an "
        ".npz file) and write it in the format OUT's suffix names: .npz, or .pth (which "
        "torch.load(..., weights_only=True) reads). OUT is written atomically.",
    )
    convert.add_argument("source", metavar="IN", help="a .pth/.pt checkpoint or a .npz file")
    convert.add_argument("target", metavar="OUT", help="the file to write: .npz or .pth")
    convert.set_defaults(run=run_convert)

    demo = commands.add_parser(
        "demo",
        help="train a small network of the layers on random data and check its gradients",
        description="Build a small MobileNet-style network from npmobilenet.nn (a stem conv, a "
        "depthwise conv, a 1x1 projection, batch norm, ReLU6, pooling, dropout, a linear "
        "classifier), take a few SGD steps on a random batch, then compare its backward pass "
        "with numerical gradients in float64.",
    )
    demo.add_argument("--steps", type=_positive_int, default=20, help="SGD steps (default 20)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(run=run_demo)

    bench = commands.add_parser(
        "bench",
        help="time npmobilenet against torchvision's MobileNetV2: speed and peak memory",
        description="Time MobileNetV2 in NumPy and, when installed, torchvision's, in this one "
        "process, with the same weights, inputs and threads: inference (eval, no_grad) at "
        "several batch sizes, a full training step (forward, cross-entropy, backward, SGD), and "
        "forward+backward of each kind of layer at MobileNetV2's shapes. Prints the median "
        "milliseconds per batch and per image, the ratio numpy/torch (below 1: numpy is faster) "
        "and the peak memory of each side. Without torch it times NumPy alone.",
    )
    bench.add_argument("--eval-batches", type=_batch_list, default=None, metavar="LIST",
                       help="inference batch sizes (default 1,8,32; --quick: 1,8)")
    bench.add_argument("--train-batches", type=_batch_list, default=None, metavar="LIST",
                       help="training-step batch sizes (default 8,32; --quick: 8)")
    bench.add_argument("--layer-batch", type=_positive_int, default=None, metavar="N",
                       help="batch size of the layer rows (default 8; --quick: 2)")
    bench.add_argument("--no-layers", action="store_true", help="skip the layer rows")
    bench.add_argument("--repeats", type=_positive_int, default=None, metavar="N",
                       help="timed runs per case (default 5 for inference and layers, 3 for "
                       "training; --quick: 3, 2 for training)")
    bench.add_argument("--warmup", type=_non_negative_int, default=None, metavar="N",
                       help="untimed warm-up runs before each case's timed runs (default 1)")
    bench.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="threads for torch and for NumPy's BLAS (default: torch's current "
                       "count, the number of cores)")
    bench.add_argument("--weights", metavar="NAME_OR_PATH", default=None,
                       help="IMAGENET1K_V1, IMAGENET1K_V2, or a .pth/.npz file (default: "
                       "random MobileNetV2(seed=0))")
    bench.add_argument("--quick", action="store_true",
                       help="a short run (under a minute on 2 cores): inference at batch 1 "
                       "and 8, training at 8, layers at 2, 3 repeats (2 for training)")
    bench.add_argument("--memory", choices=("auto", "vmhwm", "tracemalloc"), default="auto",
                       help="how peak memory is measured: VmHWM after /proc/self/clear_refs "
                       "(Linux, both sides), tracemalloc (numpy side only), or auto (default: "
                       "the first that works)")
    bench.add_argument("--json", metavar="PATH", default=None,
                       help="also write every figure (all timed samples) to PATH as JSON, "
                       "once the whole run has succeeded")
    bench.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    bench.add_argument("--roofline", metavar="PLOT.png", default=None,
                       help="also measure the machine's limits (NumPy BLAS matmul rate, memory bandwidth), "
                       "time each kind of layer inside the whole network (inference, first --eval-batches "
                       "size) on every side, print each kind's floor and time as a multiple of it, and draw "
                       "the roofline picture to PLOT.png (needs matplotlib)")
    bench.add_argument("--profile", action="store_true",
                       help="instead of comparing, show where npmobilenet's time goes: cProfile on "
                       "one inference (first --eval-batches size) and one training step (first "
                       "--train-batches size), functions by own time")
    bench.add_argument("--finetune", metavar="DATA_DIR", default=None,
                       help="instead, fine-tune on DATA_DIR (train/ and val/ class folders) here and "
                       "with torch, by the same recipe, and print validation accuracy and seconds per "
                       "epoch of both (needs --weights)")
    bench.add_argument("--epochs", type=_positive_int, default=5, help="with --finetune: epochs (default 5)")
    bench.add_argument("--train-blocks", type=_non_negative_int, default=0, metavar="K",
                       help="with --finetune: feature blocks that learn besides the classifier (default 0)")
    bench.add_argument("--lr", type=_positive_float, default=0.01,
                       help="with --finetune: the learning rate (default 0.01; 0.001 when blocks learn too)")
    bench.set_defaults(run=run_bench)
    add_training_commands(commands)
    add_grading_commands(commands)
    add_explain_command(commands)
    return parser


def add_explain_command(commands):
    """``npmobilenet explain``."""
    from .explain.cam import DEFAULT_LAYER
    from .explain.methods import CAM_METHODS, METHODS

    explain = commands.add_parser(
        "explain",
        help="draw what the network looks at: Grad-CAM and other maps over each photo",
        description="For each image, write IMAGE-METHOD.png into --out: the photo as the network "
        "sees it (resized and centre-cropped), the explanation's heatmap over it with a colour bar, "
        "and the class explained. Gradients come from the network's own backward passes. Weights "
        "are found as for predict.",
    )
    explain.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    explain.add_argument("--method", choices=tuple(METHODS), default="gradcam",
                         help="the explanation (default gradcam)")
    explain.add_argument("--target", type=_class_index, default=None, metavar="CLASS",
                         help="the class index to explain (default: the predicted class)")
    explain.add_argument("--layer", default=None, metavar="NAME",
                         help=f"for {', '.join(CAM_METHODS)}: the layer, by its torchvision name "
                         f"(default {DEFAULT_LAYER}; for example features.14 or features.18.0)")
    explain.add_argument("--out", default=".", metavar="DIR", help="the folder for the PNGs (default: here)")
    explain.add_argument("--weights", metavar="NAME_OR_PATH", default=None,
                         help="IMAGENET1K_V1, IMAGENET1K_V2, or a .pth/.npz file")
    explain.set_defaults(run=run_explain)


def _class_index(text):
    return _whole_number(text, 0, "a class index, a whole number of 0 or more")


def add_training_commands(commands):
    """``npmobilenet train`` and ``npmobilenet evaluate``."""
    train = commands.add_parser(
        "train",
        help="fine-tune the pretrained MobileNetV2 on a folder of images, one subfolder per class",
        description="Fine-tune MobileNetV2's ImageNet weights on DATA_DIR/train (one subfolder per "
        "class, as torchvision's ImageFolder), validating on DATA_DIR/val after every epoch: a new "
        "classifier for the folder's classes, random crops and flips, batch norm kept in evaluation "
        "mode. Writes a checkpoint (torch's .pth format) after every epoch; --resume continues one. "
        "The checkpoint names its classes: npmobilenet predict --weights OUT uses them.",
    )
    train.add_argument("data_dir", metavar="DATA_DIR", help="a folder with train/ (and val/) class folders")
    train.add_argument("--epochs", type=_positive_int, default=10, help="epochs in all (default 10)")
    train.add_argument("--batch-size", type=_positive_int, default=16, help="images per batch (default 16)")
    train.add_argument("--lr", type=_positive_float, default=0.01, help="learning rate (default 0.01)")
    train.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"), default="sgd",
                       help="sgd (momentum 0.9, weight decay 1e-4; the default), adam, adamw or rmsprop")
    train.add_argument("--freeze-backbone", action="store_true",
                       help="train the new classifier only: the features stay as they are")
    train.add_argument("--train-blocks", type=_non_negative_int, default=None, metavar="K",
                       help="with --freeze-backbone: the last K feature blocks learn too")
    train.add_argument("--out", metavar="PATH", default="checkpoint.pth",
                       help="the checkpoint written after every epoch (default checkpoint.pth)")
    train.add_argument("--resume", metavar="PATH", default=None, help="continue the run saved in PATH")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--weights", metavar="NAME_OR_PATH", default=None,
                       help="the pretrained weights (default: as predict finds them)")
    train.add_argument("--workers", type=_non_negative_int, default=None,
                       help="threads decoding images (default: one per core, at most 4)")
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix of weights on a folder of images",
        description="Classify every image below DATA_DIR (one subfolder per class, or DATA_DIR/val "
        "when it exists) with the weights, preprocessed as for prediction, and print the accuracy, "
        "each class's accuracy and the confusion matrix. The weights must name the folder's "
        "classes (a checkpoint written by npmobilenet train does).",
    )
    evaluate.add_argument("data_dir", metavar="DATA_DIR", help="class folders, or a folder with val/")
    evaluate.add_argument("--weights", metavar="NAME_OR_PATH", required=True, help="a checkpoint or weights file")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32, help="images per batch (default 32)")
    evaluate.add_argument("--workers", type=_non_negative_int, default=None,
                          help="threads decoding images (default: one per core, at most 4)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of tables")
    evaluate.set_defaults(run=run_evaluate)


def run_train(args, out):
    from .train import finetune

    if args.train_blocks is not None and not args.freeze_backbone:
        raise ValueError("--train-blocks goes with --freeze-backbone (without it the whole network learns)")
    train_blocks = (args.train_blocks or 0) if args.freeze_backbone else None
    try:
        model, history = finetune(
            args.data_dir, weights=args.weights, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            optimizer=args.optimizer, train_blocks=train_blocks, checkpoint=args.out, resume=args.resume,
            seed=args.seed, workers=args.workers,
        )
    except KeyboardInterrupt:
        return 130  # fit has said which checkpoint holds the last complete epoch
    scores = history.val_accuracy or history.train_accuracy
    print(f"wrote {args.out}: {history.epochs} epochs; best {'validation' if history.val_accuracy else 'training'} "
          f"accuracy {scores[history.best_epoch - 1]:.3f} at epoch {history.best_epoch}", file=out)
    return 0


def run_evaluate(args, out):
    from . import transforms as T
    from .data import DataLoader, ImageFolder
    from .models import model_from_state_dict
    from .models.weights import resolve_weights
    from .train import evaluate

    root = Path(args.data_dir)
    if (root / "val").is_dir():
        root = root / "val"
    state_dict, spec = resolve_weights(args.weights)
    transform = T.Compose([T.Resize(spec.resize_size), T.CenterCrop(spec.crop_size), T.ToArray(),
                           T.Normalize(spec.mean, spec.std)])
    dataset = ImageFolder(root, transform=transform)
    if list(spec.categories) != dataset.classes:
        known = spec.categories if len(spec.categories) <= 10 else f"{len(spec.categories)} ImageNet classes"
        raise ValueError(f"{root}: its classes {dataset.classes} are not the ones the weights {args.weights} "
                         f"predict ({known})")
    model = model_from_state_dict(state_dict, spec, source=f"weights {args.weights!r}")
    result = evaluate(model, DataLoader(dataset, batch_size=args.batch_size, workers=args.workers))
    if args.json:
        json.dump({"images": result.count, "accuracy": result.accuracy, "loss": result.loss,
                   "classes": dataset.classes, "per_class_accuracy": [None if np.isnan(a) else a for a in result.per_class_accuracy],
                   "confusion_matrix": result.confusion_matrix.tolist()}, out, indent=2)
        print(file=out)
        return 0
    print(f"{root}: {result.count} images, accuracy {result.accuracy:.4f}, loss {result.loss:.4f}", file=out)
    width = max(len(name) for name in dataset.classes)
    print(f"\n{'class':<{width}}  images  accuracy", file=out)
    for name, row, accuracy in zip(dataset.classes, result.confusion_matrix, result.per_class_accuracy):
        print(f"{name:<{width}}  {row.sum():>6}  {accuracy:>8.4f}", file=out)
    print("\nconfusion matrix (rows: true class, columns: predicted)", file=out)
    print(" " * width + "  " + "  ".join(f"{name[:8]:>8}" for name in dataset.classes), file=out)
    for name, row in zip(dataset.classes, result.confusion_matrix):
        print(f"{name:<{width}}  " + "  ".join(f"{count:>8}" for count in row), file=out)
    return 0


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _batch_list(text):
    from .bench import parse_batches

    try:
        return parse_batches(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _non_negative_int(text):
    from .bench import parse_count

    try:
        return parse_count(text, minimum=0)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_finetune_bench(args, out):
    from .bench.finetune import format_finetune_report, run_finetune_bench

    if args.weights is None:
        raise ValueError("--finetune needs --weights: the pretrained weights both sides start from")
    torch_side = importlib.util.find_spec("torch") is not None  # without torch, our side alone
    report = run_finetune_bench(args.finetune, args.weights, epochs=args.epochs, train_blocks=args.train_blocks,
                                lr=args.lr, torch_side=torch_side, log=sys.stderr)
    print(format_finetune_report(report), file=out)
    if args.json:
        from .io import atomic_write

        with atomic_write(args.json, "w") as file:
            json.dump(report, file, indent=2)
            file.write("\n")
    return 0


def run_bench(args, out):
    from . import bench
    from .io import atomic_write

    if args.json is not None:  # checked before the run, which takes minutes
        target = Path(args.json)
        if target.is_dir() or not target.parent.is_dir():
            raise ValueError(f"--json: cannot write {args.json}: expected a file in an existing folder")
    if args.roofline is not None:  # checked before the run too
        from .bench.roofline import check_plot_path

        if args.profile or args.finetune is not None:
            raise ValueError("--roofline goes with the comparison run: drop --profile or --finetune")
        check_plot_path(args.roofline)
    if args.finetune is not None:
        return run_finetune_bench(args, out)
    config = bench.make_config(
        eval_batches=args.eval_batches, train_batches=args.train_batches, layers=not args.no_layers,
        layer_batch=args.layer_batch, repeats=args.repeats, warmup=args.warmup, threads=args.threads,
        weights=args.weights, quick=args.quick, memory=args.memory,
    )
    if args.profile:
        if args.json is not None:
            raise ValueError("--profile prints a profile and writes no JSON: drop --json")
        print(bench.profile_numpy(config), file=out)
        return 0
    report = bench.run_bench(config)
    if args.roofline is not None:
        from .bench.roofline import format_roofline, plot_roofline, run_roofline

        report["roofline"] = run_roofline(config, report["config"]["threads"])
        plot_roofline(report["roofline"], args.roofline)
    if args.json is not None:
        with atomic_write(args.json, mode="w") as file:
            json.dump(report, file, indent=2)
            file.write("\n")
    print(bench.format_report(report, markdown=args.markdown), file=out)
    if args.roofline is not None:
        print("\n" + format_roofline(report["roofline"], markdown=args.markdown), file=out)
        print(f"wrote {args.roofline}", file=out)
    if args.json is not None:
        print(f"wrote {args.json}", file=out)
    return 0


def _positive_int(text):
    return _whole_number(text, 1, "a positive integer")


def _whole_number(text, minimum, what):
    """``int(text)`` when it is at least ``minimum``; otherwise argparse's error, ``expected WHAT, got 'TEXT'``."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def small_mobilenet(num_classes, seed):
    """A miniature of MobileNetV2's pattern: stem, depthwise, pointwise projection, classifier."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False, seed=rng), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False, seed=rng), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1, bias=False, seed=rng), nn.BatchNorm2d(16),
        nn.GlobalAvgPool2d(), nn.Dropout(0.2, seed=rng), nn.Linear(16, num_classes, seed=rng),
    )


def run_demo(args, out):
    rng = np.random.default_rng(args.seed)
    model = small_mobilenet(num_classes=4, seed=rng)
    images = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 4, size=8)
    criterion = nn.CrossEntropyLoss()
    print(model, file=out)
    print(f"\ntraining on {len(images)} random 3x16x16 images, SGD with learning rate 0.5", file=out)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        loss = criterion(model(images), labels)
        model.zero_grad()
        model.backward(criterion.backward())
        for parameter in model.parameters():
            parameter.data -= 0.5 * parameter.grad
        if step == 1 or step == args.steps or step % 5 == 0:
            print(f"  step {step:3d}  loss {float(loss):.4f}", file=out)
    print(f"  {args.steps} steps in {time.perf_counter() - start:.2f} s", file=out)

    print("\ngradient check in float64 (relative error of backward vs central differences):", file=out)
    model.astype(np.float64)
    model[9].eval()  # dropout off, so the output is a deterministic function of the input
    errors = check_module(model, images[:2].astype(np.float64), seed=args.seed)
    for name, error in errors.items():
        print(f"  {name:14s} {error:.1e}", file=out)
    worst = max(errors.values())
    print(f"worst relative error {worst:.1e}: " + ("backward is correct" if worst < 1e-6 else "MISMATCH"), file=out)
    return 0 if worst < 1e-6 else 1


def run_predict(args, out):
    from .prediction import predict_each

    images = image_files(args.images)  # a folder with no image in it is a wrong argument: before any work
    results = predict_each(images, topk=args.topk, weights=args.weights)  # the weights are checked here
    progress = Progress(len(images), sys.stderr)
    document, failed, printed = [], 0, 0
    for image, result in results:
        progress.clear()
        if isinstance(result, Exception):
            failed += 1
            print(f"error: {result}", file=sys.stderr)
        elif args.json:
            document.append({"image": image, "predictions": [p._asdict() for p in result]})
        else:
            print_predictions(image, result, out, blank_line=printed > 0)
            printed += 1
        progress.advance()
    if args.json and document:
        print(json.dumps(document, indent=2), file=out)
    return 2 if failed == len(images) else 1 if failed else 0


def print_predictions(image, predictions, out, blank_line):
    """The table of one image, after a blank line when ``blank_line``."""
    if blank_line:
        print(file=out)
    print(image, file=out)
    print(f"  {'rank':>4}  {'probability':>11}  {'class':>5}  label", file=out)
    for rank, p in enumerate(predictions, start=1):
        print(f"  {rank:>4}  {p.probability:>11.2%}  {p.index:>5}  {p.label}", file=out)
    out.flush()


def image_files(paths):
    """``paths`` as given, each folder replaced by its image files (by extension, sorted by name)."""
    from .data.folder import IMG_EXTENSIONS, is_image_file

    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        inside = sorted(entry.name for entry in os.scandir(path) if entry.is_file() and is_image_file(entry.name))
        if not inside:
            raise ValueError(f"{path} is a directory with no image files in it ({', '.join(IMG_EXTENSIONS)})")
        files += [os.path.join(path, name) for name in inside]
    return files


PROGRESS_AFTER = 8  # more images than this: a progress display on stderr, terminal or not


class Progress:
    """``predicted 96/10000 images, 41.3 per second`` on stderr, never on stdout.

    Shown on a terminal (one line, redrawn in place) for more than one image and, whatever
    stderr is, for more than ``PROGRESS_AFTER`` images (in a log: one line per ``MAX_BATCH``
    images and one at the end).
    Call :meth:`clear` before printing anything else, :meth:`advance` after each image.
    """

    def __init__(self, total, stream):
        from .train import is_terminal

        self.total, self.stream, self.done = total, stream, 0
        self.terminal = is_terminal(stream)
        self.shown = total > PROGRESS_AFTER or (self.terminal and total > 1)
        self.start = time.perf_counter()

    def advance(self):
        from .prediction import MAX_BATCH

        self.done += 1
        if not self.shown:
            return
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        text = f"predicted {self.done}/{self.total} images, {rate:.1f} per second"
        if self.terminal:
            self.stream.write("\r\x1b[K" + text + ("\n" if self.done == self.total else ""))
        elif self.done % MAX_BATCH == 0 or self.done == self.total:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self):
        """Wipe the redrawn line of a terminal, so that the next output starts on a clean line."""
        if self.shown and self.terminal:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run_explain(args, out):
    from .explain import CAM_METHODS, DEFAULT_LAYER, explanation_map, find_layer, photo, plot_heatmap
    from .explain.inputs import as_batch, target_classes
    from .functional import softmax
    from .grad_mode import no_grad
    from .prediction import load_model

    if args.layer is not None and args.method not in CAM_METHODS:
        raise ValueError(f"--layer goes with the methods that look at a layer ({', '.join(CAM_METHODS)}); "
                         f"{args.method} explains the input")
    model = load_model(args.weights)
    spec = model.weights_spec
    if args.layer is not None:
        find_layer(model, args.layer)
    if args.target is not None and args.target >= len(spec.categories):
        raise ValueError(f"--target: expected a class index between 0 and {len(spec.categories) - 1}, got {args.target}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out: {out_dir} is a file; expected a folder")
    batch = as_batch(model, list(args.images))  # every image read before any PNG is written
    out_dir.mkdir(parents=True, exist_ok=True)
    for image, x, path in zip(args.images, batch, _png_names(args.images, args.method, out_dir)):
        x = x[None]
        with no_grad():
            probabilities = softmax(model(x))
        (target,) = target_classes(args.target, probabilities)
        heatmap = explanation_map(model, x, args.method, target, args.layer)[0]
        where = f" at {args.layer or DEFAULT_LAYER}" if args.method in CAM_METHODS else ""
        label = f"{spec.categories[target]} (class {target}), p = {probabilities[0, target]:.2f}"
        plot_heatmap(photo(x, spec.mean, spec.std), heatmap, label=f"{label}\n{args.method}{where}", save=path)
        print(f"wrote {path} ({args.method}, class {target} {spec.categories[target]}) for {image}", file=out)
    return 0


def _png_names(images, method, out_dir):
    """``OUT/STEM-METHOD.png`` for each image; ``-2``, ``-3``, ... after a stem seen before."""
    seen = {}
    for image in images:
        stem = Path(image).stem
        seen[stem] = seen.get(stem, 0) + 1
        suffix = "" if seen[stem] == 1 else f"-{seen[stem]}"
        yield out_dir / f"{stem}{suffix}-{method}.png"


def run_convert(args, out):
    from .io import load_state_dict_file, save_npz, save_torch_checkpoint

    writers = {".npz": save_npz, ".pth": save_torch_checkpoint, ".pt": save_torch_checkpoint}
    suffix = Path(args.target).suffix.lower()
    if suffix not in writers:
        raise ValueError(f"convert: expected OUT to end in .npz, .pth or .pt, got {args.target!r}")
    state_dict = load_state_dict_file(args.source)
    writers[suffix](state_dict, args.target)
    count = sum(np.asarray(a).size for a in state_dict.values())
    print(f"wrote {len(state_dict)} arrays ({count:,} numbers) to {args.target}", file=out)
    return 0


def main(argv=None, out=None):
    """Run the command line; returns the exit status (0, or 2 for bad input).

    For a usage mistake argparse prints its one-line error and exits with status 2 itself
    (``SystemExit``), as it does with status 0 after ``--help``.
    """
    out = sys.stdout if out is None else out
    args = build_parser().parse_args(argv)
    try:
        return args.run(args, out)
    except (NpMobileNetError, OSError, ValueError) as error:  # bad input: our errors are ValueErrors too
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # an optional dependency is missing (Pillow for images): say which
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
