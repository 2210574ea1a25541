"""softmax_grad.torch: the library's VJP and the native kernels as PyTorch autograd rules.

Oracles: torch.autograd.gradcheck / gradgradcheck (finite differences of our own forward and
backward, in float64), torch.library.opcheck (the operator registration), and PyTorch's own
torch.softmax and its autograd (values, gradients, Hessian-vector products).
"""

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import softmax_grad.torch as sgt
from tests.bounds import vjp_bound
from tests.strategies import logits

IMPLS = {"softmax": sgt.softmax, "native_softmax": sgt.native_softmax}
# Forward accuracy allowed relative to y: the native exp is documented to stay below 3e-6
# (float32) and 1e-13 (float64) relative error; PyTorch's exp and the NumPy one are within a few
# ulps. Both sums of n terms add gamma_n.
FORWARD_RTOL = {np.float32: 3e-6, np.float64: 1e-13}


def _x(shape=(3, 4, 5), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(shape, generator=g, dtype=dtype)).requires_grad_()


@pytest.mark.parametrize("name", IMPLS)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gradcheck_and_gradgradcheck_float64(name, dim):
    f = IMPLS[name]
    x = _x()
    assert torch.autograd.gradcheck(lambda x: f(x, dim), (x,))
    assert torch.autograd.gradgradcheck(lambda x: f(x, dim), (x,))


def test_gradgradcheck_backward_in_y_and_dy_separately():
    """The backward's own VJP, both of its inputs: gradcheck of (y, dy) -> dx, with y kept on
    the simplex (y = torch.softmax(z)): the rules take y to be a probability row, and a kernel
    may evaluate a form equal to the formula only there."""
    z, dy = _x((4, 6)), _x((4, 6), seed=1)
    for f in (sgt._SoftmaxVJP.apply, torch.ops.softmax_grad.softmax_vjp):

        def backward(z, dy, f=f):
            return f(torch.softmax(z, 1), dy, 1)

        assert torch.autograd.gradcheck(backward, (z, dy))
        assert torch.autograd.gradgradcheck(backward, (z, dy))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    x = _x(dtype=dtype)
    y = torch.softmax(x, 0).detach().requires_grad_()
    dy = _x(dtype=dtype, seed=2)
    for dim in (0, -1):
        torch.library.opcheck(torch.ops.softmax_grad.softmax.default, (x, dim))
        torch.library.opcheck(torch.ops.softmax_grad.softmax_vjp.default, (y, dy, dim))
    # a non-contiguous input, and one that needs no gradient
    torch.library.opcheck(torch.ops.softmax_grad.softmax.default, (x.detach().mT, 1))


def test_native_softmax_under_torch_compile_without_graph_break():
    """fullgraph=True fails on any graph break; aot_eager traces forward and backward through
    the fake kernels and AOTAutograd without the C++ code generation of the default backend."""
    w = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)

    def loss(x):
        return (w * sgt.native_softmax(x, 1)).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    x = _x((4, 5))
    (g_compiled,) = torch.autograd.grad(compiled(x), x)
    (g_eager,) = torch.autograd.grad((w * torch.softmax(x, 1)).sum(), x)
    torch.testing.assert_close(g_compiled, g_eager, rtol=1e-12, atol=1e-15)


def _bounds(y, dy, dim, dtype):
    """Allowed |ours - PyTorch's| for dx: both VJPs' rounding (vjp_bound each) plus the
    first-order effect of the forward passes' relative difference (at most 2 * FORWARD_RTOL):
    |d dx_i| <= |y_i| * 2r * (|dy_i - <y, dy>| + sum_j |y_j dy_j|)."""
    y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
    s = np.sum(y64 * dy64, axis=dim, keepdims=True)
    S = np.sum(np.abs(y64 * dy64), axis=dim, keepdims=True)
    forward = 2 * FORWARD_RTOL[dtype] * np.abs(y64) * (np.abs(dy64 - s) + S)
    return 2 * vjp_bound(y, dy, dtype=dtype, axis=dim) + 2 * forward


@settings(max_examples=40)
@given(
    x=st.sampled_from([np.float32, np.float64]).flatmap(lambda dt: logits(dtype=dt, max_dims=3)),
    dim_seed=st.integers(0, 10),
    name=st.sampled_from(list(IMPLS)),
)
def test_values_and_gradients_agree_with_torch_softmax(x, dim_seed, name):
    dim = dim_seed % (2 * x.ndim) - x.ndim  # any dim, negative or not
    dtype = x.dtype.type
    dy = np.random.default_rng(dim_seed).normal(size=x.shape).astype(dtype)
    xt, xr = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, y_ref = IMPLS[name](xt, dim), torch.softmax(xr, dim)
    assert y.dtype == y_ref.dtype and y.shape == y_ref.shape
    y_np, y_ref_np = y.detach().numpy(), y_ref.detach().numpy()
    n = x.shape[dim]
    allowed_y = (2 * FORWARD_RTOL[dtype] + 2 * n * np.finfo(dtype).eps) * y_ref_np
    assert np.all(np.abs(y_np - y_ref_np) <= allowed_y)
    (dx,) = torch.autograd.grad(y, xt, torch.tensor(dy))
    (dx_ref,) = torch.autograd.grad(y_ref, xr, torch.tensor(dy))
    err = np.abs(dx.numpy().astype(np.float64) - dx_ref.numpy())
    allowed = _bounds(y_ref_np, dy, dim, dtype)
    assert np.all(err <= allowed), f"max excess {np.max(err - allowed):.3g}"


@pytest.mark.parametrize("name", IMPLS)
def test_hessian_vector_products_agree_with_torch(name):
    """Forward-over-reverse is not available for an autograd.Function without a jvp, so the
    Hessian-vector product here is reverse-over-reverse (double backward), for L = <w, y>."""
    x = _x((3, 6))
    w, v = _x((3, 6), seed=3).detach(), _x((3, 6), seed=4).detach()

    def loss(f):
        return lambda x: (w * f(x, -1)).sum()

    _, hv = torch.autograd.functional.hvp(loss(IMPLS[name]), x, v)
    _, hv_ref = torch.autograd.functional.hvp(loss(torch.softmax), x, v)
    torch.testing.assert_close(hv, hv_ref, rtol=1e-12, atol=1e-14)


def test_only_y_is_saved_for_backward():
    x = _x((2, 5))
    y = sgt.softmax(x)
    (saved,) = y.grad_fn.saved_tensors
    assert saved.data_ptr() == y.data_ptr() and saved.shape == y.shape


@pytest.mark.parametrize("name", IMPLS)
def test_float32_stays_float32_and_works_without_grad(name):
    x = _x(dtype=torch.float32).detach()
    y = IMPLS[name](x, 1)
    assert y.dtype == torch.float32 and not y.requires_grad
    torch.testing.assert_close(y, torch.softmax(x, 1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", IMPLS)
def test_bad_input_is_named(name):
    f = IMPLS[name]
    with pytest.raises(TypeError, match="float32 or float64.*float16"):
        f(torch.ones(3, dtype=torch.float16))
    with pytest.raises(TypeError, match="float32 or float64.*int64"):
        f(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor.*ndarray"):
        f(np.ones(3))
    with pytest.raises(ValueError, match="dim=2 is out of range.*2 dimension"):
        f(torch.ones(2, 3), dim=2)
    with pytest.raises(ValueError, match="0-d"):
        f(torch.tensor(1.0))
    with pytest.raises(TypeError, match="dim must be an int"):
        f(torch.ones(2, 3), dim=1.0)


def test_missing_torch_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    monkeypatch.delitem(sys.modules, "softmax_grad.torch")
    with pytest.raises(ImportError, match="needs PyTorch.*pip install torch"):
        __import__("softmax_grad.torch")
