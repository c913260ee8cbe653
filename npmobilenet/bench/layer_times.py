"""How long each layer of MobileNetV2 takes inside the whole network, on each side: for the roofline.

Every side runs the whole network in inference (eval mode, no gradients) on the same images,
and the time of each layer is read *inside* that run, so that each layer sees its input where
the layer before left it (in the caches, in the library's own memory order):

* **numpy**: the modules' ``forward`` is wrapped for the run (an attribute of the instance,
  deleted afterwards) to note ``time.perf_counter()`` before and after. A wrapped module runs
  as itself (:func:`npmobilenet.nn.flat_layers`), so here an inverted residual block's three
  convolutions run one after another, each with its batch norm folded and its activation
  applied in cache, instead of fused into one pass as in the bench's inference rows.
* **torch**: torch's own forward pre- and post-hooks on the same modules (torchvision's module
  names are npmobilenet's), under ``torch.no_grad()``.
* **onnxruntime**: the session's own profiler (``SessionOptions.enable_profiling``), which
  writes the duration of every node of every run to a JSON file (in a temporary folder,
  deleted after). Only ONNX Runtime knows how long its nodes take: it fuses batch norm, ReLU6
  and the residual sum into the convolutions and changes the memory order, so no hook outside
  it could time a layer. Each node's name carries the scope of the module it was exported from
  (``/features/features.3/conv/conv.2/Conv...``), which gives the layer. Timing each layer
  exported on its own instead would lose what the whole graph gains (fusions, the kept
  memory order) and add a session call per layer.

A layer is given by two marks, ``("pre" | "post", module name)``: its time is the second's
moment minus the first's. Each side's figure for a kind of layer is the median, over the timed
runs, of the sum of its layers' times in one run. The time of the whole forward pass is
measured too: what the layers leave of it is the glue between them (Python calls, the input's
change of memory order in npmobilenet, the executor in ONNX Runtime).
"""

import json
import os
import statistics
import tempfile
import time

import numpy as np

from ..grad_mode import no_grad

__all__ = ["numpy_layer_times", "onnxruntime_layer_times", "torch_layer_times"]


def _marked(layers):
    """``{module name: {"pre", "post"}}``: the marks ``layers`` need."""
    needed = {}
    for layer in layers:
        for when, name in (layer.start, layer.end):
            needed.setdefault(name, set()).add(when)
    return needed


def _time_runs(run, marks, layers, warmup, repeats):
    """``run()`` ``warmup`` times, then ``repeats`` times reading ``marks``: each kind's time (see :func:`summarize`)."""
    for _ in range(warmup):
        run()
    kinds = {layer.kind: [] for layer in layers}
    whole = []
    for _ in range(repeats):
        marks.clear()
        start = time.perf_counter()
        run()
        whole.append((time.perf_counter() - start) * 1000.0)
        sums = dict.fromkeys(kinds, 0.0)
        for layer in layers:
            sums[layer.kind] += (marks[layer.end] - marks[layer.start]) * 1000.0
        for kind, total in sums.items():
            kinds[kind].append(total)
    return summarize(kinds, whole)


def summarize(kinds, whole):
    """The medians of per-run samples: ``{"kinds": {kind: {"median_ms", "samples_ms"}}, "whole_ms", "outside_ms"}``.

    ``kinds``: ``{kind: [ms in each run]}``; ``whole``: the whole forward pass in each run.
    ``outside_ms`` is the median, over the runs, of what the layers leave of the whole run.
    """
    outside = [total - sum(samples[run] for samples in kinds.values()) for run, total in enumerate(whole)]
    return {"kinds": {kind: {"median_ms": statistics.median(samples), "samples_ms": samples}
                      for kind, samples in kinds.items()},
            "whole_ms": statistics.median(whole), "outside_ms": statistics.median(outside)}


def numpy_layer_times(model, layers, images, warmup, repeats):
    """npmobilenet's ``model`` (eval, ``no_grad()``) on ``images``: each kind's time (see :func:`summarize`)."""
    modules = dict(model.named_modules())
    marks = {}

    def marking(forward, name, when):
        def forward_with_marks(*args, **kwargs):
            if "pre" in when:
                marks["pre", name] = time.perf_counter()
            out = forward(*args, **kwargs)
            if "post" in when:
                marks["post", name] = time.perf_counter()
            return out
        return forward_with_marks

    needed = _marked(layers)
    model.eval()
    try:
        for name, when in needed.items():
            modules[name].forward = marking(modules[name].forward, name, when)  # this instance only

        def run():
            with no_grad():
                model(images)

        return _time_runs(run, marks, layers, warmup, repeats)
    finally:
        for name in needed:
            vars(modules[name]).pop("forward", None)  # the class's forward again


def torch_layer_times(torch, torch_model, layers, images, warmup, repeats):
    """torchvision's ``torch_model`` (eval, ``torch.no_grad()``) on ``images``: each kind's time, by forward hooks."""
    modules = dict(torch_model.named_modules())
    marks = {}
    handles = []

    def pre_hook(name):
        return lambda module, args: marks.__setitem__(("pre", name), time.perf_counter())

    def post_hook(name):
        return lambda module, args, out: marks.__setitem__(("post", name), time.perf_counter())

    torch_model.eval()
    x = torch.from_numpy(images)
    try:
        for name, when in _marked(layers).items():
            if "pre" in when:
                handles.append(modules[name].register_forward_pre_hook(pre_hook(name)))
            if "post" in when:
                handles.append(modules[name].register_forward_hook(post_hook(name)))

        def run():
            with torch.no_grad():
                torch_model(x)

        return _time_runs(run, marks, layers, warmup, repeats)
    finally:
        for handle in handles:
            handle.remove()


def module_name(node_name):
    """The module an exported ONNX node came from: ``/features/features.3/conv/conv.2/Conv`` -> ``features.3.conv.2``.

    The exporter names a node by the path of scopes it was made in, each scope the module's name
    in its parent (a child of a Sequential is ``parent.index``). A node made outside any module
    (in the model's own ``forward``: the pooling) gives ``""``.
    """
    full, last = "", None
    for part in node_name.split("/")[1:-1]:
        if last is not None and part.startswith(last + "."):
            full = full[: len(full) - len(last)] + part  # a child of a Sequential: "conv" -> "conv.2"
        else:
            full = f"{full}.{part}" if full else part
        last = part
    return full


def _owner(name, owners):
    """The kind that owns module ``name`` or its nearest parent; None when none does."""
    while True:
        if name in owners:
            return owners[name]
        if not name:
            return None
        name = name.rpartition(".")[0]


def onnxruntime_layer_times(onnxruntime, model_bytes, layers, images, threads, warmup, repeats):
    """ONNX Runtime on ``images``: each kind's time from the session's profiler (a node of no layer counts as outside them).

    The session is :func:`~npmobilenet.bench.onnx.make_session`'s (``threads`` threads, not
    spinning, every graph optimisation), with profiling on.
    """
    owners = {name: layer.kind for layer in layers for name in layer.owns}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="npmobilenet-onnx-profile-") as folder:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(images, dtype=np.float32)}
        for _ in range(warmup + repeats):
            session.run(None, feed)
        with open(session.end_profiling(), encoding="utf-8") as file:
            events = json.load(file)
    runs = [event for event in events if event.get("cat") == "Session" and event.get("name") == "model_run"][warmup:]
    nodes = [event for event in events if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    kinds = {layer.kind: [] for layer in layers}
    for run in runs:
        sums = dict.fromkeys(kinds, 0.0)
        for node in nodes:
            kind = _owner(module_name(node["name"][: -len("_kernel_time")]), owners)
            if kind is not None and run["ts"] <= node["ts"] <= run["ts"] + run["dur"]:
                sums[kind] += node["dur"] / 1000.0  # microseconds
        for kind, total in sums.items():
            kinds[kind].append(total)
    return summarize(kinds, [run["dur"] / 1000.0 for run in runs])
