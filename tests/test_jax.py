"""softmax_grad.jax: the JVP rule and the native kernels as JAX differentiation rules.

Oracles: jax.test_util.check_grads (finite differences, to order 2, in the modes each function
supports) and JAX's own jax.nn.softmax with its automatic derivatives (values, VJPs, JVPs,
Hessians). float64 throughout unless a test says otherwise (x64 is enabled for this module).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import softmax_grad.jax as sgj
from tests.bounds import vjp_bound

jax.config.update("jax_enable_x64", True)

IMPLS = {"softmax": sgj.softmax, "native_softmax": sgj.native_softmax}
MODES = {"softmax": ("fwd", "rev"), "native_softmax": ("rev",)}  # custom_vjp: reverse only


def _x(shape=(3, 4), seed=0, dtype=np.float64):
    return jnp.asarray(2 * np.random.default_rng(seed).normal(size=shape), dtype=dtype)


@pytest.mark.parametrize("name", IMPLS)
def test_check_grads_to_order_two(name):
    """Along axis 0, which the functions move last and back (the last axis is the simpler
    case, and JAX compiles every shape anew: one case keeps the test fast)."""
    f = IMPLS[name]
    check_grads(lambda x: f(x, 0), (_x(),), order=2, modes=MODES[name])


# Shapes and axes drawn once (each new shape costs JAX a compilation, so a few cases, not a
# hypothesis search): lengths 1 and 2 along the axis, an axis of length 1 beside it, logits up to
# |x| = 30 where the smallest probabilities are far below the largest.
CASES = [
    ((1,), 0, 1.0),
    ((7,), -1, 30.0),
    ((2, 3, 4), 1, 5.0),
    ((4, 1, 6), -3, 10.0),
    ((5, 2), 1, 3.0),
]


@pytest.mark.parametrize(("shape", "axis", "scale"), CASES)
def test_values_vjp_and_jvp_agree_with_jax_nn_softmax(shape, axis, scale):
    rng = np.random.default_rng(len(shape) + axis)
    x = jnp.asarray(scale * rng.uniform(-1, 1, size=shape))
    v = jnp.asarray(rng.normal(size=shape))

    @jax.jit  # one compilation per case instead of one per operation
    def derivatives(x, v):
        out = {}
        for name, f in (("jax.nn", jax.nn.softmax), *IMPLS.items()):
            y, vjp = jax.vjp(lambda x, f=f: f(x, axis=axis), x)
            out[name] = y, vjp(v)[0]
        out["jvp"] = jax.jvp(lambda x: sgj.softmax(x, axis), (x,), (v,))[1]
        out["jvp jax.nn"] = jax.jvp(lambda x: jax.nn.softmax(x, axis=axis), (x,), (v,))[1]
        return out

    out = derivatives(x, v)
    y_ref, dx_ref = out["jax.nn"]
    # both VJPs' rounding, and the forward passes' (2e-13 relative, the native exp's accuracy)
    allowed = 2 * vjp_bound(np.asarray(y_ref), np.asarray(v), axis=axis)
    allowed += 4e-13 * np.abs(y_ref) * (np.abs(v) + np.sum(np.abs(y_ref * v), axis, keepdims=True))
    for name in IMPLS:
        y, dx = out[name]
        np.testing.assert_allclose(y, y_ref, rtol=2e-13, atol=0, err_msg=name)
        assert np.all(np.abs(dx - dx_ref) <= allowed), name
    # forward mode: the JVP rule itself against JAX's derivative of its own softmax
    assert np.all(np.abs(out["jvp"] - out["jvp jax.nn"]) <= allowed)


def test_hessians_agree_with_jax_nn_softmax():
    """Second order: the full Hessian of one output of the custom_jvp (forward-over-reverse,
    jax.hessian), and of the native custom_vjp by reverse-over-reverse."""
    x = _x((5,))

    def out(f):
        return lambda x: f(x)[2]

    h_ref = jax.jit(jax.hessian(out(jax.nn.softmax)))(x)
    h = jax.jit(jax.hessian(out(sgj.softmax)))(x)
    np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-15)
    h_native = jax.jit(jax.jacrev(jax.jacrev(out(sgj.native_softmax))))(x)
    np.testing.assert_allclose(h_native, h_ref, rtol=1e-12, atol=1e-15)


def test_native_softmax_under_jit_and_vmap():
    """vmap_method="broadcast_all": the batch reaches the kernel as more rows."""
    x = _x((3, 4, 5))
    w = _x((3, 4), seed=1)  # one slice x[:, :, k] has shape (3, 4)

    def loss(f):
        return lambda x: jnp.sum(w * f(x, 0))

    grad = jax.jit(jax.vmap(jax.grad(loss(sgj.native_softmax)), in_axes=2, out_axes=2))
    expected = jax.vmap(jax.grad(loss(jax.nn.softmax)), in_axes=2, out_axes=2)(x)
    np.testing.assert_allclose(grad(x), expected, rtol=1e-12, atol=1e-15)


def test_float32_stays_float32():
    x = _x(dtype=np.float32)
    for f in IMPLS.values():
        y = f(x)
        assert y.dtype == jnp.float32
        np.testing.assert_allclose(y, jax.nn.softmax(x), rtol=3e-6)
    assert sgj.softmax(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize("name", IMPLS)
def test_bad_input_is_named(name):
    f = IMPLS[name]
    with pytest.raises(TypeError, match="floating|float32 or float64"):
        f(jnp.ones(3, dtype=jnp.int32))
    with pytest.raises(ValueError, match="axis=2 is out of range.*2 dimension"):
        f(jnp.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="0-d"):
        f(jnp.asarray(1.0))
    with pytest.raises(TypeError, match="axis must be an int"):
        f(jnp.ones((2, 3)), axis=None)


def test_native_rejects_dtypes_without_a_kernel():
    with pytest.raises(TypeError, match="float32 or float64.*bfloat16"):
        sgj.native_softmax(jnp.ones(3, dtype=jnp.bfloat16))


def test_native_has_no_forward_mode():
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(sgj.native_softmax, (_x(),), (_x(),))


def test_missing_jax_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # makes `import jax` fail
    monkeypatch.delitem(sys.modules, "softmax_grad.jax")
    with pytest.raises(ImportError, match="needs JAX.*pip install jax"):
        __import__("softmax_grad.jax")
