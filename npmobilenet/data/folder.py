"""ImageFolder: a dataset of images sorted into one folder per class, torchvision's rules exactly.

The layout::

    root/
        ants/0013035.jpg          class 0 ("ants" sorts first)
        ants/more/kept.PNG        subfolders of a class folder count too
        bees/16838648_415acd9e3f.jpg
                                  class 1

The rules, each one torchvision's ``torchvision.datasets.ImageFolder``, so that the two list
the same files in the same order with the same labels:

1. The classes are the names of the subfolders of ``root``, sorted (Python's string order, so
   ``"Zebra"`` comes before ``"ant"``); class ``k`` is the ``k``-th name. Files directly in
   ``root`` are ignored. Every subfolder counts, a hidden one such as ``.ipynb_checkpoints``
   too (a common surprise: delete it).
2. The samples of a class are the image files anywhere below its folder, in the order of
   ``sorted(os.walk(class_folder, followlinks=True))`` (folders by their path as a string),
   and within a folder by file name.
3. An image file is one whose name ends, in any case, with an extension of
   :data:`IMG_EXTENSIONS`. Anything else is skipped without a word: a ``.txt``, and a ``.gif``
   (torchvision leaves GIF out of its list).

One difference, on purpose: an image is read with :func:`npmobilenet.transforms.open_image`,
which also turns a phone photo upright from its EXIF tag and scales 16-bit images properly,
where torchvision's loader only calls ``convert("RGB")``. For an ordinary 8-bit photo without
an EXIF rotation (every image of the ants-and-bees set) the pixels are the same.
"""

import os

from ..transforms import apply_transform, open_image

__all__ = ["IMG_EXTENSIONS", "ImageFolder", "find_classes", "is_image_file", "make_dataset"]

# torchvision's list (torchvision.datasets.folder.IMG_EXTENSIONS), compared in lower case.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

LAYOUT_HINT = "expected root/<class name>/<images>, e.g. hymenoptera/train/ants/0013035.jpg"


class ImageFolder:
    """The images below ``root``, one subfolder per class: ``dataset[i]`` is ``(image, class index)``.

    Attributes, as torchvision's: ``classes`` (the sorted class names), ``class_to_idx``
    (name -> index), ``samples`` (a list of ``(path, class index)``) and ``targets`` (the class
    index of each sample). The module docstring gives the rules.

    ``dataset[i]`` reads file ``i`` as an RGB PIL image and applies ``transform`` to it, if one
    was given (e.g. ``transforms.preprocess`` or a ``transforms.Compose``). ``dataset.load(i, rng)``
    does the same, handing ``rng`` (a ``numpy.random.Generator``) to a random transform: this is
    what :class:`~npmobilenet.data.DataLoader` calls, to make each sample's augmentation
    reproducible.

    Raises ``FileNotFoundError`` when ``root`` does not exist, has no class folders, or has a
    class folder without an image file; ``NotADirectoryError`` when ``root`` is a file. Reading a
    missing or corrupt image raises :class:`~npmobilenet.errors.ImageError` naming the file.
    """

    def __init__(self, root, transform=None):
        if transform is not None and not callable(transform):
            raise TypeError(f"ImageFolder: expected transform to be callable or None, got {transform!r}")
        self.root = os.path.expanduser(os.fspath(root))
        self.transform = transform
        self.classes, self.class_to_idx = find_classes(self.root)
        self.samples = make_dataset(self.root, self.class_to_idx)
        self.targets = [target for _, target in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.load(index)

    def load(self, index, rng=None):
        """Sample ``index`` as ``(image, target)``, a random transform drawing from ``rng``."""
        path, target = self.samples[index]
        image = open_image(path)
        if self.transform is not None:
            image = apply_transform(self.transform, image, rng)
        return image, target

    def __repr__(self):
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)}",
            f"    Root location: {self.root}",
        ]
        if self.transform is not None:
            transform_lines = repr(self.transform).splitlines()
            lines.append(f"    Transform: {transform_lines[0]}")
            lines.extend(f"               {line}" for line in transform_lines[1:])
        return "\n".join(lines)


def is_image_file(filename):
    """Whether ``filename`` ends, in any case, with one of :data:`IMG_EXTENSIONS`."""
    return filename.lower().endswith(IMG_EXTENSIONS)


def find_classes(root):
    """The sorted names of the folders in ``root``, and the dict name -> index."""
    _check_is_folder(root)
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(
            f"Couldn't find any class folder in {root}: {LAYOUT_HINT}"
            f"{_files_in_root_hint(root)}"
        )
    return classes, {name: index for index, name in enumerate(classes)}


def make_dataset(root, class_to_idx):
    """The list of ``(path, class index)`` of every image file below each class folder, in torchvision's order."""
    samples = []
    classes_without_images = []
    for name in sorted(class_to_idx):
        paths = _image_files_below(os.path.join(root, name))
        if not paths:
            classes_without_images.append(name)
        samples.extend((path, class_to_idx[name]) for path in paths)
    if classes_without_images:
        raise FileNotFoundError(
            f"Found no valid file for the classes {', '.join(classes_without_images)} in {root}. "
            f"Supported extensions are: {', '.join(IMG_EXTENSIONS)} (in any case); every class "
            f"folder needs at least one image: add images, or remove the folder"
        )
    return samples


def _image_files_below(folder):
    """The image files in ``folder`` and all its subfolders, in torchvision's order (rule 2)."""
    paths = []
    # sorted() orders the (folder path, subfolder names, file names) triples by folder path.
    for folder_path, _, file_names in sorted(os.walk(folder, followlinks=True)):
        paths.extend(os.path.join(folder_path, name) for name in sorted(file_names) if is_image_file(name))
    return paths


def _check_is_folder(root):
    if not os.path.exists(root):
        raise FileNotFoundError(f"ImageFolder: no such folder {root!r}; {LAYOUT_HINT}")
    if not os.path.isdir(root):
        raise NotADirectoryError(
            f"ImageFolder: {root!r} is a file, not a folder; {LAYOUT_HINT}"
        )


def _files_in_root_hint(root):
    """A hint when ``root`` holds images itself: the user probably passed a class folder."""
    with os.scandir(root) as entries:
        holds_images = any(is_image_file(entry.name) for entry in entries if entry.is_file())
    if holds_images:
        return "; it holds image files itself: is it one class folder rather than the folder above them?"
    return ""
