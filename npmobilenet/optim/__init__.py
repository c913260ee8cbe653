r"""Optimizers and learning-rate schedules: torch.optim's update rules, in NumPy.

**What an optimizer does.** Training looks for parameters :math:`\theta` that make a loss
:math:`f(\theta)` small. ``model.backward`` fills each parameter's ``.grad`` with
:math:`g = \nabla_\theta f` on one batch; the optimizer then moves every parameter a little
against its gradient, and ``zero_grad()`` clears the gradients for the next batch (they
accumulate otherwise). Plain gradient descent is :math:`\theta \leftarrow \theta - \gamma g`
with learning rate :math:`\gamma`; the optimizers here differ in what they remember between steps:

* :class:`SGD` keeps a *momentum buffer*, a running sum of past gradients, so steps keep going
  in directions the gradients agree on and oscillations across a ravine cancel:
  :math:`b \leftarrow \mu b + g`, :math:`\theta \leftarrow \theta - \gamma b`
  (Nesterov: :math:`\theta \leftarrow \theta - \gamma (g + \mu b)`).
* :class:`RMSprop` keeps a moving average of squared gradients and divides by its root, so every
  coordinate takes steps of about the same size, whatever its gradient's scale:
  :math:`v \leftarrow \alpha v + (1 - \alpha) g^2`,
  :math:`\theta \leftarrow \theta - \gamma g / (\sqrt v + \epsilon)`.
* :class:`Adam` does both, and corrects the averages' bias toward their zero start:
  :math:`m \leftarrow \beta_1 m + (1 - \beta_1) g`, :math:`v \leftarrow \beta_2 v + (1 - \beta_2) g^2`,
  :math:`\theta \leftarrow \theta - \gamma \, \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}`.
  :class:`AdamW` shrinks the weights directly, :math:`\theta \leftarrow \theta (1 - \gamma\lambda)`,
  where Adam adds :math:`\lambda \theta` to the gradient (weight decay as an L2 penalty).

Every detail is torch.optim's (where weight decay enters, the first momentum step, where eps
sits, amsgrad, the centered RMSprop), so the same gradients give torch's parameters; each
class's docstring states its rule, and a function per rule (:func:`sgd_update`,
:func:`adam_update`, :func:`rmsprop_update`) does it for one array. Parameters are updated in
place and keep their dtype; state arrays have it too.

**Parameter groups.** ``params`` may be a list of dicts, each a group with its own
hyperparameters, the defaults filling the rest; ``optimizer.param_groups`` is that list of dicts,
and a schedule changes their ``"lr"``. ``state_dict()`` and ``load_state_dict()`` save and restore
everything, in torch's layout, so a run resumed from a checkpoint continues exactly.

**Schedules** (:mod:`npmobilenet.optim.lr_scheduler`): ``StepLR``, ``MultiStepLR``,
``ExponentialLR``, ``CosineAnnealingLR``, ``LinearLR``, ``OneCycleLR``, ``SequentialLR``, with
torch's learning rates step for step.

Fine-tuning with no weight decay on batch norm and biases, five epochs of warm-up, then a cosine::

    from npmobilenet import nn, optim
    from npmobilenet.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    decay = [p for name, p in model.named_parameters() if p.data.ndim > 1]
    no_decay = [p for name, p in model.named_parameters() if p.data.ndim <= 1]
    optimizer = optim.SGD([{"params": decay, "weight_decay": 4e-5},
                           {"params": no_decay, "weight_decay": 0}], lr=0.045, momentum=0.9)
    scheduler = SequentialLR(optimizer, [LinearLR(optimizer, start_factor=0.01, total_iters=5),
                                         CosineAnnealingLR(optimizer, T_max=145)], milestones=[5])
    criterion = nn.CrossEntropyLoss()
    for epoch in range(150):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            model.backward(criterion.backward())
            optimizer.step()
        scheduler.step()
    checkpoint = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}

Only NumPy is imported here, never torch.
"""

from . import lr_scheduler
from .adam import Adam, AdamW, adam_update
from .optimizer import Optimizer
from .rmsprop import RMSprop, rmsprop_update
from .sgd import SGD, sgd_update

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "sgd_update", "adam_update", "rmsprop_update",
           "lr_scheduler"]
