"""Peak memory of one run of a case: the kernel's peak resident size (VmHWM), or tracemalloc.

See "Memory" in :mod:`npmobilenet.bench` for how, and why these two.
"""

import ctypes
import ctypes.util
import gc
import sys
import tracemalloc

__all__ = ["MIB", "measure_peak_mib", "memory_method"]

MIB = 1024 * 1024


def _read_status_kib(key):
    """A ``kB`` figure (``VmRSS``, ``VmHWM``) from ``/proc/self/status``."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {key} line")


def _reset_peak_rss():
    """Set the kernel's peak resident size (``VmHWM``) back to the current resident size."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def _malloc_trim():
    """Give the freed parts of the C heap back to the operating system (glibc), so they are not counted."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass  # not glibc: nothing to trim with


def memory_method(requested="auto"):
    """``"vmhwm"`` when the peak resident size can be reset and read here, else ``"tracemalloc"``."""
    if requested == "tracemalloc":
        return "tracemalloc"
    try:
        if not sys.platform.startswith("linux"):
            raise OSError("not Linux")
        _read_status_kib("VmHWM")
        _reset_peak_rss()
        return "vmhwm"
    except OSError as error:
        if requested == "vmhwm":
            raise OSError(f"cannot measure the peak resident size here: {error}") from None
        return "tracemalloc"


def measure_peak_mib(step, method):
    """Run ``step()`` once; the extra memory it needed at its peak, in MiB.

    ``"vmhwm"``: peak resident size minus the resident size before (every allocation counts).
    ``"tracemalloc"``: the peak of what Python and NumPy allocated (not torch's memory).
    """
    _malloc_trim()
    if method == "vmhwm":
        before = _read_status_kib("VmRSS")
        _reset_peak_rss()
        step()
        return max(0, _read_status_kib("VmHWM") - before) / 1024
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        step()
        return max(0, tracemalloc.get_traced_memory()[1] - before) / MIB
    finally:
        if started:
            tracemalloc.stop()
