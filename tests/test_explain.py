"""npmobilenet.explain against PyTorch computing the same formulas with autograd, and its promises.

The reference is torchvision's MobileNetV2 holding the same weights: a forward hook keeps the
activation of the layer of the same name and ``retain_grad()`` keeps its gradient; guided
backpropagation swaps every ReLU6 for a custom autograd function. The formulas (Grad-CAM,
Grad-CAM++, HiResCAM, saliency) are written again here in torch, from pytorch-grad-cam's.
Our side gets its gradients from the network's own backward passes only.

* float32: the real weights of ../shared on 3 of its photos at 224x224, raw maps within 1e-4
  of the largest value of torch's;
* float64: random weights (width 0.35, batch-norm statistics not the defaults) at 128x128,
  within 1e-9.
"""

import copy
import csv
import functools
import io

import numpy as np
import pytest
from PIL import Image

import npmobilenet as npm
from npmobilenet import explain, no_grad
from npmobilenet.explain.inputs import as_batch

FLOAT32_TOLERANCE = 1e-4
FLOAT64_TOLERANCE = 1e-9
PHOTOS = 3


def relative_difference(ours, theirs):
    """The largest difference, relative to the largest magnitude of the reference."""
    theirs = np.asarray(theirs)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


# --- the reference: the same formulas, from torch's autograd --------------------------------------


def torch_cams(torch):
    """pytorch-grad-cam's formulas, on torch's activation ``A`` and gradient ``G`` at the layer."""

    def grad_cam(A, G):
        return torch.relu((G.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1))

    def grad_cam_plus_plus(A, G):
        g2, g3 = G ** 2, G ** 3
        sums = A.sum(dim=(2, 3), keepdim=True)
        a = torch.where(G != 0, g2 / (2 * g2 + sums * g3 + 1e-6), torch.zeros_like(G))
        weights = (torch.relu(G) * a).sum(dim=(2, 3), keepdim=True)
        return torch.relu((weights * A).sum(dim=1))

    def hires_cam(A, G):
        return torch.relu((G * A).sum(dim=1))

    return {explain.grad_cam: grad_cam, explain.grad_cam_plus_plus: grad_cam_plus_plus, explain.hires_cam: hires_cam}


def torch_activations_and_gradients(torch, torch_model, x, layers, target):
    """``{layer: (A, d y_c / d A)}`` at each of ``layers`` (torchvision's names), from one autograd pass."""
    kept = {}

    def keep(module, inputs, output, name):
        output.retain_grad()
        kept[name] = output

    modules = dict(torch_model.named_modules())
    handles = [modules[name].register_forward_hook(functools.partial(keep, name=name)) for name in layers]
    try:
        logits = torch_model(torch.from_numpy(x))
    finally:
        for handle in handles:
            handle.remove()
    target = logits.argmax(dim=1) if target is None else torch.as_tensor(np.broadcast_to(target, (len(x),)).copy())
    logits[torch.arange(len(x)), target].sum().backward()
    return {name: (kept[name], kept[name].grad) for name in layers}


def torch_input_gradient(torch, torch_model, x, target):
    x = torch.from_numpy(x).requires_grad_()
    logits = torch_model(x)
    target = logits.argmax(dim=1) if target is None else torch.as_tensor(np.broadcast_to(target, (len(x),)).copy())
    logits[torch.arange(len(x)), target].sum().backward()
    return x.grad.numpy()


def with_relu6_backward(torch, torch_model, guided=False, masks=None):
    """A copy of torch's model whose ReLU6 layers have a custom backward: guided, and/or with given masks.

    ``guided``: guided backpropagation's rule, ``dx = dout.clamp(min=0) * mask``.
    ``masks`` (``{layer name: bool array}``): the slope-1 masks to use instead of the copy's own
    ``0 < x < 6``, to hold a float32 run to a float64 one on the same side of every kink.
    """

    class ReLU6Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, mask):
            ctx.save_for_backward((x > 0) & (x < 6) if mask is None else mask)
            return x.clamp(0, 6)

        @staticmethod
        def backward(ctx, dout):
            (mask,) = ctx.saved_tensors
            return (dout.clamp(min=0) if guided else dout) * mask.to(dout.dtype), None

    class CustomReLU6(torch.nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.mask = mask

        def forward(self, x):
            return ReLU6Function.apply(x, self.mask)

    custom = copy.deepcopy(torch_model)
    for parent_name, parent in list(custom.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU6):
                mask = None if masks is None else torch.from_numpy(masks[f"{parent_name}.{name}"])
                setattr(parent, name, CustomReLU6(mask))
    return custom


def our_relu6_masks(model, x):
    """``{name: mask}``: where each of our ReLU6 layers had slope 1 in a forward pass over ``x`` (float32 or 64)."""
    model(x)
    masks = {name: np.ascontiguousarray(module.cache) for name, module in model.named_modules()
             if isinstance(module, npm.nn.ReLU6)}
    model.clear_cache()
    return masks


def not_in_place(torch, torch_model):
    """torchvision's ReLU6 writes over the batch norm's output; a hook on that batch norm must see it unchanged."""
    for module in torch_model.modules():
        if isinstance(module, torch.nn.ReLU6):
            module.inplace = False
    return torch_model.eval()


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(shared_dir):
    """``(paths, true classes)`` of the first photos of ../shared/images/labels.csv."""
    with open(shared_dir / "images" / "labels.csv", newline="") as file:
        rows = list(csv.DictReader(file))[:PHOTOS]
    return [shared_dir / "images" / row["file"] for row in rows], np.array([int(row["class_index"]) for row in rows])


@pytest.fixture(scope="module")
def real(torch, torchvision, shared_dir):
    """Our model and torchvision's, both holding the shared weights, in eval mode."""
    weights_path = shared_dir / "weights" / "mobilenet_v2_imagenet_qat.pth"
    model = npm.mobilenet_v2(weights=weights_path).eval()
    torch_model = torchvision.models.mobilenet_v2()
    torch_model.load_state_dict(torch.load(weights_path, weights_only=True))
    return model, not_in_place(torch, torch_model)


@pytest.fixture(scope="module")
def batch(real, photos):
    return as_batch(real[0], photos[0])


@pytest.fixture(scope="module")
def random64(torch, network_twins):
    """Random float64 twins, width 0.35, with batch-norm statistics that are not the defaults; eval mode."""
    model, torch_model = network_twins(width_mult=0.35, dtype=np.float64, seed=3, training=False)
    return model.eval(), not_in_place(torch, torch_model)


@pytest.fixture(scope="module")
def x64():
    return np.random.default_rng(7).standard_normal((3, 3, 128, 128))


# --- class activation maps against torch ---------------------------------------------------------

CAMS = [explain.grad_cam, explain.grad_cam_plus_plus, explain.hires_cam]
FLOAT32_LAYERS = ["features.18", "features.18.0", "features.14", "features.14.conv.1", "features.11", "features.4.conv.1",
                  "features.2.conv.0"]
FLOAT64_LAYERS = ["features.18", "features.18.0", "features.14", "features.14.conv.1", "features.4.conv.1"]


@pytest.fixture(scope="module")
def torch_reference(torch):
    """``reference(torch_model, x, layer, target)``: torch's ``(A, G)``, one autograd pass for all layers of a target."""
    passes = {}

    def reference(torch_model, x, layer, target):
        layers = FLOAT64_LAYERS if x.dtype == np.float64 else FLOAT32_LAYERS
        key = (id(torch_model), x.dtype.name, None if target is None else tuple(np.broadcast_to(target, (len(x),))))
        if key not in passes:
            passes[key] = torch_activations_and_gradients(torch, torch_model, x, layers, target)
        return passes[key][layer]

    return reference


def check_cam(torch, reference, twins, x, method, layer, target, tolerance):
    model, torch_model = twins
    ours = method(model, x, target, layer)
    A, G = reference(torch_model, x, layer, target)
    theirs = torch_cams(torch)[method](A, G).detach().numpy()
    assert ours.shape == theirs.shape == (len(x), *A.shape[2:])
    assert ours.dtype == x.dtype
    assert np.max(theirs) > 0, "a map of zeros would prove nothing"
    difference = relative_difference(ours, theirs)
    assert difference <= tolerance, f"{method.__name__} at {layer}: {difference:.1e}"
    return difference


@pytest.fixture(scope="module")
def pinned(torch, real, batch):
    """Our model, and torchvision's whose ReLU6 layers take their backward masks from our float32 forward on ``batch``.

    A few pre-activations of a float32 forward lie within rounding of a kink of ReLU6 (0 or 6);
    there ours and torchvision's may take different branches, each rightly, and the gradient
    below that unit differs by about 1e-3 of the largest (see tests/test_mobilenetv2.py). With
    the masks pinned, what is compared is the float32 arithmetic of every other step.
    """
    model, torch_model = real
    return model, with_relu6_backward(torch, torch_model, masks=our_relu6_masks(model, batch))


@pytest.mark.parametrize("method, layer, target", [
    (explain.grad_cam, "features.18", None),
    (explain.grad_cam, "features.14", "true"),
    (explain.grad_cam, "features.4.conv.1", 3),
    (explain.grad_cam, "features.2.conv.0", None),
    (explain.grad_cam_plus_plus, "features.18", "true"),
    (explain.grad_cam_plus_plus, "features.14.conv.1", None),
    (explain.grad_cam_plus_plus, "features.18.0", 3),
    (explain.hires_cam, "features.18.0", None),
    (explain.hires_cam, "features.11", "true"),
    (explain.hires_cam, "features.2.conv.0", 3),
], ids=lambda value: getattr(value, "__name__", str(value)))
def test_cams_on_photos_equal_torch_in_float32(torch, torch_reference, pinned, batch, photos, report, method, layer, target):
    """Raw maps within 1e-4 of torch's largest value, its ReLU6 masks pinned to ours (see ``pinned``).

    Grad-CAM++ is checked where its formula is well conditioned: its alpha divides by
    ``g^2 (2 + S g) + eps``, which nearly vanishes for a few channels at some layers (at
    ``features.11``, 2e-4 of its size), and there the float32 rounding of ``g`` is multiplied
    some thousands of times, in torch's float32 run as in ours (each about 1e-3 from the float64
    map). The float64 test below covers every layer.
    """
    target = photos[1] if target == "true" else target
    difference = check_cam(torch, torch_reference, pinned, batch, method, layer, target, FLOAT32_TOLERANCE)
    report(f"explain float32 {method.__name__} at {layer}: largest difference to torch {difference:.1e}")


@pytest.mark.parametrize("layer", FLOAT64_LAYERS)
@pytest.mark.parametrize("target", [None, [5, 900, 42]], ids=["predicted", "one-each"])
@pytest.mark.parametrize("method", CAMS, ids=lambda method: method.__name__)
def test_cams_equal_torch_in_float64(torch, torch_reference, random64, x64, report, method, layer, target):
    difference = check_cam(torch, torch_reference, random64, x64, method, layer, target, FLOAT64_TOLERANCE)
    if layer == "features.14.conv.1" and target is None:
        report(f"explain float64 {method.__name__} at {layer}: largest difference to torch {difference:.1e}")


def test_each_image_gets_the_map_it_gets_alone(real, batch, photos):
    model, _ = real
    together = explain.grad_cam(model, batch, photos[1], "features.14")
    for image, row, target in zip(batch, together, photos[1]):
        alone = explain.grad_cam(model, image[None], int(target), "features.14")
        assert relative_difference(alone[0], row) <= 1e-5


BATCHED = {
    "grad_cam_plus_plus": explain.grad_cam_plus_plus,
    "hires_cam": explain.hires_cam,
    "guided_grad_cam": explain.guided_grad_cam,
    "saliency": explain.saliency,
    "guided_backprop": explain.guided_backprop,
    "smooth_grad": lambda model, x, target: explain.smooth_grad(model, x, target, samples=3, batch_size=4),
    "integrated_gradients": lambda model, x, target: explain.integrated_gradients(model, x, target, steps=3).attributions,
    "occlusion": lambda model, x, target: explain.occlusion(model, x, target, patch=64, stride=64),
}


@pytest.mark.parametrize("name", list(BATCHED))
def test_batch_of_three_equals_three_batches_of_one_in_float64(random64, x64, name):
    model, _ = random64
    method = BATCHED[name]
    together = method(model, x64, [1, 2, 3])
    for index in range(len(x64)):
        np.testing.assert_allclose(method(model, x64[index:index + 1], index + 1)[0], together[index], rtol=1e-12, atol=1e-14)


# --- attributions at the input against torch -----------------------------------------------------


def check_attribution(torch, twins, x, method, target, tolerance, masks=None):
    """Ours against torch's autograd; with ``masks``, torch's ReLU6 layers take their backward masks from ours."""
    model, torch_model = twins
    ours = method(model, x, target)
    guided = method is explain.guided_backprop
    if guided or masks is not None:
        torch_model = with_relu6_backward(torch, torch_model, guided=guided, masks=masks)
    gradient = torch_input_gradient(torch, torch_model, x, target)
    theirs = gradient if guided else np.abs(gradient).max(axis=1)
    assert ours.shape == theirs.shape and ours.dtype == x.dtype
    difference = relative_difference(ours, theirs)
    assert difference <= tolerance, f"{method.__name__}: {difference:.1e}"
    return difference


@pytest.mark.parametrize("method", [explain.saliency, explain.guided_backprop], ids=lambda method: method.__name__)
def test_attributions_on_photos_equal_torch_in_float32(torch, real, batch, photos, report, method):
    """torchvision's ReLU6 masks pinned to ours, as for the maps above: the gradient at the input goes
    through every ReLU6, and without that a few pixels differ by about 1e-2 of the largest value."""
    masks = our_relu6_masks(real[0], batch)
    difference = check_attribution(torch, real, batch, method, photos[1], FLOAT32_TOLERANCE, masks=masks)
    report(f"explain float32 {method.__name__}: largest difference to torch (its ReLU6 masks ours) {difference:.1e}")


@pytest.mark.parametrize("target", [None, 11])
@pytest.mark.parametrize("method", [explain.saliency, explain.guided_backprop], ids=lambda method: method.__name__)
def test_attributions_equal_torch_in_float64(torch, random64, x64, report, method, target):
    difference = check_attribution(torch, random64, x64, method, target, FLOAT64_TOLERANCE)
    report(f"explain float64 {method.__name__} (target {target}): largest difference to torch {difference:.1e}")


def test_guided_backprop_differs_from_the_plain_gradient(random64, x64):
    model, _ = random64
    guided = explain.guided_backprop(model, x64[:1])
    plain = explain.input_gradient(model, x64[:1])
    assert not np.allclose(guided, plain)


def test_guided_grad_cam_is_guided_backprop_times_the_scaled_map(torch, torch_reference, random64, x64):
    model, torch_model = random64
    ours = explain.guided_grad_cam(model, x64, [5, 900, 42], "features.14")
    A, G = torch_reference(torch_model, x64, "features.14", [5, 900, 42])
    cam = torch_cams(torch)[explain.grad_cam](A, G).detach().numpy()
    scaled = (cam - cam.min(axis=(1, 2), keepdims=True)) / (np.ptp(cam, axis=(1, 2), keepdims=True) + 1e-7)
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(scaled)[:, None], size=(128, 128), mode="bilinear",
                                                align_corners=False)
    theirs = torch_input_gradient(torch, with_relu6_backward(torch, torch_model, guided=True), x64,
                                  [5, 900, 42]) * upsampled.numpy()
    assert relative_difference(ours, theirs) <= FLOAT64_TOLERANCE


# --- layers by name, activations -----------------------------------------------------------------


def test_layers_are_found_by_torchvision_names(random64):
    model, torch_model = random64
    assert explain.find_layer(model, "features.18") is model.features[18]
    assert explain.find_layer(model, "features.18.0") is model.features[18][0]
    assert explain.find_layer(model, "features.14.conv.1") is model.features[14].conv[1]
    assert explain.find_layer(model, "classifier.1") is model.classifier[1]
    torch_names = {name for name, _ in torch_model.named_modules()}
    for name, module in model.named_modules():
        if name and name != "pool":
            assert name in torch_names and explain.find_layer(model, name) is module


@pytest.mark.parametrize("name, words", [
    ("features.19", ["features.19", "features.0 .. features.18"]),
    ("feature.18", ["feature.18", "features, pool, classifier"]),
    ("features.18.3", ["features.18.3", "features.18.0, features.18.1, features.18.2"]),
    ("features.18.0.weight", ["features.18.0.weight", "single layer"]),
    ("", ["features.18"]),
])
def test_unknown_layer_names_say_what_there_is(random64, x64, name, words):
    model, _ = random64
    for call in (lambda: explain.find_layer(model, name), lambda: explain.grad_cam(model, x64, layer=name),
                 lambda: explain.activations(model, x64, [name])):
        with pytest.raises(ValueError) as error:
            call()
        for word in words:
            assert word in str(error.value)


def test_activations_equal_torch(torch, random64, x64):
    model, torch_model = random64
    layers = ["features.3", "features.14.conv.1", "features.18.1", "features.18", "classifier"]
    ours = explain.activations(model, x64, layers)
    assert list(ours) == layers
    kept = {}
    modules = dict(torch_model.named_modules())
    handles = [modules[name].register_forward_hook(lambda m, i, o, name=name: kept.__setitem__(name, o.detach().numpy()))
               for name in layers]
    with torch.no_grad():
        torch_model(torch.from_numpy(x64))
    for handle in handles:
        handle.remove()
    for name in layers:
        assert ours[name].shape == kept[name].shape
        # before its ReLU6 (which runs in place): negative values are kept
        assert relative_difference(ours[name], kept[name]) <= 1e-10, name
    assert ours["features.18.1"].min() < 0
    assert all(module.cache is None for module in model.modules()), "activations() runs under no_grad()"


# --- the promises: eval mode, .grad untouched, switches restored, dtypes ---------------------------

ALL_METHODS = {
    "grad_cam": lambda model, x: explain.grad_cam(model, x, layer="features.14"),
    "grad_cam_plus_plus": lambda model, x: explain.grad_cam_plus_plus(model, x),
    "hires_cam": lambda model, x: explain.hires_cam(model, x),
    "guided_grad_cam": lambda model, x: explain.guided_grad_cam(model, x),
    "saliency": lambda model, x: explain.saliency(model, x),
    "guided_backprop": lambda model, x: explain.guided_backprop(model, x),
    "smooth_grad": lambda model, x: explain.smooth_grad(model, x, samples=3),
    "integrated_gradients": lambda model, x: explain.integrated_gradients(model, x, steps=4).attributions,
    "occlusion": lambda model, x: explain.occlusion(model, x, patch=32, stride=32),
}


@pytest.fixture(scope="module")
def small(random64):
    """The random float64 model, and a 64x64 batch of 2."""
    return random64[0], np.random.default_rng(2).standard_normal((2, 3, 64, 64))


@pytest.mark.parametrize("name", list(ALL_METHODS))
def test_every_method_leaves_the_model_as_it_was(small, name):
    model, x = small
    rng = np.random.default_rng(0)
    for parameter in model.parameters():
        parameter.grad[...] = rng.standard_normal(parameter.shape)
    model.classifier[1].weight.requires_grad = False  # a frozen parameter stays frozen
    grads = {key: p.grad.copy() for key, p in model.named_parameters()}
    flags = {key: p.requires_grad for key, p in model.named_parameters()}
    state = model.state_dict()
    try:
        result = ALL_METHODS[name](model, x)
        assert {key: p.requires_grad for key, p in model.named_parameters()} == flags
    finally:
        model.classifier[1].weight.requires_grad = True
    assert result.dtype == np.float64 and len(result) == 2 and np.all(np.isfinite(result))
    for key, p in model.named_parameters():
        assert np.array_equal(p.grad, grads[key]), f"{name} changed {key}.grad"
    assert all(np.array_equal(value, state[key]) for key, value in model.state_dict().items())
    assert not any(module.training for module in model.modules())
    assert not any(getattr(module, "guided", False) for module in model.modules())
    assert all(module.cache is None for module in model.modules()), "the caches of the explanation are dropped"


@pytest.mark.parametrize("name", list(ALL_METHODS))
def test_every_method_asks_for_eval_mode(small, name):
    model, x = small
    model.features[3].train()
    try:
        with pytest.raises(ValueError, match=r"eval mode \(call model.eval\(\) first\)"):
            ALL_METHODS[name](model, x)
    finally:
        model.eval()


def test_gradient_methods_refuse_no_grad(small):
    model, x = small
    with no_grad(), pytest.raises(RuntimeError, match="outside no_grad"):
        explain.grad_cam(model, x)


def test_requires_grad_flags_are_restored_after_an_error(small):
    model, x = small
    with pytest.raises(ValueError, match="target"):
        explain.grad_cam(model, x, target=1000)
    assert all(p.requires_grad for p in model.parameters())


def test_guided_switch_is_restored_even_after_an_error(small):
    model, x = small
    relus = [m for m in model.modules() if isinstance(m, (npm.nn.ReLU, npm.nn.ReLU6))]
    assert len(relus) == 35  # 2 per block with expansion, 1 in the first block, stem and last conv
    with explain.guided_relus(model):
        assert all(relu.guided for relu in relus)
    assert not any(relu.guided for relu in relus)
    with pytest.raises(ValueError, match="target"):
        explain.guided_backprop(model, x, target=-1)
    assert not any(relu.guided for relu in relus)


@pytest.mark.parametrize("target", [1000, -1, [1, 2, 3], 2.5, "cat"])
def test_bad_targets(small, target):
    model, x = small
    with pytest.raises(ValueError, match="target"):
        explain.grad_cam(model, x, target=target)


def test_float32_input_for_a_float64_model_is_refused(small):
    model, x = small
    with pytest.raises(npm.ShapeError, match="dtype"):
        explain.saliency(model, x.astype(np.float32))


def test_an_image_path_goes_through_the_preprocessing(real, batch, photos):
    model, _ = real
    from_path = explain.grad_cam(model, photos[0][0])
    assert from_path.shape == (1, 7, 7) and from_path.dtype == np.float32
    np.testing.assert_allclose(from_path[0], explain.grad_cam(model, batch[:1])[0], rtol=1e-6, atol=1e-7)


# --- integrated gradients, SmoothGrad, occlusion -------------------------------------------------


def test_integrated_gradients_completeness_within_one_percent_at_64_steps(real, batch, report):
    """The issue's check, on the first shared photo (the tench), from the zero baseline.

    It does not hold for every photo: with the paper's Riemann sum the gap at 64 steps was
    within 1% for 3 of the first 11 photos tried (median 2.5%, worst 8.7%), at 256 steps for 9
    of 11 (median 0.4%). Many ReLU6 switch within a few hundredths of the baseline, where the
    gradient jumps about; the gap says when to raise ``steps``.
    """
    model, _ = real
    result = explain.integrated_gradients(model, batch[:1], steps=64)
    assert result.attributions.shape == batch[:1].shape
    error = float(result.completeness_error[0])
    report(f"integrated gradients, 64 steps, one photo: sum of attributions {result.attributions.sum():.3f}, "
           f"y(x) - y(baseline) {float(result.score[0] - result.baseline_score[0]):.3f}, relative gap {error:.2%}")
    assert error <= 0.01


def test_integrated_gradients_equal_the_formula_with_torch_in_float64(torch, random64, x64):
    """``(x - x') * mean_k grad(x' + (k / m)(x - x'))``, k = 1..m, and the two scores, from torch's autograd."""
    model, torch_model = random64
    x = x64[:2, :, :64, :64].copy()
    baseline, steps = x * 0.25, 5
    ours = explain.integrated_gradients(model, x, target=[3, 4], baseline=baseline, steps=steps, batch_size=6)
    gradients = [torch_input_gradient(torch, torch_model, baseline + k / steps * (x - baseline), [3, 4])
                 for k in range(1, steps + 1)]
    expected = (x - baseline) * np.mean(gradients, axis=0)
    assert relative_difference(ours.attributions, expected) <= FLOAT64_TOLERANCE
    with torch.no_grad():
        scores = [torch_model(torch.from_numpy(a)).numpy()[[0, 1], [3, 4]] for a in (x, baseline)]
    np.testing.assert_allclose([ours.score, ours.baseline_score], scores, rtol=1e-10)
    change = scores[0] - scores[1]
    np.testing.assert_allclose(ours.completeness_error, np.abs(expected.sum(axis=(1, 2, 3)) - change) / np.abs(change),
                               rtol=1e-6)


def test_smooth_grad_is_reproducible_by_seed(small):
    model, x = small
    first = explain.smooth_grad(model, x, samples=4, seed=5)
    assert first.shape == (2, 64, 64) and np.all(first >= 0)
    np.testing.assert_array_equal(first, explain.smooth_grad(model, x, samples=4, seed=5))
    assert not np.allclose(first, explain.smooth_grad(model, x, samples=4, seed=6))
    alone = explain.smooth_grad(model, x[1:], samples=4, seed=5, batch_size=1)
    np.testing.assert_allclose(alone[0], first[1], rtol=1e-10)
    no_noise = explain.smooth_grad(model, x, samples=2, noise_level=0.0)
    np.testing.assert_allclose(no_noise, explain.saliency(model, x), rtol=1e-12)


def naive_occlusion(model, x, target, patch, stride):
    """One forward pass per patch position, the sum and count of every pixel's drops kept in loops."""
    with no_grad():
        base = model(x)[0, target]
        height, width = x.shape[2:]
        total, count = np.zeros((height, width)), np.zeros((height, width))
        for top in range(0, height - patch + 1, stride):
            for left in range(0, width - patch + 1, stride):
                hidden = x.copy()
                hidden[0, :, top:top + patch, left:left + patch] = 0
                drop = base - model(hidden)[0, target]
                for i in range(top, top + patch):
                    for j in range(left, left + patch):
                        total[i, j] += drop
                        count[i, j] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0)


@pytest.mark.parametrize("patch, stride", [(16, 8), (20, 12)])
def test_occlusion_equals_one_forward_per_patch(small, patch, stride):
    model, x = small
    ours = explain.occlusion(model, x, target=9, patch=patch, stride=stride, batch_size=5)
    for index in range(len(x)):
        expected = naive_occlusion(model, x[index:index + 1], 9, patch, stride)
        np.testing.assert_allclose(ours[index], expected, rtol=1e-9, atol=1e-12)
    if patch == 20:  # 64 - 20 = 44 is no multiple of 12: the last 8 rows and columns are never hidden
        assert np.all(ours[:, 56:, :] == 0) and np.all(ours[:, :, 56:] == 0) and np.any(ours[:, 55, :] != 0)


@pytest.mark.parametrize("patch, stride", [(65, 8), (0, 8), (8, 0), (8.5, 4)])
def test_occlusion_refuses_a_patch_that_does_not_fit(small, patch, stride):
    model, x = small
    with pytest.raises(ValueError, match="patch"):
        explain.occlusion(model, x, patch=patch, stride=stride)


# --- upsampling -----------------------------------------------------------------------------------


@pytest.mark.parametrize("source, size", [((7, 7), (224, 224)), ((5, 9), (13, 20)), ((9, 4), (4, 9)), ((1, 3), (3, 1))])
@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_upsample_equals_torch_interpolate(torch, source, size, dtype, tolerance):
    maps = np.random.default_rng(0).standard_normal((2, *source)).astype(dtype)
    ours = explain.upsample(maps, size)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=size, mode="bilinear",
                                             align_corners=False)[:, 0].numpy()
    assert ours.shape == (2, *size) and ours.dtype == dtype
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tolerance * np.abs(maps).max())


def test_scale_cam_is_pytorch_grad_cams(torch):
    cam = np.random.default_rng(1).uniform(0, 5, (2, 7, 7))
    scaled = explain.scale_cam(cam, (224, 224))
    expected = (cam - cam.min(axis=(1, 2), keepdims=True)) / (np.ptp(cam, axis=(1, 2), keepdims=True) + 1e-7)
    np.testing.assert_allclose(scaled, explain.upsample(expected, (224, 224)), rtol=1e-12)
    assert scaled.min() >= 0 and scaled.max() <= 1
    np.testing.assert_allclose(explain.scale_cam(cam), expected, rtol=1e-12)
    assert np.all(explain.scale_cam(np.zeros((1, 3, 3))) == 0)


# --- pictures -------------------------------------------------------------------------------------


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_pictures_are_pngs_of_the_expected_size(tmp_path, small, real, batch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    model, x = real[0], batch[:1]
    photo = explain.photo(x)
    assert photo.shape == (224, 224, 3) and 0 <= photo.min() and photo.max() <= 1
    cam = explain.grad_cam(model, x)
    maps = explain.compare_methods(small[0], small[1][:1], ["gradcam", "saliency", "occlusion"])
    pictures = {
        "heatmap.png": (lambda save: explain.plot_heatmap(photo, cam[0], label="Egyptian cat (285)", save=save), (400, 360)),
        "methods.png": (lambda save: explain.plot_methods(np.zeros((64, 64, 3)), {k: v[0] for k, v in maps.items()},
                                                          label="random", save=save), (720, 510)),
        "features.png": (lambda save: explain.plot_feature_maps(explain.activations(model, x, "features.14")["features.14"],
                                                                title="features.14", save=save), (1040, 300)),
        "stem.png": (lambda save: explain.plot_stem_filters(model, save=save), (800, 440)),
    }
    for name, (draw, size) in pictures.items():
        figure = draw(tmp_path / name)
        assert png_size(tmp_path / name) == size, name
        assert (tmp_path / name).stat().st_size > 5000, name
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(pictures)


def test_import_needs_neither_matplotlib_nor_pillow():
    """matplotlib is imported when a picture is drawn, Pillow when an image is read: the command's parser imports explain."""
    import subprocess
    import sys

    code = ("import sys, npmobilenet.explain, npmobilenet.cli; npmobilenet.cli.build_parser(); "
            "assert not {'matplotlib', 'PIL', 'torch'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
