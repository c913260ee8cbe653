"""``npmobilenet bench --roofline PLOT.png``: how close each kind of layer comes to what the machine allows.

The roofline model
------------------

A layer has two jobs. It *computes*: a convolution does multiply-adds, and ``flops = 2 x
multiply-adds`` (a multiply and an add). And it *moves data* between main memory and the
cores: it has to read its input and its weights, and write its output, at least once each.
The machine has a limit for each job, both measured here (:mod:`~npmobilenet.bench.limits`):
the **compute roof** ``P`` (GFLOP/s, a large matrix product) and the **memory roof** ``B``
(GB/s, a large copy). So no implementation can run a layer in less than its **floor**::

    floor = max(flops / P, bytes / B)

The ratio ``I = flops / bytes``, the layer's **arithmetic intensity** (flop per byte), says
which of the two wins. Below the **ridge point** ``I = P / B`` a layer is *memory-bound*: the
data cannot arrive faster than ``B``, so it can compute at most ``B x I`` flop/s, however fast
the cores are. Above the ridge it is *compute-bound*: at most ``P``. Drawn with the intensity
across and the achieved GFLOP/s up, both on log scales, these two limits make a roof: a
slanted line ``y = B x`` (slope 1 in log-log) that meets the flat line ``y = P`` at the ridge.
Every layer's point sits under the roof; how far under (time / floor, the **multiple**) is what
an implementation leaves on the table.

In MobileNetV2 a **1x1 convolution** is a matrix product of the ``(pixels, C_in)`` input with
the ``(C_in, C_out)`` weights: each input value serves ``C_out`` outputs, each weight every
pixel, so it does about ``2 C_in C_out / (4 (C_in + C_out))`` flops per byte (10 for 24 -> 144
channels, 69 for 960 -> 160): near or above the ridge, like the matmul that set ``P``. A
**depthwise 3x3 convolution** filters each channel on its own: 9 multiply-adds per output,
each input value used 9 times, so about ``2 x 9 / (4 x 2) = 2.25`` flops per byte at stride 1
(input and output of the same size) and 0.9 at stride 2: far below the ridge, it waits for
memory however it is written.

What the floors assume: float32 (4 bytes a number); the minimum traffic: each input, weight
and output once (the weights with the bias of the batch norm folded into them), batch norm
and ReLU6 costing no extra bytes (folded and fused, as the libraries deploy them), the
residual sum reading the block's input once more. Timing: inference, eval mode, at the first
``--eval-batches`` size, each side timed inside its whole network
(:mod:`~npmobilenet.bench.layer_times`). At a small batch a layer's data can stay in the
caches, whose bandwidth is several times main memory's: such a layer can beat its memory
floor (a multiple below 1), since the memory roof measured is main memory's.

The report (:func:`run_roofline`, under ``"roofline"`` in the bench's JSON): ``{"batch",
"threads", "limits": {...}, "kinds": [row per kind], "total": row, "whole_forward_ms",
"outside_layers_ms", "missing": {side: why}}``, a row being ``{"kind", "layers", "mult_adds",
"flops", "bytes", "intensity", "floor_ms", "bound", "numpy" | "torch" | "onnxruntime":
{"median_ms", "multiple", "gflops", "samples_ms"} or None}``.
"""

import contextlib
import importlib.util
import math
import time
from collections import namedtuple
from pathlib import Path

from .. import nn
from ..models.mobilenetv2 import Conv2dNormActivation, InvertedResidual, count_mult_adds
from .cases import IMAGE_SIZE, make_images, make_numpy_model, make_torch_model
from .layer_times import numpy_layer_times, onnxruntime_layer_times, torch_layer_times
from .limits import measure_limits
from .machine import import_torch, limit_threads
from .onnx import export_onnx, import_onnxruntime
from .timing import SETTLE_SECONDS

__all__ = ["KINDS", "SIDES", "Layer", "check_plot_path", "conv_cost", "format_roofline", "network_layers",
           "plot_roofline", "run_roofline"]

STEM, EXPAND, DEPTHWISE_1, DEPTHWISE_2, PROJECT, LAST, HEAD = KINDS = (
    "stem conv 3x3/2", "1x1 expand", "depthwise 3x3/1", "depthwise 3x3/2", "1x1 project", "1x1 conv to 1280",
    "pool + classifier")
SIDES = ("numpy", "torch", "onnxruntime")
BYTES = 4  # float32
ALL = "all layers"

# One layer as the roofline sees it: timed from mark ``start`` to mark ``end``, each ``("pre" | "post",
# module name)``; ``owns``: the modules whose work it is (ONNX Runtime's nodes are matched to them).
Layer = namedtuple("Layer", ["kind", "name", "mult_adds", "bytes", "start", "end", "owns"])


def conv_cost(conv, input_shape, residual=False):
    """``(output shape, multiply-adds, minimum bytes)`` of ``conv`` (a ``nn.Conv2d``) as deployed, float32.

    The bytes: the input read once, the weights and one bias per output channel (the folded
    batch norm's) read once, the output written once; ``residual``: the block's input (the
    output's shape) read once more, for the sum fused into the convolution.
    """
    output_shape, mult_adds = count_mult_adds(conv, input_shape)
    numbers = math.prod(input_shape) + conv.weight.data.size + conv.out_channels + math.prod(output_shape)
    return output_shape, mult_adds, BYTES * (numbers + (math.prod(output_shape) if residual else 0))


def network_layers(model, batch, image_size=IMAGE_SIZE):
    """The layers of npmobilenet's ``model`` (a MobileNetV2), in order, with their costs at ``batch``: Layer tuples."""
    layers, shape = [], (batch, 3, image_size, image_size)
    for index, block in enumerate(model.features):
        name = f"features.{index}"
        if isinstance(block, Conv2dNormActivation):  # the stem, or the last 1x1 conv
            kind = LAST if block[0].kernel_size == (1, 1) else STEM
            shape, mult_adds, moved = conv_cost(block[0], shape)
            layers.append(Layer(kind, name, mult_adds, moved, ("pre", name), ("post", name), (name,)))
            continue
        if not isinstance(block, InvertedResidual):
            raise TypeError(f"network_layers: unexpected {type(block).__name__} at {name}")
        previous = None
        for position, child in enumerate(block.conv):
            child_name = f"{name}.conv.{position}"
            if isinstance(child, Conv2dNormActivation):
                conv = child[0]
                kind = EXPAND if conv.groups == 1 else DEPTHWISE_1 if conv.stride == (1, 1) else DEPTHWISE_2
                shape, mult_adds, moved = conv_cost(conv, shape)
                layers.append(Layer(kind, child_name, mult_adds, moved, ("pre", child_name), ("post", child_name),
                                    (child_name,)))
                previous = child_name
            elif isinstance(child, nn.Conv2d):  # the projection: conv, batch norm (folded), the residual sum
                shape, mult_adds, moved = conv_cost(child, shape, residual=block.use_res_connect)
                owns = (*(f"{name}.conv.{p}" for p in range(position, len(block.conv))), name)
                layers.append(Layer(PROJECT, child_name, mult_adds, moved, ("post", previous), ("post", name), owns))
    # pooling multiplies each value by 1 / (H W) and adds it: one multiply-add per input value
    pooled = math.prod(shape)
    _, classifier_mult_adds = count_mult_adds(model.classifier, shape[:2])
    linear = model.classifier[-1]
    numbers = pooled + linear.weight.data.size + linear.out_features + shape[0] * linear.out_features
    layers.append(Layer(HEAD, "pool, classifier", pooled + classifier_mult_adds, BYTES * numbers,
                        ("post", "features"), ("post", "classifier"), ("pool", "classifier", "")))
    return layers


def check_plot_path(text):
    """``ValueError`` unless ``text`` names a new or existing ``.png`` file in an existing folder, and matplotlib is there."""
    target = Path(text)
    if target.suffix.lower() != ".png":
        raise ValueError(f"--roofline: expected the name of a .png file, got {text!r}")
    if target.is_dir() or not target.parent.is_dir():
        raise ValueError(f"--roofline: cannot write {text}: expected a file in an existing folder")
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--roofline: the picture needs matplotlib: pip install 'npmobilenet[bench]'")


def run_roofline(config, threads):
    """The machine's limits, each kind's costs and floor, each side's times at ``config.eval_batches[0]``: a JSON-ready dict."""
    batch = config.eval_batches[0]
    warmup, repeats = config.warmup, config.repeats["eval"]
    model, _ = make_numpy_model(config.weights)
    layers = network_layers(model, batch)
    images = make_images(batch)
    torch, torchvision, torch_missing = import_torch()
    onnxruntime, onnx_missing = import_onnxruntime() if torch is not None else (None, "needs torch to export the model")
    times, missing = {}, {"numpy": None, "torch": torch_missing, "onnxruntime": onnx_missing}
    with contextlib.ExitStack() as stack:
        limits = measure_limits(threads, quick=config.quick)
        limit_threads(stack, threads, torch)
        time.sleep(SETTLE_SECONDS)  # see timing.SETTLE_SECONDS: the last library's workers go idle first
        times["numpy"] = numpy_layer_times(model, layers, images, warmup, repeats)
        if torch is not None:
            state_dict = model.state_dict()
            torch_model = make_torch_model(torchvision, torch, state_dict, state_dict["classifier.1.weight"].shape[0])
            time.sleep(SETTLE_SECONDS)
            times["torch"] = torch_layer_times(torch, torch_model, layers, images, warmup, repeats)
            if onnxruntime is not None:
                model_bytes = export_onnx(torch, torch_model, torch.from_numpy(images))
                time.sleep(SETTLE_SECONDS)
                times["onnxruntime"] = onnxruntime_layer_times(onnxruntime, model_bytes, layers, images, threads,
                                                               warmup, repeats)
    return _roofline_report(layers, limits, times, missing, batch, threads)


def _roofline_report(layers, limits, times, missing, batch, threads):
    """The JSON-ready roofline: each kind's costs, floor, and each side's time, multiple and GFLOP/s."""
    compute, memory = limits["matmul_gflops"] * 1e9, limits["bandwidth_gbs"] * 1e9
    for side, result in times.items():  # a kind with no time at all was not found in that side's run
        if all(result["kinds"][kind]["median_ms"] <= 0 for kind in KINDS):
            missing[side] = "no layer found in its profile (node names not as expected)"
    sides = {side: times[side] if missing[side] is None else None for side in SIDES}

    def row(kind, chosen, side_ms):
        mult_adds, moved = sum(layer.mult_adds for layer in chosen), sum(layer.bytes for layer in chosen)
        flops = 2 * mult_adds
        floor_ms = max(flops / compute, moved / memory) * 1000.0
        result = {"kind": kind, "layers": len(chosen), "mult_adds": mult_adds, "flops": flops, "bytes": moved,
                  "intensity": flops / moved, "floor_ms": floor_ms,
                  "bound": "memory" if moved / memory > flops / compute else "compute"}
        for side in SIDES:
            ms = side_ms(side)
            result[side] = None if not ms else {
                "median_ms": ms, "multiple": ms / floor_ms, "gflops": flops / (ms / 1000.0) / 1e9,
                **({"samples_ms": sides[side]["kinds"][kind]["samples_ms"]} if kind in KINDS else {})}
        return result

    def kind_ms(kind):
        return lambda side: sides[side] and sides[side]["kinds"][kind]["median_ms"]

    kinds = [row(kind, [layer for layer in layers if layer.kind == kind], kind_ms(kind)) for kind in KINDS]
    total = row(ALL, layers, lambda side: sides[side] and sum(k[side]["median_ms"] for k in kinds if k[side]))
    return {
        "batch": batch, "threads": threads, "image_size": IMAGE_SIZE, "dtype": "float32", "mode": "inference",
        "limits": limits, "kinds": kinds, "total": total,
        "whole_forward_ms": {side: sides[side] and sides[side]["whole_ms"] for side in SIDES},
        "outside_layers_ms": {side: sides[side] and sides[side]["outside_ms"] for side in SIDES},
        "missing": {side: reason for side, reason in missing.items() if reason is not None},
    }


def _format_number(value):
    """A number with about three significant digits ("n/a" for None)."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _table(columns, rows, markdown):
    if markdown:
        return ["| " + " | ".join(columns) + " |", "|" + "|".join([":---"] + ["---:"] * (len(columns) - 1)) + "|",
                *("| " + " | ".join(cells) + " |" for cells in rows)]
    widths = [max(len(cells[i]) for cells in [columns, *rows]) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
             for cells in [columns, *rows]]
    return [lines[0], "-" * len(lines[0]), *lines[1:-1], "-" * len(lines[0]), lines[-1]]


def format_roofline(roofline, markdown=False):
    """The roofline as text: the limits, each kind's costs and floor, then each side's ms, multiple and GFLOP/s."""
    limits, rows = roofline["limits"], [*roofline["kinds"], roofline["total"]]
    header = [
        (f"roofline: inference (eval) at batch {roofline['batch']}, {roofline['image_size']}x{roofline['image_size']}, "
         f"float32, {roofline['threads']} threads; each side timed layer by layer inside its whole network"),
        (f"machine limits, measured (fastest of {len(limits['matmul']['samples_ms'])} runs): compute roof "
         f"{limits['matmul_gflops']:.1f} GFLOP/s (NumPy BLAS, float32 matmul {limits['matmul']['n']}x{limits['matmul']['n']}), "
         f"memory roof {limits['bandwidth_gbs']:.1f} GB/s (copy of {limits['copy']['mib']} MiB, "
         f"{limits['copy']['threads']} threads); ridge {limits['ridge_flop_per_byte']:.1f} flop/byte"),
        ("floor = max(flops / compute roof, bytes / memory roof); bytes: input, weights, output once each; "
         "x floor = time / floor (below 1: data served by the caches, or a roof measured low on a busy machine)"),
    ]
    costs = [(r["kind"], str(r["layers"]), _format_number(r["flops"] / 1e6), _format_number(r["bytes"] / 1e6),
              _format_number(r["intensity"]), r["bound"], _format_number(r["floor_ms"])) for r in rows]
    columns = ["kind"]
    for side in SIDES:
        short = "onnxrt" if side == "onnxruntime" else side
        columns += [f"{short} ms", "x floor", "GFLOP/s"]
    times = [(r["kind"], *(text for side in SIDES for text in (
        (_format_number(r[side]["median_ms"]), _format_number(r[side]["multiple"]), _format_number(r[side]["gflops"]))
        if r[side] else ("n/a",) * 3))) for r in rows]
    glue = ", ".join(f"{side} {_format_number(ms)}" for side, ms in roofline["outside_layers_ms"].items() if ms is not None)
    notes = [f"time of the whole forward pass outside these layers (glue, layout), ms: {glue}"]
    notes += [f"{side}: n/a, {reason}" for side, reason in roofline["missing"].items()]
    bullet = "- " if markdown else ""
    return "\n".join([*(bullet + line for line in header), "",
                      *_table(["kind", "layers", "MFLOP", "MB", "flop/B", "bound", "floor ms"], costs, markdown), "",
                      *_table(columns, times, markdown), "", *(bullet + line for line in notes)])


def plot_roofline(roofline, path):
    """The roofline picture as a PNG at ``path`` (written atomically); returns the matplotlib Figure.

    Log-log: arithmetic intensity (flop/byte) across, achieved GFLOP/s up; the memory roof
    (``y = bandwidth x intensity``) and the compute roof (``y = matmul rate``) drawn and
    labelled; one marker per kind (colour) and side (shape). matplotlib is imported here only.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from ..io import atomic_write

    limits = roofline["limits"]
    peak, bandwidth, ridge = limits["matmul_gflops"], limits["bandwidth_gbs"], limits["ridge_flop_per_byte"]
    intensities = [row["intensity"] for row in roofline["kinds"]]
    left, right = min(min(intensities), ridge) / 3, max(max(intensities), ridge) * 3
    figure = Figure(figsize=(8, 5.5), dpi=110, layout="constrained")
    axes = figure.subplots()
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.plot([left, ridge, right], [bandwidth * left, peak, peak], color="black", linewidth=2)
    axes.plot([ridge, right], [bandwidth * ridge, bandwidth * right], color="grey", linestyle=":", linewidth=1)
    axes.plot([left, ridge], [peak, peak], color="grey", linestyle=":", linewidth=1)
    axes.text(right / 1.15, peak * 1.08, f"compute roof: matmul {peak:.1f} GFLOP/s", ha="right", va="bottom")
    label_x, label_y = left * 1.3, bandwidth * left * 1.3 * 1.4  # a little above the memory roof, along it:
    axes.text(label_x, label_y, f"memory roof: copy {bandwidth:.1f} GB/s", ha="left", va="bottom",  # the data
              rotation=math.degrees(math.atan(label_y / label_x)), rotation_mode="anchor",  # direction (1, y/x) is
              transform_rotates_text=True)  # a slope of 1 in log-log, whatever the axes' shape
    markers = {"numpy": "o", "torch": "s", "onnxruntime": "^"}
    colors = {kind: f"C{index}" for index, kind in enumerate(KINDS)}
    achieved = [peak]
    for row in roofline["kinds"]:
        for side, marker in markers.items():
            if row[side]:
                achieved.append(row[side]["gflops"])
                axes.scatter(row["intensity"], row[side]["gflops"], marker=marker, s=60, color=colors[row["kind"]],
                             edgecolors="black", linewidths=0.5, zorder=3)
    axes.set_xlim(left, right)
    axes.set_ylim(min(min(achieved), bandwidth * left) / 2, max(achieved) * 3)
    axes.set_xlabel("arithmetic intensity (flop per byte moved, at least)")
    axes.set_ylabel("achieved GFLOP/s")
    axes.grid(True, which="both", linewidth=0.3, alpha=0.5)
    kinds_legend = axes.legend(handles=[Line2D([], [], marker="o", linestyle="", color=colors[kind], label=kind)
                                        for kind in KINDS], title="layer kind", loc="upper left", fontsize=8)
    axes.add_artist(kinds_legend)
    axes.legend(handles=[Line2D([], [], marker=marker, linestyle="", color="grey", label=side)
                         for side, marker in markers.items() if roofline["total"][side]],
                title="side", loc="lower right", fontsize=8)
    axes.set_title(f"MobileNetV2 layers, inference at batch {roofline['batch']} ({roofline['threads']} threads)\n"
                   f"measured roofs: {peak:.1f} GFLOP/s (matmul), {bandwidth:.1f} GB/s (copy), "
                   f"ridge at {ridge:.1f} flop/byte", fontsize=10)
    with atomic_write(path) as file:
        figure.savefig(file, format="png")
    return figure
