"""The 1000 ImageNet class names, in the order of the classifier's outputs.

Output ``k`` of an ImageNet-trained model is the score of class ``categories()[k]``.

Where the names come from: ``npmobilenet/data/imagenet_classes.txt`` was written once, at
development time, from torchvision's list ``torchvision.models._meta._IMAGENET_CATEGORIES``
(torchvision 0.29.1), one name a line, in that order. It is the order of the 1000 sorted
WordNet ids of the ImageNet-1k (ILSVRC 2012) classes, with a short readable name for each.
WordNet gives a few classes the same word (two kinds of "crane", two of "maillot");
torchvision tells them apart ("crane bird" and "crane", "maillot" and "maillot tank suit")
and the file keeps its names exactly. A test checks the file against torchvision.
npmobilenet itself never imports torchvision.
"""

import functools
from importlib import resources

__all__ = ["categories"]

CLASSES_FILE = "imagenet_classes.txt"


@functools.cache
def categories():
    """Return the 1000 ImageNet class names as a tuple, index ``k`` naming class ``k``.

    The file ``npmobilenet/data/imagenet_classes.txt`` is read the first time only (the
    result is cached; a tuple, so nobody can change the cached copy).

    >>> categories()[285]
    'Egyptian cat'
    """
    text = resources.files("npmobilenet").joinpath("data").joinpath(CLASSES_FILE).read_text(encoding="utf-8")
    return tuple(text.splitlines())
