"""What fine-tuning needs from the layers: frozen parameters, a backward pass that stops early, Sequential as a list, a new classifier.

Each is checked against PyTorch where PyTorch defines the result.
"""

import warnings

import numpy as np
import pytest
from torch_helpers import assert_close, to_torch, upstream_gradient

import npmobilenet
from npmobilenet import nn


def small_model(dropout=0.0):
    return npmobilenet.MobileNetV2(num_classes=5, width_mult=0.35, dropout=dropout, seed=0).astype(np.float64)


def batch(seed=0, size=40):
    return np.random.default_rng(seed).standard_normal((2, 3, size, size))


def gradients_of_one_pass(model, x, dout):
    """Every parameter's gradient after one forward and backward pass, and the gradients then zeroed."""
    model(x)
    model.backward(dout)
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    return grads


def count_backward_calls(monkeypatch, layer_type):
    """Count the backward passes of every ``layer_type`` layer from now on."""
    calls = []
    original = layer_type.backward
    monkeypatch.setattr(layer_type, "backward", lambda self, *args, **kwargs: calls.append(self) or original(self, *args, **kwargs))
    return calls


# --- requires_grad -----------------------------------------------------------------------------


def test_requires_grad_defaults_to_true_and_requires_grad_freezes_a_subtree():
    model = small_model()
    assert all(p.requires_grad for p in model.parameters())
    assert model.features.requires_grad_(False) is model.features
    assert not any(p.requires_grad for p in model.features.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    assert model.needs_grad() and not model.features.needs_grad()
    assert "requires_grad=False" in repr(model.features[0][0].weight)


def test_a_frozen_parameter_gets_no_gradient_and_the_others_are_unchanged(torch):
    """Freezing the batch norms of a small network: torch leaves their .grad None, we leave it zero;
    every other gradient equals the unfrozen run's, as in torch."""
    import torchvision

    model = small_model()
    torch_model = torchvision.models.mobilenet_v2(num_classes=5, width_mult=0.35, dropout=0.0).double()
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x, dout = batch(), upstream_gradient((2, 5), seed=0)
    for module, torch_module in zip(model.modules(), torch_model.modules()):
        if isinstance(module, nn.BatchNorm2d):
            module.requires_grad_(False)
            torch_module.requires_grad_(False)
    model(x)
    model.backward(dout)
    tx = to_torch(torch, x, requires_grad=True)
    torch_model(tx).backward(torch.from_numpy(dout))
    for (name, p), (torch_name, tp) in zip(model.named_parameters(), torch_model.named_parameters()):
        assert name == torch_name
        if tp.grad is None:
            assert not p.requires_grad and not p.grad.any(), name
        else:
            assert_close(p.grad, tp.grad.numpy(), np.float64, name)


def test_frozen_features_cost_no_backward_pass_at_all(monkeypatch):
    model = small_model()
    model.features.requires_grad_(False)
    calls = count_backward_calls(monkeypatch, nn.Conv2d)
    out = model(batch())
    assert model.backward(np.ones_like(out), input_grad=False) is None
    assert calls == [], "no convolution of the frozen features may run backward"
    assert model.classifier[1].weight.grad.any()


def test_backward_stops_at_the_lowest_block_that_learns(monkeypatch):
    """Unfreezing the last two blocks: exactly their convolutions run backward, and their
    gradients equal those of a run where nothing is frozen."""
    model = small_model()
    x, dout = batch(), upstream_gradient((2, 5), seed=1)
    full = gradients_of_one_pass(model, x, dout)
    model.features.requires_grad_(False)
    model.features[17].requires_grad_(True)
    model.features[18].requires_grad_(True)
    calls = count_backward_calls(monkeypatch, nn.Conv2d)
    model(x)
    model.backward(dout, input_grad=False)
    learning = {id(m) for i in (17, 18) for m in model.features[i].modules() if isinstance(m, nn.Conv2d)}
    assert {id(c) for c in calls} == learning
    for name, p in model.named_parameters():
        if p.requires_grad:
            np.testing.assert_array_equal(p.grad, full[name], err_msg=name)
        else:
            assert not p.grad.any(), name


def test_a_frozen_block_between_learning_ones_passes_the_gradient_on():
    model = small_model()
    x, dout = batch(), upstream_gradient((2, 5), seed=2)
    full = gradients_of_one_pass(model, x, dout)
    model.features[5].requires_grad_(False)
    model(x)
    dx = model.backward(dout)
    assert dx is not None and dx.shape == x.shape
    for name, p in model.named_parameters():
        expected = 0 * full[name] if name.startswith("features.5.") else full[name]
        np.testing.assert_array_equal(p.grad, expected, err_msg=name)


# --- Sequential as a list ------------------------------------------------------------------------


def test_sequential_indexing_slicing_assignment_and_deletion_like_torch(torch):
    ours = nn.Sequential(nn.ReLU(), nn.Linear(3, 4, seed=0), nn.ReLU6(), nn.Linear(4, 2, seed=1))
    theirs = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(3, 4), torch.nn.ReLU6(), torch.nn.Linear(4, 2))
    assert len(ours) == len(theirs) == 4
    assert type(ours[-1]).__name__ == type(theirs[-1]).__name__ == "Linear"
    assert [type(m).__name__ for m in ours[1:3]] == [type(m).__name__ for m in theirs[1:3]]
    assert isinstance(ours[1:3], nn.Sequential) and isinstance(theirs[1:3], torch.nn.Sequential)
    ours[3], theirs[3] = nn.Linear(4, 7, seed=2), torch.nn.Linear(4, 7)
    del ours[0]
    del theirs[0]
    assert [name for name, _ in ours.named_children()] == [name for name, _ in theirs.named_children()] == ["0", "1", "2"]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours(np.ones((2, 3), np.float32)).shape == (2, 7)
    with pytest.raises(IndexError, match="out of range"):
        ours[3]
    with pytest.raises(TypeError, match="Module"):
        ours[0] = "not a layer"


def test_a_new_classifier_by_item_assignment_trains():
    model = small_model()
    model.classifier[1] = nn.Linear(model.last_channel, 2, seed=0).astype(np.float64)
    assert list(model.state_dict())[-2:] == ["classifier.1.weight", "classifier.1.bias"]
    out = model(batch())
    assert out.shape == (2, 2)
    model.backward(np.ones_like(out))
    assert model.classifier[1].weight.grad.shape == (2, model.last_channel)


# --- a pretrained model with a new number of classes ---------------------------------------------


def test_mobilenet_v2_with_new_num_classes_loads_the_features_and_says_so(tmp_path):
    source = npmobilenet.MobileNetV2(num_classes=10, width_mult=0.35, seed=0)
    path = tmp_path / "ten.npz"
    npmobilenet.save_npz(source.state_dict(), path)
    with pytest.warns(UserWarning, match="10 classes and num_classes=3"):
        model = npmobilenet.mobilenet_v2(weights=str(path), num_classes=3, width_mult=0.35)
    assert model.classifier[1].weight.shape == (3, model.last_channel)
    for name, value in model.state_dict().items():
        if not name.startswith("classifier."):
            np.testing.assert_array_equal(value, source.state_dict()[name], err_msg=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same number of classes: no warning
        same = npmobilenet.mobilenet_v2(weights=str(path), width_mult=0.35)
    np.testing.assert_array_equal(same.classifier[1].weight.data, source.classifier[1].weight.data)


def test_new_num_classes_does_not_hide_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "narrow.npz"
    npmobilenet.save_npz(npmobilenet.MobileNetV2(num_classes=10, width_mult=0.35).state_dict(), path)
    with pytest.raises(npmobilenet.WeightsError, match="shape mismatches"):
        npmobilenet.mobilenet_v2(weights=str(path), num_classes=3, width_mult=0.5)


# --- label smoothing ----------------------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_loss_with_label_smoothing_matches_torch(torch, label_smoothing):
    rng = np.random.default_rng(3)
    logits, targets = rng.standard_normal((4, 6)), rng.integers(0, 6, 4)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    loss = criterion(logits, targets)
    dlogits = criterion.backward(0.5)
    tlogits = to_torch(torch, logits, requires_grad=True)
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)(tlogits, torch.from_numpy(targets))
    tloss.backward(torch.tensor(0.5, dtype=torch.float64))
    assert_close(loss, tloss.detach().numpy(), np.float64, "loss")
    assert_close(dlogits, tlogits.grad.numpy(), np.float64, "dlogits")


def test_label_smoothing_out_of_range_raises():
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)


@pytest.mark.parametrize("batchnorm_mode", ["train", "eval"])
def test_forward_without_input_grad_runs_the_frozen_layers_without_caches(batchnorm_mode):
    """``model(x, input_grad=False)``: the frozen blocks keep no cache (and fold batch norm in
    eval mode), the learning ones do, and logits and gradients equal the plain forward's."""
    model = small_model()
    model.features.requires_grad_(False)
    model.features[16].requires_grad_(True)
    if batchnorm_mode == "eval":
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
    x, dout = batch(), upstream_gradient((2, 5), seed=3)
    model_plain = small_model()
    model_plain.load_state_dict(model.state_dict())
    for ours, plain in zip(model.modules(), model_plain.modules()):
        plain.training = ours.training
        for p, q in zip(ours.parameters(), plain.parameters()):
            q.requires_grad = p.requires_grad
    logits = model(x, input_grad=False)
    assert all(m.cache is None for i in range(16) for m in model.features[i].modules())
    assert model.features[16].conv[0][0].cache is not None
    expected = model_plain(x)
    np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-12)
    model.backward(dout, input_grad=False)
    model_plain.backward(dout)
    for (name, p), (_, q) in zip(model.named_parameters(), model_plain.named_parameters()):
        if p.requires_grad:
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12, err_msg=name)
    if batchnorm_mode == "train":  # the frozen blocks' batch norms still moved their statistics
        np.testing.assert_array_equal(model.state_dict()["features.3.conv.0.1.running_mean"],
                                      model_plain.state_dict()["features.3.conv.0.1.running_mean"])
