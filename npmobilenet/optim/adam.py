r"""Adam and AdamW: moving averages of the gradient and of its square, bias-corrected.

The rule, in torch's notation (:math:`\gamma` lr, :math:`\beta_1, \beta_2` betas, :math:`\lambda`
weight decay, :math:`\epsilon` eps), at step :math:`t = 1, 2, \dots`, the moments starting at 0::

    g_t = -grad if maximize else grad
    g_t = g_t + lambda * theta_{t-1}              Adam, lambda != 0   (L2 penalty: in the gradient)
    theta_{t-1} = theta_{t-1} * (1 - gamma * lambda)   AdamW          (decoupled: on the weight)
    m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
    v_t = beta2 * v_{t-1} + (1 - beta2) * g_t**2
    v_t = max(v_max_{t-1}, v_t)  (and kept as v_max_t)   if amsgrad
    theta_t = theta_{t-1} - gamma / (1 - beta1**t) * m_t / (sqrt(v_t) / sqrt(1 - beta2**t) + eps)

Dividing by ``1 - beta**t`` (bias correction) undoes the pull toward the zeros the averages
start from; eps is added *after* the bias-corrected square root, so it is not scaled with it.
"""

import math

import numpy as np

from .optimizer import Optimizer, check, check_nonnegative

__all__ = ["Adam", "AdamW", "adam_update"]


def adam_update(param, grad, state, *, lr, betas, eps, weight_decay, amsgrad, maximize,
                decoupled_weight_decay):
    """One Adam (or AdamW) step for one parameter array, in place.

    ``state`` holds ``"step"`` (an int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and, with
    amsgrad, ``"max_exp_avg_sq"``; all are created, as zeros, on the first step.
    """
    beta1, beta2 = betas
    if not state:
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(param)
        state["exp_avg_sq"] = np.zeros_like(param)
        if amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(param)
    g = -grad if maximize else grad
    state["step"] += 1
    t = state["step"]

    if weight_decay != 0:
        if decoupled_weight_decay:               # AdamW: shrink the weight itself
            param *= 1 - lr * weight_decay
        else:                                    # Adam: add the L2 penalty's gradient
            g = g + weight_decay * param

    m, v = state["exp_avg"], state["exp_avg_sq"]
    m += (1 - beta1) * (g - m)                   # m = beta1 * m + (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    if amsgrad:
        v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])

    bias_correction1 = 1 - beta1 ** t
    bias_correction2 = 1 - beta2 ** t
    denominator = np.sqrt(v) / math.sqrt(bias_correction2) + eps
    param -= (lr / bias_correction1) * (m / denominator)


class Adam(Optimizer):
    r"""``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
    maximize=False, decoupled_weight_decay=False)``.

    torch.optim.Adam's rule (Kingma and Ba, 2015; amsgrad: Reddi et al., 2018):

    .. math::
        g_t &= \nabla_\theta f_t(\theta_{t-1}) + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad
        \hat v_t = v_t / (1 - \beta_2^t) \quad (v_t^{max} = \max(v_{t-1}^{max}, v_t)
        \text{ in its place with amsgrad}) \\
        \theta_t &= \theta_{t-1} - \gamma \, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    In code, for each parameter with a gradient (:func:`adam_update`)::

        t += 1
        g = grad + weight_decay * param
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        param -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``decoupled_weight_decay=True`` is AdamW (:class:`AdamW`).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        beta1, beta2 = group["betas"]
        check_nonnegative(group, "lr", "eps")
        check(0 <= beta1 < 1, f"Invalid beta parameter at index 0: {beta1}")
        check(0 <= beta2 < 1, f"Invalid beta parameter at index 1: {beta2}")
        check_nonnegative(group, "weight_decay")

    def _update(self, param, grad, state, group):
        adam_update(param, grad, state, lr=group["lr"], betas=group["betas"], eps=group["eps"],
                    weight_decay=group["weight_decay"], amsgrad=group["amsgrad"],
                    maximize=group["maximize"], decoupled_weight_decay=group["decoupled_weight_decay"])


class AdamW(Adam):
    r"""``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
    maximize=False)``.

    Adam with *decoupled* weight decay (Loshchilov and Hutter, 2019): instead of adding
    :math:`\lambda\theta` to the gradient, where Adam's normalisation would rescale it, the weight
    is shrunk before the update, by the learning rate times the decay:

    .. math::
        \theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma \lambda), \qquad
        \theta_t = \theta_{t-1} - \gamma \, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    with :math:`m_t, v_t` from the plain gradient, as in :class:`Adam`. In code::

        param *= 1 - lr * weight_decay
        ... then Adam's step with weight_decay left out of the gradient

    Note the default decay, ``1e-2``, where Adam's is 0.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        """As :meth:`Optimizer.load_state_dict`; the groups stay decoupled, whatever the dict says."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
