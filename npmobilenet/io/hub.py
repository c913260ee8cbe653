"""The download cache, as ``torch.hub`` keeps one: where downloaded weights live, and the download.

* :func:`cache_dir` is ``$NPMOBILENET_HOME``, default ``~/.cache/npmobilenet``;
* :func:`cached_weights_path` is where a published file's weights live there, converted once
  to ``.npz``;
* :func:`download_weights` streams a published file into the cache with a progress line,
  checks its size against the server's Content-Length and its SHA-256 against the prefix in
  its name, and converts it; when anything fails, nothing is left in the cache and the
  message says how to pass a local copy instead.

The registry of what can be downloaded, and the order in which weights are looked for, are
in :mod:`npmobilenet.models.weights`.
"""

import contextlib
import hashlib
import http.client
import os
import sys
import urllib.request
from pathlib import Path

from ..errors import WeightsError
from .atomic import atomic_write
from .npz import save_npz
from .torch_load import load_torch_checkpoint

__all__ = ["cache_dir", "cached_weights_path", "download_weights"]

ENV_WEIGHTS = "NPMOBILENET_WEIGHTS"
ENV_HOME = "NPMOBILENET_HOME"
DEFAULT_CACHE_DIR = "~/.cache/npmobilenet"
DOWNLOAD_TIMEOUT = 30  # seconds without data before a download gives up
DOWNLOAD_CHUNK = 1 << 16


def cache_dir():
    """The cache folder, ``$NPMOBILENET_HOME`` or ``~/.cache/npmobilenet``, created if missing."""
    directory = Path(os.environ.get(ENV_HOME) or DEFAULT_CACHE_DIR).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def cached_weights_path(spec):
    """Where the converted weights of ``spec`` live: ``<cache_dir>/<file name stem>.npz``."""
    return cache_dir() / f"{Path(spec.file_name).stem}.npz"


def _offline_hint(spec):
    return (
        f"To use a copy of the file instead, download {spec.file_name} elsewhere and pass its "
        f"path: weights=\"path/to/{spec.file_name}\" in Python, --weights PATH on the command "
        f"line, or {ENV_WEIGHTS}=PATH in the environment"
    )


def _show_progress(received, total):
    megabytes = f"{received / 1e6:.1f}"
    if total:
        megabytes += f" / {total / 1e6:.1f} MB ({100 * received // total}%)"
    else:
        megabytes += " MB"
    sys.stderr.write(f"\rdownloading: {megabytes}")
    sys.stderr.flush()


def _content_length(response):
    try:
        return int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None


def _download_to(spec, file, progress):
    """Stream ``spec.url`` into ``file``; return the SHA-256 hex digest of what arrived.

    Raises WeightsError when fewer bytes arrive than the server announced.
    """
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT) as response:
        total = _content_length(response)
        while chunk := response.read(DOWNLOAD_CHUNK):
            file.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if progress:
                _show_progress(received, total)
    if progress:
        sys.stderr.write("\n")
    if total is not None and received != total:
        raise WeightsError(
            f"the download from {spec.url} stopped after {received} of {total} bytes (the "
            f"connection was closed); nothing was saved. Try again. {_offline_hint(spec)}"
        )
    return digest.hexdigest()


def _download_checked(spec, path, progress):
    """Download ``spec.url`` to ``path`` (atomically) if its SHA-256 starts with the spec's prefix."""
    try:
        with atomic_write(path) as file:
            sha256 = _download_to(spec, file, progress)
            if not sha256.startswith(spec.sha256_prefix):
                raise WeightsError(
                    f"the file downloaded from {spec.url} has SHA-256 {sha256}, but expected one "
                    f"starting with {spec.sha256_prefix}: it is damaged or not the published "
                    f"file; nothing was saved. {_offline_hint(spec)}"
                )
    except WeightsError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        # URLError, HTTPError, timeouts and refused connections are all OSErrors
        raise WeightsError(
            f"could not download the weights from {spec.url} ({type(error).__name__}: {error}). "
            f"{_offline_hint(spec)}"
        ) from error


def download_weights(spec, *, progress=True):
    """Download ``spec.url``, check it, convert it to ``.npz`` in the cache; return that path.

    ``spec`` is a :class:`~npmobilenet.models.weights.WeightsSpec` or a registry name. The file is streamed, through
    :func:`atomic_write`, to ``<cache_dir>/<file_name>.download``, with a progress line on
    stderr when ``progress`` is true. Its SHA-256 must start with ``spec.sha256_prefix`` and
    its size must match the Content-Length the server sent. The checked file is read with
    :func:`load_torch_checkpoint`, written to :func:`cached_weights_path` (atomically), and
    deleted. Raises :class:`~npmobilenet.errors.WeightsError` naming the URL for a network
    failure, a short download or a hash mismatch; nothing is left in the cache then.
    """
    from ..models.weights import get_weights_spec  # here, not at the top: that module imports this one

    spec = get_weights_spec(spec)
    destination = cached_weights_path(spec)
    downloaded = destination.with_name(f"{spec.file_name}.download")
    try:
        _download_checked(spec, downloaded, progress)
        save_npz(load_torch_checkpoint(downloaded), destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            downloaded.unlink()
    return destination
