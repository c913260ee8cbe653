"""What does the network look at? Explanations from the network's own backward passes.

Every backward pass here is written out, so the gradient of a class score with respect to any
layer's activation is one ``backward`` call away: no autograd, no hooks. Run the forward
pass keeping the activation ``A`` of a layer, start the backward pass at the logits with
``d y_c / d logits`` (1 at class ``c``, 0 elsewhere), and run the backward passes of the
layers after that one (:mod:`~npmobilenet.explain.layers`): that is ``G = d y_c / d A``. Run it
through the whole network and it is ``d y_c / d x``.

``y_c`` is the logit of class ``c`` (before the softmax), ``c`` the predicted class unless a
``target`` is given. ``A`` is ``(N, K, h, w)``: ``K`` channels of ``h x w`` at the layer.

Class activation maps, ``(N, h, w)`` at a layer (default ``features.18``, the last 1280-channel
activation, 7x7 for a 224x224 input), in :mod:`~npmobilenet.explain.cam`:

* Grad-CAM: ``cam = ReLU(sum_k alpha_k A_k)``, ``alpha_k = mean_ij G_k(i, j)``;
* Grad-CAM++: the same sum with ``w_k = sum_ij a_k(i, j) ReLU(G_k(i, j))``,
  ``a = G^2 / (2 G^2 + sum_ij A_k * G^3)``;
* HiResCAM: ``cam = ReLU(sum_k G_k * A_k)``, each location its own gradient;
* guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM.

Attributions at the input, in :mod:`~npmobilenet.explain.attribution`:

* saliency: ``max_channels |d y_c / d x|``;
* SmoothGrad: the saliency map averaged over copies of ``x`` with Gaussian noise;
* integrated gradients: ``(x - x') * mean_a d y_c / d x (x' + a (x - x'))`` for ``a`` from 0
  to 1, whose sum over pixels is ``y_c(x) - y_c(x')`` (completeness);
* guided backpropagation: ``d y_c / d x`` where every ReLU6 also stops negative gradients,
  ``dx = dout * mask * (dout > 0)``. That is a switch on the layers (``layer.guided = True``,
  :func:`guided_relus`), because the backward rule is code we can read;
* occlusion: ``y_c(x) - y_c(x with a patch hidden)``, forward passes only.

Every method takes ``model`` in eval mode (a ``ValueError`` otherwise), ``x`` as an
``(N, 3, H, W)`` array of the model's dtype or as images (a path, a PIL image, a list of them:
preprocessed as :func:`npmobilenet.predict` does) and ``target``; leaves every parameter's
``.grad`` as it was (see :func:`~npmobilenet.explain.inputs.explaining`); works in float64
(``model.astype(np.float64)``) as in float32; and gives each image of a batch the map it
gets alone. :func:`activations` reads any layer's output by its torchvision name.

Pictures (matplotlib, imported only when one is drawn): :func:`plot_heatmap`,
:func:`plot_methods`, :func:`plot_feature_maps`, :func:`plot_stem_filters`.

>>> from npmobilenet import explain                               # doctest: +SKIP
>>> cam = explain.grad_cam(model.eval(), "examples/chelsea.jpg")  # (1, 7, 7)
>>> heat = explain.scale_cam(cam, (224, 224))                     # (1, 224, 224) in [0, 1]
"""

from .attribution import (
    IntegratedGradients,
    guided_backprop,
    guided_relus,
    input_gradient,
    integrated_gradients,
    occlusion,
    saliency,
    smooth_grad,
)
from .cam import (
    DEFAULT_LAYER,
    LayerGradient,
    activation_and_gradient,
    grad_cam,
    grad_cam_plus_plus,
    guided_grad_cam,
    hires_cam,
    scale_cam,
    upsample,
)
from .layers import activations, backward_to, find_layer, forward_keeping
from .methods import CAM_METHODS, METHODS, compare_methods, explanation_map
from .plots import photo, plot_feature_maps, plot_heatmap, plot_methods, plot_stem_filters

__all__ = [
    "CAM_METHODS", "DEFAULT_LAYER", "IntegratedGradients", "LayerGradient", "METHODS",
    "activation_and_gradient", "activations", "backward_to", "compare_methods", "explanation_map",
    "find_layer", "forward_keeping", "grad_cam", "grad_cam_plus_plus", "guided_backprop",
    "guided_grad_cam", "guided_relus", "hires_cam", "input_gradient", "integrated_gradients",
    "occlusion", "photo", "plot_feature_maps", "plot_heatmap", "plot_methods", "plot_stem_filters",
    "saliency", "scale_cam", "smooth_grad", "upsample",
]
