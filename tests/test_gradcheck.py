"""The numerical-gradient tools students use on their own code must themselves be right."""

import numpy as np
import pytest

from npmobilenet import nn
from npmobilenet.errors import ShapeError
from npmobilenet.gradcheck import check_module, numerical_gradient, relative_error


def test_numerical_gradient_of_a_known_function():
    """d/dx sum(sin(x) * dout) = cos(x) * dout, known in closed form."""
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    numeric = numerical_gradient(np.sin, x, dout)
    np.testing.assert_allclose(numeric, np.cos(x) * dout, rtol=1e-8, atol=1e-9)


def test_numerical_gradient_restores_its_input():
    x = np.random.default_rng(1).standard_normal(5)
    before = x.copy()
    numerical_gradient(lambda v: v**3, x)
    np.testing.assert_array_equal(x, before)


def test_relative_error():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)
    assert relative_error(np.array([1.0]), np.array([-1.0])) == pytest.approx(2.0)


class DoubledBackward(nn.Linear):
    """A layer whose backward is wrong by a factor of two: the check must catch it."""

    def backward(self, dout):
        return 2 * super().backward(dout)


def test_check_module_accepts_a_right_backward_and_catches_a_wrong_one():
    x = np.random.default_rng(2).standard_normal((3, 4))
    good = nn.Linear(4, 2, seed=0).astype(np.float64)
    assert max(check_module(good, x).values()) < 1e-7
    errors = check_module(DoubledBackward(4, 2, seed=0).astype(np.float64), x)
    assert errors["input"] > 0.4
    assert errors["weight"] < 1e-7  # the parameter gradients are still right


def test_check_module_refuses_float32():
    with pytest.raises(ShapeError, match="float64"):
        check_module(nn.Linear(4, 2), np.zeros((3, 4), dtype=np.float32))
