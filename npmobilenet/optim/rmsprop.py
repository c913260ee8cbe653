r"""RMSprop: divide the gradient by a moving root mean square of recent gradients.

The rule, in torch's notation (:math:`\gamma` lr, :math:`\alpha` smoothing constant, :math:`\mu`
momentum, :math:`\lambda` weight decay, :math:`\epsilon` eps), averages and buffer starting at 0::

    g_t = -grad if maximize else grad
    g_t = g_t + lambda * theta_{t-1}                    if lambda != 0
    v_t = alpha * v_{t-1} + (1 - alpha) * g_t**2
    r_t = sqrt(v_t) + eps                               plain
    a_t = alpha * a_{t-1} + (1 - alpha) * g_t;  r_t = sqrt(v_t - a_t**2) + eps    centered
    b_t = mu * b_{t-1} + g_t / r_t;  theta_t = theta_{t-1} - gamma * b_t     if mu > 0
    theta_t = theta_{t-1} - gamma * g_t / r_t                                 otherwise

The centered variant divides by an estimate of the gradient's standard deviation instead of its
root mean square. There is no bias correction, and the momentum buffer starts at zero (not at
the first update, as SGD's does).
"""

import numpy as np

from .optimizer import Optimizer, check_nonnegative

__all__ = ["RMSprop", "rmsprop_update"]


def rmsprop_update(param, grad, state, *, lr, alpha, eps, weight_decay, momentum, centered, maximize):
    """One RMSprop step for one parameter array, in place.

    ``state`` holds ``"step"``, ``"square_avg"`` (v) and, when used, ``"momentum_buffer"`` (b)
    and ``"grad_avg"`` (a, centered); all are created, as zeros, on the first step.
    """
    if not state:
        state["step"] = 0
        state["square_avg"] = np.zeros_like(param)
        if momentum > 0:
            state["momentum_buffer"] = np.zeros_like(param)
        if centered:
            state["grad_avg"] = np.zeros_like(param)
    g = -grad if maximize else grad
    state["step"] += 1
    if weight_decay != 0:
        g = g + weight_decay * param

    square_avg = state["square_avg"]
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        grad_avg = state["grad_avg"]
        grad_avg += (1 - alpha) * (g - grad_avg)          # a = alpha * a + (1 - alpha) * g
        root = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        root = np.sqrt(square_avg) + eps

    if momentum > 0:
        buffer = state["momentum_buffer"]
        buffer *= momentum
        buffer += g / root
        param -= lr * buffer
    else:
        param -= lr * (g / root)


class RMSprop(Optimizer):
    r"""``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
    maximize=False)``.

    torch.optim.RMSprop's rule (Hinton's lecture 6e; centered: Graves, 2013):

    .. math::
        g_t &= \nabla_\theta f_t(\theta_{t-1}) + \lambda \theta_{t-1} \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2, \qquad
        \tilde v_t = v_t - a_t^2 \text{ with } a_t = \alpha a_{t-1} + (1 - \alpha) g_t
        \text{ if centered, else } v_t \\
        b_t &= \mu b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \gamma b_t

    (with :math:`\mu = 0`, simply :math:`\theta_t = \theta_{t-1} - \gamma g_t / (\sqrt{\tilde v_t}
    + \epsilon)`). In code, for each parameter with a gradient (:func:`rmsprop_update`)::

        g = grad + weight_decay * param
        v = alpha * v + (1 - alpha) * g * g
        buffer = momentum * buffer + g / (sqrt(v) + eps)
        param -= lr * buffer

    The MobileNetV2 paper trained with RMSprop, "decay 0.9, momentum 0.9": that decay is
    ``alpha=0.9`` here, ``RMSprop(params, lr=0.045, alpha=0.9, momentum=0.9, weight_decay=4e-5)``.
    Beware that TensorFlow's RMSprop, which the paper used, puts eps inside the square root and
    starts its average at one, so the two do not take the same steps.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
                    "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_nonnegative(group, "lr", "eps", "momentum", "weight_decay", "alpha")

    def _update(self, param, grad, state, group):
        rmsprop_update(param, grad, state, lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                       weight_decay=group["weight_decay"], momentum=group["momentum"],
                       centered=group["centered"], maximize=group["maximize"])
