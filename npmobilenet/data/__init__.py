"""Images to training batches: a dataset says what the samples are, a loader serves them in batches.

A **dataset** is a list you can index: ``len(dataset)`` samples, ``dataset[i]`` is the pair
``(x, target)``. :class:`ImageFolder` is the dataset of images sorted into one folder per
class, with torchvision's rules: ``dataset[i]`` reads file ``i`` and runs ``transform`` on
it, so ``x`` is whatever the transform makes, usually a ``(3, 224, 224)`` float32 array, and
``target`` is the class index.

A **loader** turns a dataset into an epoch of batches: it chooses the order (shuffled or
not), cuts it into batches, loads each batch's samples and stacks them into one
``(N, 3, H, W)`` array with an ``(N,)`` array of int64 labels, the arrays a training step
takes::

    from npmobilenet import transforms as T
    from npmobilenet.data import DataLoader, ImageFolder

    train_transform = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                                 T.ToArray(), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    dataset = ImageFolder("hymenoptera/train", transform=train_transform)
    loader = DataLoader(dataset, batch_size=16, shuffle=True, seed=0)
    for epoch in range(5):
        for inputs, labels in loader:     # a new order, and new crops, every epoch
            ...                           # forward, loss, backward, step

How threads overlap decoding with computing: reading a JPEG and resizing it is Pillow's C
code, which lets go of Python's global interpreter lock while it works, and so does NumPy
during a matrix product. While the training step computes on one batch, the loader's
threads (``workers`` of them) already decode the next ones, so the step rarely waits for
images. The order of the batches, and each image's random crop and flip, do not depend on
the threads: every sample draws from its own generator, made from (seed, epoch, index). See
:mod:`npmobilenet.data.loader`.

:class:`DataLoader` is in :mod:`npmobilenet.data.loader`, :class:`ImageFolder` in
:mod:`npmobilenet.data.folder`; the transforms are in :mod:`npmobilenet.transforms`. This
package also holds ``imagenet_classes.txt``, the class names :mod:`npmobilenet.imagenet` reads.
"""

from .folder import IMG_EXTENSIONS, ImageFolder
from .loader import DataLoader, collate, default_workers

__all__ = ["IMG_EXTENSIONS", "DataLoader", "ImageFolder", "collate", "default_workers"]
