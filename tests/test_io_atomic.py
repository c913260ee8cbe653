"""Atomic writes (npmobilenet.io.atomic): a file is replaced whole or not at all, by every writer."""

import os
import zipfile

import numpy as np
import pytest
from checkpoint_helpers import listing

from npmobilenet.io import atomic_write, save_npz, save_torch_checkpoint


# --- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_write(path, "w") as file:
        file.write("half of the new")
        assert listing(tmp_path) != ["file.txt"]  # the temporary file is beside it
        raise RuntimeError("disk on fire")
    assert path.read_text() == "old"
    assert listing(tmp_path) == ["file.txt"]
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as file:
        file.write(b"new")
        raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert listing(tmp_path) == ["file.txt"]
    with atomic_write(path, "w") as file:
        file.write("new")
    assert path.read_text() == "new"
    assert listing(tmp_path) == ["file.txt"]


def test_atomic_write_syncs_the_data_to_disk_before_renaming(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda *args: events.append("replace") or real_replace(*args))
    with atomic_write(tmp_path / "file.bin") as file:
        file.write(b"data")
    assert events == ["fsync", "replace"]


def test_atomic_write_creates_a_new_file_and_refuses_other_modes(tmp_path):
    with atomic_write(tmp_path / "new.bin") as file:
        file.write(b"\x00\x01")
    assert (tmp_path / "new.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "ab"):
        pass


@pytest.mark.parametrize("writer", [save_npz, save_torch_checkpoint])
def test_a_failure_in_the_middle_of_saving_leaves_the_old_file_intact(tmp_path, monkeypatch, writer):
    path = tmp_path / "weights.file"
    writer({"old": np.zeros(3, np.float32)}, path)
    old_bytes = path.read_bytes()
    real_write = zipfile.ZipFile.writestr if writer is save_torch_checkpoint else np.lib.format.write_array
    calls = []

    def fail_on_third_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("no space left on device")
        return real_write(*args, **kwargs)

    if writer is save_torch_checkpoint:
        monkeypatch.setattr(zipfile.ZipFile, "writestr", fail_on_third_call)
    else:
        monkeypatch.setattr(np.lib.format, "write_array", fail_on_third_call)
    new_state = {f"new{i}": np.full(1000, i, np.float32) for i in range(5)}
    with pytest.raises(OSError, match="no space left"):
        writer(new_state, path)
    assert len(calls) == 3  # it failed with some records already written
    assert path.read_bytes() == old_bytes
    assert listing(tmp_path) == ["weights.file"]
