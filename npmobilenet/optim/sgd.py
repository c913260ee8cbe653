r"""Stochastic gradient descent, with momentum, dampening, Nesterov momentum and weight decay.

The rule, in torch's notation (:math:`\gamma` lr, :math:`\lambda` weight decay, :math:`\mu`
momentum, :math:`\tau` dampening), at step :math:`t = 1, 2, \dots`::

    g_t = -grad if maximize else grad
    g_t = g_t + lambda * theta_{t-1}                 if lambda != 0   (L2 penalty: in the gradient)
    b_t = g_t                                        if t == 1        (the gradient itself, undamped)
    b_t = mu * b_{t-1} + (1 - tau) * g_t             if t > 1
    g_t = g_t + mu * b_t   if nesterov   else   b_t  if mu != 0
    theta_t = theta_{t-1} - gamma * g_t

Two details differ from the textbook (Sutskever et al.) and from some other libraries: the
learning rate multiplies the buffer when the step is taken, not when the buffer is filled, and
the buffer starts as the first gradient rather than as zeros, so dampening first acts on step 2.
"""

from .optimizer import Optimizer, check, check_nonnegative

__all__ = ["SGD", "sgd_update"]


def sgd_update(param, grad, state, *, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """One SGD step for one parameter array, in place; ``state`` holds ``"momentum_buffer"``."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    if momentum != 0:
        buffer = state.get("momentum_buffer")
        if buffer is None:                       # first step: the gradient itself
            buffer = state["momentum_buffer"] = g.astype(param.dtype)
        else:
            buffer *= momentum
            buffer += (1 - dampening) * g
        g = g + momentum * buffer if nesterov else buffer
    param -= lr * g


class SGD(Optimizer):
    r"""``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False)``.

    torch.optim.SGD's rule, to the last detail:

    .. math::
        g_t &= \nabla_\theta f_t(\theta_{t-1}) + \lambda \theta_{t-1} \\
        b_t &= \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1 - \tau) g_t & t > 1 \end{cases} \\
        \theta_t &= \theta_{t-1} - \gamma \, (g_t + \mu b_t \text{ if nesterov else } b_t)

    (the gradient negated first when ``maximize``). In code, for each parameter with a gradient
    (:func:`sgd_update`)::

        g = grad + weight_decay * param
        buffer = g.copy() if first_step else momentum * buffer + (1 - dampening) * g
        param -= lr * (g + momentum * buffer if nesterov else buffer)

    The MobileNetV2 recipe of torchvision's reference scripts: ``SGD(model.parameters(), lr=0.045,
    momentum=0.9, weight_decay=4e-5)``.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_nonnegative(group, "lr", "momentum", "weight_decay")
        check(not group["nesterov"] or (group["momentum"] > 0 and group["dampening"] == 0),
              "Nesterov momentum requires a momentum and zero dampening")

    def _update(self, param, grad, state, group):
        sgd_update(param, grad, state, lr=group["lr"], momentum=group["momentum"],
                   dampening=group["dampening"], weight_decay=group["weight_decay"],
                   nesterov=group["nesterov"], maximize=group["maximize"])
