"""Fine-tuning side by side: :func:`npmobilenet.train.finetune` and the same recipe in PyTorch.

``npmobilenet bench --finetune DATA_DIR`` runs, on a folder with ``train/`` and ``val/`` class
folders (ants and bees, say), the transfer-learning recipe of PyTorch's tutorial twice: here,
and with torchvision's MobileNetV2, transforms and ``DataLoader``, from the same weights with
the same settings. It reports each side's validation accuracy after every epoch and its
seconds per epoch (training and validation; decoding the JPEGs included, as a user sees it).

The recipe: a new classifier for the folder's classes, the features frozen (or all but the
last ``train_blocks`` blocks), batch norm in evaluation mode, ``RandomResizedCrop(224)`` and a
random flip for training, resize 256 and centre crop 224 for validation, ImageNet's mean and
std, SGD with momentum 0.9 and weight decay 1e-4. The two sides draw different random crops
(each its own generator), so their accuracies agree as two runs of one recipe do, not to the
digit.
"""

import time

__all__ = ["run_finetune_bench", "format_finetune_report"]


def run_finetune_bench(data_dir, weights, epochs=5, train_blocks=0, batch_size=16, lr=0.01, seed=0,
                       workers=2, torch_side=True, log=None):
    """Run both sides; returns ``{"numpy": side, "torch": side or None, "settings": {...}}``.

    Each side is ``{"val_accuracy": [...], "seconds": [...]}``, one entry per epoch.
    """
    from ..train import finetune

    settings = {"data_dir": str(data_dir), "weights": str(weights), "epochs": epochs, "train_blocks": train_blocks,
                "batch_size": batch_size, "lr": lr, "seed": seed, "workers": workers}
    _, history = finetune(data_dir, weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
                          train_blocks=train_blocks, seed=seed, workers=workers, log=log)
    report = {"settings": settings, "numpy": {"val_accuracy": history.val_accuracy, "seconds": history.seconds}}
    report["torch"] = _torch_finetune(**settings, log=log) if torch_side else None
    return report


def _torch_finetune(data_dir, weights, epochs, train_blocks, batch_size, lr, seed, workers, log):
    """The same recipe with torch, torchvision's transforms and torch's DataLoader."""
    import torch
    import torchvision
    from torchvision import transforms as T

    from ..io import load_state_dict_file

    torch.manual_seed(seed)
    normalize = [T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    train_set = torchvision.datasets.ImageFolder(
        f"{data_dir}/train", T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *normalize]))
    val_set = torchvision.datasets.ImageFolder(f"{data_dir}/val", T.Compose([T.Resize(256), T.CenterCrop(224), *normalize]))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=batch_size, num_workers=workers)

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in load_state_dict_file(weights).items()})
    model.classifier[1] = torch.nn.Linear(model.last_channel, len(train_set.classes))
    if train_blocks is not None:
        model.features.requires_grad_(False)
        if train_blocks:
            model.features[-train_blocks:].requires_grad_(True)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                                weight_decay=1e-4)
    side = {"val_accuracy": [], "seconds": []}
    for epoch in range(epochs):
        began = time.perf_counter()
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        for x, y in train_loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
        side["val_accuracy"].append(correct / len(val_set))
        side["seconds"].append(time.perf_counter() - began)
        if log is not None:
            print(f"torch epoch {epoch + 1}/{epochs}  val acc {side['val_accuracy'][-1]:.3f}  "
                  f"{side['seconds'][-1]:.1f} s", file=log, flush=True)
    return side


def format_finetune_report(report):
    """A Markdown table: epoch, each side's validation accuracy and seconds, then the best and the medians."""
    numpy_side, torch_side = report["numpy"], report["torch"]
    lines = ["| epoch | npmobilenet val acc | npmobilenet s | torch val acc | torch s |", "|---:|---:|---:|---:|---:|"]
    for k in range(len(numpy_side["val_accuracy"])):
        theirs = (f"{torch_side['val_accuracy'][k]:.3f} | {torch_side['seconds'][k]:.1f}" if torch_side else "n/a | n/a")
        lines.append(f"| {k + 1} | {numpy_side['val_accuracy'][k]:.3f} | {numpy_side['seconds'][k]:.1f} | {theirs} |")
    lines.append(_summary("npmobilenet", numpy_side))
    if torch_side:
        lines.append(_summary("torch", torch_side))
    return "\n".join(lines)


def _summary(name, side):
    seconds = sorted(side["seconds"])
    return (f"\n{name}: best val acc {max(side['val_accuracy']):.3f}, last {side['val_accuracy'][-1]:.3f}, "
            f"median {seconds[len(seconds) // 2]:.1f} s per epoch")
