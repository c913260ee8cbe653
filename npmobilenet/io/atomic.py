"""Atomic writes: a file is replaced whole or not at all.

Every file npmobilenet writes (checkpoints, ``.npz`` archives, downloads, the bench's JSON)
goes through :func:`atomic_write`: a half-written file is never left behind, and a file being
replaced stays intact if writing the new one fails.
"""

import contextlib
import os
import uuid
from pathlib import Path

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    Use as ``with atomic_write("out.npz") as file: file.write(...)``. The data goes to a
    hidden temporary file in the same directory; when the block ends without an exception
    the file is flushed, ``fsync``-ed and renamed over ``path`` with :func:`os.replace`, which
    is atomic: a reader sees the old file or the whole new one, never half of it. When the
    block raises, the temporary file is deleted, ``path`` is left as it was, and the
    exception propagates. ``mode`` is ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).
    The folder must exist (``FileNotFoundError`` naming it otherwise).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; expected the name of a file")
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    encoding = None if mode == "wb" else "utf-8"
    try:
        with open(temporary, mode.replace("w", "x"), encoding=encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
