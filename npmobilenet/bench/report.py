"""The report as text: what was compared on what machine, then one row per case (or Markdown)."""

from .timing import MIN_MIB_FOR_RATIO, SETTLE_SECONDS

__all__ = ["COLUMNS", "format_report"]

COLUMNS = ("case", "batch", "numpy ms", "torch ms", "ort ms", "numpy ms/img", "ratio", "vs ort",
           "numpy MiB", "torch MiB", "mem ratio")


def _ms(value):
    """Milliseconds with about three significant digits; "n/a" for None."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _number(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cells(row):
    """The table cells of one result row, as text."""
    numpy_side, torch_side, onnx_side = row["numpy"], row["torch"] or {}, row.get("onnxruntime") or {}
    return (row["case"], str(row["batch"]), _ms(numpy_side["median_ms"]), _ms(torch_side.get("median_ms")),
            _ms(onnx_side.get("median_ms")), _ms(numpy_side["per_image_ms"]), _number(row["ratio"], 2),
            _number(row.get("onnx_ratio"), 2), _number(numpy_side["peak_mib"], 1), _number(torch_side.get("peak_mib"), 1),
            _number(row["memory_ratio"], 2))


def _header_lines(report):
    """What was compared, on what machine, with what settings."""
    config, versions, threads, machine = report["config"], report["versions"], report["threads"], report["machine"]
    if report["torch_available"]:
        torch_text = f"torch {versions['torch']} (torchvision {versions['torchvision']})"
    else:
        torch_text = f"torch not available ({report['torch_missing_reason']}): numpy only, torch columns n/a"
    load = machine["load_average"]
    load_text = f"; load average {load[0]:.2f} at the start (other work skews timings)" if load else ""
    torch_threads = "n/a" if threads["torch"] is None else threads["torch"]
    size, repeats = config["image_size"], config["repeats"]
    if report["memory_method"] == "vmhwm":
        memory = "peak RSS above the RSS before the run (malloc_trim, then VmHWM after clear_refs)"
    else:
        why = "as asked" if config["memory"] == "tracemalloc" else "clear_refs not usable here"
        memory = f"tracemalloc peak ({why}), numpy side only, torch n/a"
    agreement = report["agreement"]
    if agreement:
        same = (f"same model: logits of numpy and torch differ by at most {agreement['relative_diff']:.1e} "
                f"of the largest (batch 1, eval)")
    else:
        same = "same model: not checked (no torch)"
    if report.get("onnxruntime_available"):
        check = report["onnx_agreement"]
        onnx_text = (f"onnxruntime {versions['onnxruntime']} (torchvision's model exported by torch.onnx, "
                     f"{threads['torch'] or config['threads']} intra-op threads, no spinning; its logits differ from "
                     f"numpy's by at most {check['relative_diff']:.1e} of the largest); 'vs ort' = numpy / onnxruntime, "
                     "inference only")
    else:
        onnx_text = f"onnxruntime not available ({report.get('onnxruntime_missing_reason')}): ort columns n/a"
    return [
        f"npmobilenet bench: npmobilenet {versions['npmobilenet']} (numpy {versions['numpy']}) vs {torch_text}",
        f"second reference: {onnx_text}",
        (f"machine: {machine['cpu_model'] or machine['processor']}, {machine['cpu_count']} CPUs (os.cpu_count), "
         f"{machine['platform']}, Python {machine['python']}{load_text}"),
        (f"threads: torch {torch_threads}, npmobilenet {threads.get('npmobilenet', 'n/a')} (its matrix products "
         f"split among them, BLAS on one thread inside), numpy BLAS {threads['blas']} ({threads['blas_method']})"),
        f"weights: {config['weights']}; inputs: standard normal (seed 0), {size}x{size}; {same}",
        (f"timing: median of {repeats['eval']} (inference), {repeats['train']} (training), {repeats['layer']} "
         f"(layers) timed runs after {config['warmup']} warm-up, same process, {SETTLE_SECONDS} s pause between "
         "sides; ratio = numpy / torch (below 1: numpy faster)"),
        (f"training step: train-mode forward, cross-entropy, backward (dL/dx included on both sides), SGD "
         f"(lr {config['learning_rate']}), zero_grad; layer rows: forward + backward in training mode, batch {config['layer_batch'] or '-'}"),
        f"memory (MiB): {memory}; mem ratio n/a when a side needs under {MIN_MIB_FOR_RATIO:g} MiB",
    ]


def format_report(report, markdown=False):
    """The report as text: header lines, then one aligned row per case (a Markdown table if ``markdown``)."""
    rows = [_cells(row) for row in report["rows"]]
    header = _header_lines(report)
    if markdown:
        lines = [f"- {line}" for line in header] + [""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 1)) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join([*lines, "", f"total time {report['total_seconds']:.1f} s"])
    widths = [max(len(cells[i]) for cells in [COLUMNS, *rows]) for i in range(len(COLUMNS))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(COLUMNS))
    return "\n".join([*header, "", line(COLUMNS), rule, *(line(cells) for cells in rows), rule,
                      f"total time {report['total_seconds']:.1f} s"])
