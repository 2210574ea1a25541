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


def test_native_backend_matches_numpy_layer():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 7))
    dy = rng.normal(size=(4, 7))
    for axis in (-1, 0):
        ref = Softmax(axis=axis)
        fast = Softmax(axis=axis, backend="native")
        np.testing.assert_allclose(fast.forward(x), ref.forward(x), rtol=1e-13)
        np.testing.assert_allclose(fast.backward(dy), ref.backward(dy), rtol=1e-12, atol=1e-16)


def test_native_backend_every_isa_and_float32():
    from softmax_grad import native

    x = np.linspace(-3, 3, 10, dtype=np.float32).reshape(2, 5)
    dy = np.ones_like(x)
    dy[:, 0] = 2
    ref = Softmax()
    y64 = ref.forward(x.astype(np.float64))
    dx64 = ref.backward(dy.astype(np.float64))
    for isa in native.isas():
        layer = Softmax(backend="native", isa=isa)
        y = layer.forward(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, y64, rtol=1e-5)
        np.testing.assert_allclose(layer.backward(dy), dx64, rtol=1e-5, atol=1e-7)


def test_unknown_backend_and_misplaced_isa_are_named():
    with pytest.raises(ValueError, match=r"unknown backend='cuda' for Softmax; allowed: 'numpy'"):
        Softmax(backend="cuda")
    with pytest.raises(ValueError, match=r"isa='avx2' applies only to backend='native'"):
        Softmax(isa="avx2")


def test_native_backend_checks_shapes_and_order():
    layer = Softmax(backend="native")
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones(3))
    layer.forward(np.zeros(3))
    with pytest.raises(ValueError, match=r"y\.shape=\(3,\) and dy\.shape=\(4,\)"):
        layer.backward(np.ones(4))


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_softmax_layer_accurate_true_is_accurate_on_a_confident_row(backend):
    # Gap 40 in float64: y_c rounds to 1, and the plain formula loses dx_c entirely. With
    # accurate=True the layer's backward is the accurate form; the reference is the exact
    # softmax of the logits in mpmath: dx_c = y_c sum_{j != c} y_j (dy_c - dy_j). The default
    # layer gives the plain formula, written out here, bit for bit, and misses the reference.
    import mpmath

    x = np.array([[40.0, 0.0, 1.0, -2.0]])
    dy = np.array([[1.0, -1.0, 0.5, 0.0]])
    layer = Softmax(backend=backend, accurate=True)
    y = layer.forward(x)
    assert y[0, 0] == 1
    with mpmath.workdps(80):
        e = [mpmath.exp(mpmath.mpf(float(v)) - 40) for v in x[0]]
        p = [v / mpmath.fsum(e) for v in e]
        true = p[0] * mpmath.fsum(p[j] * (dy[0, 0] - dy[0, j]) for j in range(1, 4))

    def rel(dx):
        return abs(float((mpmath.mpf(float(dx[0, 0])) - true) / true))

    assert rel(layer.backward(dy)) < 8 * 4 * 2.0**-53 * 40
    plain = Softmax(backend=backend)
    assert plain.accurate is False
    y = plain.forward(x)
    dx = plain.backward(dy)
    expected = y * (dy - np.sum(y * dy, axis=-1, keepdims=True))
    if backend == "numpy":
        np.testing.assert_array_equal(dx, expected)
    else:  # the kernels sum in their own order: the same formula up to the dot's rounding
        np.testing.assert_allclose(dx, expected, rtol=0, atol=8 * 2.0**-53)
    assert rel(dx) > 1e-3


@pytest.mark.parametrize("backend", ["numpy", "native"])
@pytest.mark.parametrize("accurate", [False, True])
def test_softmax_layer_passes_accurate_to_the_backend(backend, accurate, monkeypatch):
    # The backend's softmax_vjp receives the layer's keyword, on any axis.
    import softmax_grad.layers as layers
    from softmax_grad import native

    seen = []
    module, name = (layers, "softmax_vjp") if backend == "numpy" else (native, "softmax_vjp")
    original = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(kwargs.get("accurate"))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    x = np.array([[30.0, 0.0], [1.0, 2.0], [0.5, 0.0]])
    for axis in (-1, 0):
        layer = Softmax(axis=axis, backend=backend, accurate=accurate)
        layer.forward(x)
        layer.backward(np.ones_like(x))
    assert seen == [accurate, accurate]


def test_softmax_layer_accurate_must_be_a_bool():
    with pytest.raises(TypeError, match="accurate must be True or False, got 'yes'"):
        Softmax(accurate="yes")
    with pytest.raises(TypeError, match="accurate must be True or False, got None"):
        Softmax(backend="native", accurate=None)


@pytest.mark.parametrize("layer_cls", [Softmax, LogSoftmax])
def test_forward_output_is_read_only_so_backward_cannot_be_corrupted(layer_cls):
    layer = layer_cls()
    x = np.array([[0.0, 1.0, 2.0]])
    y = layer.forward(x)
    dy = np.array([[1.0, 0.0, -1.0]])
    before = layer.backward(dy)
    with pytest.raises(ValueError, match="read-only"):
        y *= 2
    np.testing.assert_array_equal(layer.backward(dy), before)
    z = y.copy()  # a copy is writable and independent
    z *= 2
    np.testing.assert_array_equal(layer.backward(dy), before)
