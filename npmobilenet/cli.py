"""The ``npmobilenet`` command.

``npmobilenet demo`` trains a small MobileNet-style network built from the layers on random
data for a few steps, then checks its backward pass against numerical gradients.

Bad input prints one line, ``error: ...``, on stderr and exits with status 2.
"""

import argparse
import sys
import time

import numpy as np

from . import __version__, nn
from .errors import NpMobileNetError
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
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
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


def main(argv=None, out=None):
    """Run the command line; returns the exit status."""
    out = sys.stdout if out is None else out
    args = build_parser().parse_args(argv)
    try:
        return args.run(args, out)
    except (NpMobileNetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
