"""Pictures of the explanations, with matplotlib (imported inside the functions only).

Each function returns a ``matplotlib.figure.Figure`` and, given ``save="out.png"``, also writes
it as a PNG (atomically: a whole file or none). The figures are made without ``pyplot``, so no
window opens and nothing is kept in pyplot's list of figures; a notebook shows a returned
figure as it shows any other.

* :func:`plot_heatmap`: one map over the photo, with a colour bar and the class label;
* :func:`plot_methods`: a grid comparing methods for one image;
* :func:`plot_feature_maps`: the channels of one layer's activation;
* :func:`plot_stem_filters`: the 32 3x3 filters of the first convolution, as colour patches.

``image`` is an ``(H, W, 3)`` picture (uint8, or floats in [0, 1]); :func:`photo` makes one
from a normalised network input.
"""

import numpy as np

from ..io import atomic_write
from .cam import upsample
from .layers import find_layer

__all__ = ["photo", "plot_feature_maps", "plot_heatmap", "plot_methods", "plot_stem_filters"]

DPI = 100


def photo(x, mean=None, std=None):
    """A normalised input ``(3, H, W)`` (or ``(1, 3, H, W)``) back to an ``(H, W, 3)`` picture in [0, 1]: ``x * std + mean``.

    ``mean`` and ``std`` default to ImageNet's (:data:`npmobilenet.transforms.IMAGENET_MEAN`, ``_STD``).
    """
    from ..transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = IMAGENET_MEAN if mean is None else mean
    std = IMAGENET_STD if std is None else std
    x = np.asarray(x)
    x = x[0] if x.ndim == 4 else x
    picture = x.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return np.clip(picture, 0, 1)


def plot_heatmap(image, heatmap, label=None, alpha=0.5, cmap="jet", size=(4.0, 3.6), save=None):
    """``heatmap`` ``(h, w)`` over ``image``, with a colour bar; ``label`` (the class) as the title.

    A heatmap smaller than the image (a raw class activation map) is upsampled to it (bilinear).
    """
    figure = _figure(size)
    axes = figure.add_subplot()
    overlay = _draw_overlay(axes, image, heatmap, alpha, cmap)
    figure.colorbar(overlay, ax=axes, fraction=0.046, pad=0.03)
    if label is not None:
        axes.set_title(str(label), fontsize=9)
    return _finish(figure, save)


def plot_methods(image, maps, label=None, columns=3, alpha=0.5, cmap="jet", save=None):
    """A grid: the photo, then each map of ``maps`` (``{method: (H, W) map}``) over it, titled by method."""
    figure, axes = _grid(1 + len(maps), columns, 2.4, 0.3 if label else 0)
    axes[0].imshow(_picture(image))
    axes[0].set_title("input", fontsize=9)
    for panel, (method, heatmap) in zip(axes[1:], maps.items()):
        _draw_overlay(panel, image, np.asarray(heatmap), alpha, cmap)
        panel.set_title(method, fontsize=9)
    if label is not None:
        figure.suptitle(str(label), fontsize=10)
    return _finish(figure, save)


def plot_feature_maps(activation, count=16, columns=8, title=None, save=None):
    """The ``count`` channels of ``activation`` ``(C, h, w)`` (or ``(1, C, h, w)``) with the largest mean, each on its own scale."""
    activation = np.asarray(activation)
    activation = activation[0] if activation.ndim == 4 else activation
    channels = np.argsort(-activation.mean(axis=(1, 2)), kind="stable")[:count]
    figure, axes = _grid(len(channels), columns, 1.3, 0.4)
    for panel, channel in zip(axes, channels):
        panel.imshow(activation[channel], cmap="viridis")
        panel.set_title(f"channel {channel}", fontsize=7)
    if title is not None:
        figure.suptitle(title, fontsize=10)
    return _finish(figure, save)


def plot_stem_filters(model, save=None):
    """The first convolution's filters (``features.0.0``: 32 of 3x3 over RGB) as colour patches.

    All filters share one scale, ``(w - min) / (max - min)`` over every weight, so mid-grey is
    about 0 and the colours compare across filters.
    """
    weight = find_layer(model, "features.0.0").weight.data
    tiles = (weight - weight.min()) / (weight.max() - weight.min())
    figure, axes = _grid(len(tiles), 8, 1.0, 0.4)
    for panel, (index, tile) in zip(axes, enumerate(tiles)):
        panel.imshow(tile.transpose(1, 2, 0), interpolation="nearest")
        panel.set_title(str(index), fontsize=7)
    figure.suptitle(f"features.0.0: {len(tiles)} filters, {weight.shape[2]}x{weight.shape[3]} over RGB", fontsize=10)
    return _finish(figure, save)


def _figure(size):
    """A figure of ``size`` inches, made without pyplot."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"npmobilenet.explain's pictures need matplotlib ({error}): "
                          f"pip install 'npmobilenet[viz]'", name="matplotlib") from None
    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _grid(panels, columns, cell, title_room):
    """A figure of ``panels`` square cells of ``cell`` inches, ``columns`` a row, axes hidden; ``(figure, axes)``."""
    rows = -(-panels // columns)
    figure = _figure((cell * columns, cell * rows + title_room))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for panel in axes:
        panel.axis("off")
    return figure, axes


def _picture(image):
    image = np.asarray(image)
    return image if image.dtype == np.uint8 else np.clip(image, 0, 1)


def _draw_overlay(axes, image, heatmap, alpha, cmap):
    """The photo, the heatmap over it (upsampled to the photo's size when smaller); returns the heatmap's image."""
    picture = _picture(image)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.shape != picture.shape[:2]:
        heatmap = upsample(heatmap[None], picture.shape[:2])[0]
    axes.imshow(picture)
    overlay = axes.imshow(heatmap, cmap=cmap, alpha=alpha)
    axes.axis("off")
    return overlay


def _finish(figure, save):
    """Write ``figure`` to ``save`` as a PNG (atomically) when asked; return it."""
    if save is not None:
        with atomic_write(save) as file:
            figure.savefig(file, format="png", dpi=DPI)
    return figure
