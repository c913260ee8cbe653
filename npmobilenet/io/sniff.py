"""What a file holds, judged by its content rather than its name, and a few words on it for
error messages.

A torch zip checkpoint is a zip archive with a record ``<name>/data.pkl``; a legacy torch
checkpoint starts with a pickle (its first byte is pickle's PROTO opcode); an ``.npz`` archive
is a zip archive of ``.npy`` members. :func:`sniff` tells them apart, so a ``.pth`` file that
is really an ``.npz`` (or the other way round) is still read with the right reader.
"""

import pickle
import zipfile

__all__ = ["describe_start", "sniff", "zip_folder"]


def zip_folder(names):
    """The folder holding ``data.pkl`` in a torch zip checkpoint, or None."""
    for name in names:
        folder, _, rest = name.partition("/")
        if rest == "data.pkl" and folder:
            return folder
    return None


def sniff(path):
    """What a file holds, from its content (not its name): ``"torch-zip"``, ``"torch-legacy"``
    (a file starting with a pickle's PROTO opcode), ``"npz"``, or None."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if zip_folder(names) is not None:
            return "torch-zip"
        if names and all(name.endswith(".npy") for name in names):
            return "npz"
        return None
    with open(path, "rb") as file:
        return "torch-legacy" if file.read(1) == pickle.PROTO else None


def describe_start(path):
    """A few words on what a file looks like, for error messages."""
    with open(path, "rb") as file:
        head = file.read(64)
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK"):
        return "a zip archive" if zipfile.is_zipfile(path) else "a zip archive that is truncated or damaged"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an archive of named arrays"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with bytes {head[:8].hex(' ')}"
    if all(char.isprintable() or char in "\r\n\t" for char in text):
        return f"text starting with {text[:40]!r}"
    return f"binary data starting with bytes {head[:8].hex(' ')}"
