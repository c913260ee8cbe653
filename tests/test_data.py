"""ImageFolder against torchvision's, and the DataLoader: batches, order, seeds, threads, errors.

ImageFolder is compared with ``torchvision.datasets.ImageFolder`` on the ants-and-bees set and
on a small tree made here with Pillow to hold every rule (nested folders, upper-case
extensions, a .txt, a .gif, folder names that sort oddly). The DataLoader's batches are
compared with the dataset's samples, with torch's DataLoader (its length, and its batches on
real photos), and with themselves across seeds, epochs and numbers of threads.
"""

import subprocess
import sys
import threading
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npmobilenet import transforms as T
from npmobilenet.data import DataLoader, ImageFolder
from npmobilenet.data.loader import THREAD_NAME_PREFIX
from npmobilenet.errors import ImageError, ShapeError

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def torchvision(torch):
    import torchvision

    return torchvision


@pytest.fixture(scope="module")
def hymenoptera(shared_dir):
    root = shared_dir / "datasets" / "hymenoptera"
    assert (root / "train" / "ants").is_dir(), f"expected the ants-and-bees set in {root}"
    return root


def save_image(path, width=24, height=18, seed=0):
    """A small random image, in the format its extension names (Pillow reads it from the name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def relative_samples(dataset, root):
    return [(str(Path(path).relative_to(root)), target) for path, target in dataset.samples]


def loader_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_NAME_PREFIX)]


# ---------------------------------------------------------------------------------------------
# ImageFolder
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "val"])
def test_image_folder_equals_torchvisions_on_hymenoptera(torchvision, hymenoptera, split):
    ours = ImageFolder(hymenoptera / split)
    theirs = torchvision.datasets.ImageFolder(hymenoptera / split)
    assert ours.classes == theirs.classes == ["ants", "bees"]
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples
    assert ours.targets == theirs.targets
    assert not any(path.endswith(".gif") for path, _ in ours.samples)
    assert len(ours) == {"train": 244, "val": 153}[split]  # train/ants: 124 files, one a .gif


def test_image_folder_reads_the_pixels_torchvision_reads(torchvision, hymenoptera):
    ours = ImageFolder(hymenoptera / "val")
    theirs = torchvision.datasets.ImageFolder(hymenoptera / "val")
    for index in (0, 75, len(ours) - 1):
        (image, target), (expected, expected_target) = ours[index], theirs[index]
        assert image.mode == "RGB" and target == expected_target
        np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))


@pytest.fixture
def tricky_tree(tmp_path):
    """Every rule in a few files: what ImageFolder must list, and in which order."""
    root = tmp_path / "tricky"
    for relative in ["Zebra/z.JPG", "ants/b.jpg", "ants/a.PNG", "ants/sub/c.jpeg", "ants/sub-dir/d.bmp",
                     "ants/sub/deeper/e.TIFF", "bees/x.ppm", "bees/y.Jpeg"]:
        save_image(root / relative)
    save_image(root / "ants" / "anim.gif")
    save_image(root / "stray.jpg")  # a file directly in root: not a class
    (root / "ants" / "notes.txt").write_text("not an image")
    (root / "bees" / "empty-folder").mkdir()
    return root


def test_image_folder_follows_every_rule_of_torchvisions(torchvision, tricky_tree):
    ours = ImageFolder(tricky_tree)
    assert ours.classes == ["Zebra", "ants", "bees"]  # sorted: upper case first
    # "sub-dir" comes between "sub" and "sub/deeper": os.walk's folders sorted as strings, '-' < '/'.
    assert relative_samples(ours, tricky_tree) == [
        ("Zebra/z.JPG", 0),
        ("ants/a.PNG", 1), ("ants/b.jpg", 1), ("ants/sub/c.jpeg", 1), ("ants/sub-dir/d.bmp", 1),
        ("ants/sub/deeper/e.TIFF", 1),
        ("bees/x.ppm", 2), ("bees/y.Jpeg", 2),
    ]
    theirs = torchvision.datasets.ImageFolder(tricky_tree)
    assert (ours.classes, ours.class_to_idx, ours.samples, ours.targets) == (
        theirs.classes, theirs.class_to_idx, theirs.samples, theirs.targets)
    image, target = ours[4]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (24, 18) and target == 1
    assert str(tricky_tree) in repr(ours) and "Number of datapoints: 8" in repr(ours)


def broken_layouts(tmp_path):
    """name -> (root, a phrase the message must hold)."""
    save_image(tmp_path / "flat" / "a.jpg")
    save_image(tmp_path / "gif_only" / "ants" / "a.jpg")
    save_image(tmp_path / "gif_only" / "bees" / "b.gif")
    (tmp_path / "gif_only" / "bees" / "readme.txt").write_text("no images here")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.jpg").write_bytes(b"x")
    return {
        "missing": (tmp_path / "missing", "no such folder"),
        "a file": (tmp_path / "file.jpg", "is a file, not a folder"),
        "empty": (tmp_path / "empty", "Couldn't find any class folder"),
        "images but no class folders": (tmp_path / "flat", "one class folder rather than the folder above"),
        "a class without images": (tmp_path / "gif_only", "Found no valid file for the classes bees"),
    }


@pytest.mark.parametrize("layout", ["missing", "a file", "empty", "images but no class folders",
                                    "a class without images"])
def test_broken_layouts_raise_torchvisions_exception_types_with_clear_messages(torchvision, tmp_path, layout):
    root, phrase = broken_layouts(tmp_path)[layout]
    with pytest.raises(OSError) as ours:
        ImageFolder(root)
    assert phrase in str(ours.value)
    assert str(root) in str(ours.value)
    with pytest.raises(type(ours.value)):
        torchvision.datasets.ImageFolder(root)


def test_image_folder_applies_its_transform_and_hands_it_the_generator(tricky_tree):
    dataset = ImageFolder(tricky_tree, transform=T.Compose([T.RandomResizedCrop(8), T.ToArray()]))
    x, target = dataset.load(2, rng=np.random.default_rng(0))
    assert x.shape == (3, 8, 8) and x.dtype == np.float32 and target == 1
    np.testing.assert_array_equal(x, dataset.load(2, rng=np.random.default_rng(0))[0])
    assert ImageFolder(tricky_tree, transform=T.preprocess)[0][0].shape == (3, 224, 224)
    with pytest.raises(TypeError, match="callable"):
        ImageFolder(tricky_tree, transform="resize")


# ---------------------------------------------------------------------------------------------
# DataLoader on a dataset in memory: order, seeds, epochs, length
# ---------------------------------------------------------------------------------------------

class NumberedDataset:
    """Sample ``i``: a (2, 3) float32 array, row 1 all ``i``, ``[0, 0]`` a draw from the sample's generator; target ``i % 3``."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return self.load(index, np.random.default_rng())

    def load(self, index, rng):
        x = np.full((2, 3), index, dtype=np.float32)
        x[0, 0] = rng.random()
        return x, index % 3


def one_epoch(loader):
    """The sample indices in the order served, and each sample's random draw."""
    batches = list(loader)
    indices = np.concatenate([inputs[:, 1, 0] for inputs, _ in batches]).astype(int)
    draws = np.concatenate([inputs[:, 0, 0] for inputs, _ in batches])
    return indices.tolist(), draws.tolist()


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_have_the_dataset_samples_in_order(workers):
    loader = DataLoader(NumberedDataset(10), batch_size=4, workers=workers, seed=0)
    batches = list(loader)
    assert [inputs.shape for inputs, _ in batches] == [(4, 2, 3), (4, 2, 3), (2, 2, 3)]
    for inputs, labels in batches:
        assert inputs.dtype == np.float32 and labels.dtype == np.int64
        np.testing.assert_array_equal(labels, inputs[:, 1, 0].astype(int) % 3)
    assert one_epoch(loader)[0] == list(range(10))  # no shuffle: the dataset's order, every epoch


@pytest.mark.parametrize("size, batch_size, drop_last", [
    (10, 4, False), (10, 4, True), (12, 4, False), (12, 4, True), (3, 5, False), (3, 5, True), (0, 2, False),
])
def test_length_and_last_batch_are_torchs(torch, size, batch_size, drop_last):
    loader = DataLoader(NumberedDataset(size), batch_size=batch_size, drop_last=drop_last, workers=0)
    theirs = torch.utils.data.DataLoader(range(size), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(theirs)
    assert [len(labels) for _, labels in loader] == [len(batch) for batch in theirs]


def test_shuffle_is_reproducible_from_the_seed_and_new_every_epoch():
    first = DataLoader(NumberedDataset(50), batch_size=8, shuffle=True, seed=7, workers=0)
    second = DataLoader(NumberedDataset(50), batch_size=8, shuffle=True, seed=7, workers=0)
    other_seed = DataLoader(NumberedDataset(50), batch_size=8, shuffle=True, seed=8, workers=0)
    epochs = [one_epoch(first) for _ in range(3)]
    assert [one_epoch(second) for _ in range(3)] == epochs
    orders = [order for order, _ in epochs]
    assert all(sorted(order) == list(range(50)) for order in orders)
    assert orders[0] != list(range(50)) and orders[0] != orders[1] != orders[2]
    assert one_epoch(other_seed)[0] != orders[0]
    draws = [draw for _, draw in epochs]
    assert draws[0] != draws[1]  # a sample's augmentation changes with the epoch


def test_each_sample_draws_from_its_own_generator_seed_epoch_index():
    loader = DataLoader(NumberedDataset(6), batch_size=4, shuffle=True, seed=3, workers=0)
    for epoch in range(2):
        indices, draws = one_epoch(loader)
        expected = [np.random.default_rng([3, epoch, index]).random() for index in indices]
        np.testing.assert_allclose(draws, expected, rtol=1e-6)


def test_state_dict_resumes_the_same_epochs():
    loader = DataLoader(NumberedDataset(20), batch_size=3, shuffle=True, seed=None, workers=0)
    for _ in range(2):
        one_epoch(loader)
    state = loader.state_dict()
    assert state["epoch"] == 2
    expected = [one_epoch(loader) for _ in range(2)]
    resumed = DataLoader(NumberedDataset(20), batch_size=3, shuffle=True, seed=12345, workers=0)
    resumed.load_state_dict(state)
    assert [one_epoch(resumed) for _ in range(2)] == expected
    with pytest.raises(ValueError, match="generator"):
        resumed.load_state_dict({"seed": 1, "epoch": 0})


@pytest.mark.parametrize("make", [
    lambda: DataLoader(NumberedDataset(3), batch_size=0),
    lambda: DataLoader(NumberedDataset(3), workers=-1),
    lambda: DataLoader(NumberedDataset(3), seed=-5),
    lambda: DataLoader(NumberedDataset(3), seed=1.5),
    lambda: DataLoader(object()),
])
def test_bad_arguments_are_refused(make):
    with pytest.raises((ValueError, TypeError)):
        make()


# ---------------------------------------------------------------------------------------------
# DataLoader on images: threads, real photos, errors
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def image_tree(tmp_path):
    """12 small images of different sizes in two classes."""
    root = tmp_path / "images"
    for index in range(12):
        save_image(root / ("cats" if index < 5 else "dogs") / f"{index:02d}.jpg",
                   width=30 + 7 * index, height=60 - 3 * index, seed=index)
    return root


TRAIN_TRANSFORM = T.Compose([T.RandomResizedCrop(20), T.RandomHorizontalFlip(), T.ToArray(),
                             T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])


def test_threads_give_the_batches_of_the_callers_thread(image_tree):
    dataset = ImageFolder(image_tree, transform=TRAIN_TRANSFORM)
    runs = {}
    for workers in (0, 1, 3):
        loader = DataLoader(dataset, batch_size=5, shuffle=True, seed=21, workers=workers)
        runs[workers] = [list(loader) for _ in range(2)]
    for workers in (1, 3):
        for epoch_0, epoch_w in zip(runs[0], runs[workers]):
            assert len(epoch_w) == len(epoch_0) == 3
            for (inputs_0, labels_0), (inputs_w, labels_w) in zip(epoch_0, epoch_w):
                np.testing.assert_array_equal(inputs_w, inputs_0)
                np.testing.assert_array_equal(labels_w, labels_0)
    inputs, labels = runs[0][0][0]
    assert inputs.shape == (5, 3, 20, 20) and inputs.dtype == np.float32 and labels.dtype == np.int64


def test_batches_equal_torchs_on_real_photos(torch, torchvision, hymenoptera):
    tv = torchvision.transforms
    their_transform = tv.Compose([tv.Resize(256), tv.CenterCrop(224), tv.ToTensor(),
                                  tv.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    theirs = torch.utils.data.DataLoader(torchvision.datasets.ImageFolder(hymenoptera / "val", their_transform),
                                         batch_size=3)
    ours = DataLoader(ImageFolder(hymenoptera / "val", T.preprocess), batch_size=3, workers=2)
    assert len(ours) == len(theirs) == 51
    for (inputs, labels), (their_inputs, their_labels), _ in zip(ours, theirs, range(2)):
        np.testing.assert_allclose(inputs, their_inputs.numpy(), rtol=0, atol=TOLERANCE)
        np.testing.assert_array_equal(labels, their_labels.numpy())


class SignallingDataset(NumberedDataset):
    """Records the thread of every load, and sets ``second_batch_loading`` when a sample of batch 1 loads."""

    def __init__(self, size, batch_size):
        super().__init__(size)
        self.batch_size = batch_size
        self.threads = set()
        self.second_batch_loading = threading.Event()

    def load(self, index, rng):
        self.threads.add(threading.current_thread().name)
        if index // self.batch_size == 1:
            self.second_batch_loading.set()
        return super().load(index, rng)


def test_threads_load_the_next_batch_while_the_caller_holds_this_one():
    dataset = SignallingDataset(8, batch_size=2)
    batches = iter(DataLoader(dataset, batch_size=2, workers=2))
    next(batches)
    assert dataset.second_batch_loading.wait(timeout=10), "batch 1 was not loaded ahead"
    assert all(name.startswith(THREAD_NAME_PREFIX) for name in dataset.threads)
    batches.close()
    serial = SignallingDataset(8, batch_size=2)
    list(DataLoader(serial, batch_size=2, workers=0))
    assert serial.threads == {threading.current_thread().name}


@pytest.fixture
def tree_with_a_corrupt_jpeg(image_tree):
    """Sample 3 (in batch 1 with batch_size=2) is a JPEG cut after 300 bytes."""
    good = (image_tree / "cats" / "03.jpg").read_bytes()
    corrupt = image_tree / "cats" / "03.jpg"
    corrupt.write_bytes(good[:300])
    return image_tree, corrupt


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_raises_image_error_at_its_batch(tree_with_a_corrupt_jpeg, workers):
    root, corrupt = tree_with_a_corrupt_jpeg
    loader = DataLoader(ImageFolder(root, transform=TRAIN_TRANSFORM), batch_size=2, workers=workers, seed=0)
    delivered = 0
    with pytest.raises(ImageError) as error:
        for _ in loader:
            delivered += 1
    assert delivered == 1
    assert str(corrupt) in str(error.value) and "truncated or corrupt" in str(error.value)
    if workers:
        frames = [frame.filename for frame in traceback.extract_tb(error.value.__traceback__)]
        assert not any("concurrent" in name or "PIL" in name for name in frames), frames


def test_no_thread_is_left_behind(tree_with_a_corrupt_jpeg):
    before = threading.active_count()
    loader = DataLoader(NumberedDataset(30), batch_size=2, workers=3)
    for _ in loader:  # a full pass
        pass
    assert loader_threads() == [] and threading.active_count() == before
    for _ in loader:  # stopping early
        break
    assert loader_threads() == [] and threading.active_count() == before
    batches = iter(loader)  # a generator dropped half way
    next(batches)
    del batches
    assert loader_threads() == [] and threading.active_count() == before
    root, _ = tree_with_a_corrupt_jpeg
    with pytest.raises(ImageError):  # an error in a worker
        list(DataLoader(ImageFolder(root, transform=TRAIN_TRANSFORM), batch_size=2, workers=3))
    assert loader_threads() == [] and threading.active_count() == before


def test_samples_that_cannot_be_stacked_say_what_to_add(image_tree):
    with pytest.raises(TypeError, match="ToArray"):
        next(iter(DataLoader(ImageFolder(image_tree), batch_size=2, workers=0)))
    with pytest.raises(ShapeError, match="same size"):
        next(iter(DataLoader(ImageFolder(image_tree, transform=T.ToArray()), batch_size=2, workers=0)))


def test_import_npmobilenet_does_not_import_the_data_package():
    code = "import sys, npmobilenet; assert 'npmobilenet.data' not in sys.modules and 'PIL' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
