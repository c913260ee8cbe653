"""What a run has to work with: torch (if installed), the threads of each library, the machine."""

import contextlib
import os
import platform

__all__ = ["describe_machine", "import_torch", "limit_threads"]


def import_torch():
    """``(torch, torchvision, None)``, or ``(None, None, reason)`` when they cannot be imported."""
    try:
        import torch
        import torchvision
    except (ImportError, OSError) as error:
        return None, None, f"{type(error).__name__}: {error}"
    return torch, torchvision, None


def limit_threads(stack, threads, torch):
    """Set torch's, npmobilenet's and NumPy's BLAS thread counts (undone when ``stack`` closes); describe them."""
    from .. import parallel

    previous_numpy = parallel.get_num_threads()
    parallel.set_num_threads(threads)
    stack.callback(parallel.set_num_threads, previous_numpy)
    if torch is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        stack.callback(torch.set_num_threads, previous)
    try:
        import threadpoolctl
    except ImportError:
        value = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
        return {"torch": torch.get_num_threads() if torch is not None else None,
                "npmobilenet": parallel.get_num_threads(), "blas": value,
                "blas_method": "environment (threadpoolctl not installed, so not set)", "blas_libraries": []}
    stack.enter_context(threadpoolctl.threadpool_limits(limits=threads, user_api="blas"))
    blas = [info for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
    counts = sorted({info["num_threads"] for info in blas})
    return {
        "torch": torch.get_num_threads() if torch is not None else None,
        "npmobilenet": parallel.get_num_threads(),
        "blas": counts[0] if len(counts) == 1 else (counts or "unknown"),
        "blas_method": "threadpoolctl",
        "blas_libraries": [f"{info.get('internal_api')} {info.get('version')}: {info['num_threads']} threads"
                           for info in blas],
    }


def describe_machine():
    """Processor, cores, operating system, Python and load average (1, 5, 15 min) of this machine."""
    model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(value, 2) for value in os.getloadavg()]  # other work on the machine skews timings
    return {
        "load_average": load,
        "processor": platform.processor() or platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
