"""The layers cache the forward output and their backward is the chain rule."""

import numpy as np
import pytest

from softmax_grad import LogSoftmax, Softmax, numerical_gradient


@pytest.mark.parametrize("layer_cls", [Softmax, LogSoftmax])
def test_backward_is_gradient_of_weighted_output(layer_cls):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5))
    w = rng.normal(size=(3, 5))
    layer = layer_cls()
    layer.forward(x)
    dx = layer.backward(w)

    def loss(z):
        return np.sum(w * layer_cls().forward(z))

    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-9)


def test_forward_matches_definition_and_axis():
    x = np.array([[0.0, 1.0], [2.0, 4.0]])
    y = Softmax(axis=0).forward(x)
    e = np.exp(x)
    np.testing.assert_allclose(y, e / e.sum(axis=0), rtol=1e-15)


@pytest.mark.parametrize("layer_cls", [Softmax, LogSoftmax])
def test_backward_before_forward_is_a_clear_error(layer_cls):
    with pytest.raises(RuntimeError, match=r"backward\(dy\) was called before forward\(x\)"):
        layer_cls().backward(np.ones(3))


def test_backward_checks_shape():
    layer = Softmax()
    layer.forward(np.zeros(3))
    with pytest.raises(ValueError, match=r"y\.shape=\(3,\) and dy\.shape=\(4,\)"):
        layer.backward(np.ones(4))
