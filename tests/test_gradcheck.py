"""Numerical gradients on functions with known derivatives, and the checker's verdicts."""

import numpy as np
import pytest

from softmax_grad import (
    check_gradient,
    default_step,
    diagonal_only_derivative,
    error_vs_step,
    mse,
    numerical_gradient,
    numerical_jacobian,
    relative_error,
    softmax,
    softmax_vjp,
)


def _cubic(x):
    return np.sum(x**3 + np.sin(x))


def _cubic_grad(x):
    return 3 * x**2 + np.cos(x)


@pytest.mark.parametrize(
    ("method", "rtol"), [("forward", 1e-6), ("central", 1e-9), ("complex", 1e-15)]
)
def test_known_derivative(method, rtol):
    x = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(
        numerical_gradient(_cubic, x, method=method), _cubic_grad(x), rtol=rtol
    )


def test_float32_is_evaluated_in_float32():
    x = np.array([0.3, -1.2, 2.0], np.float32)
    g = numerical_gradient(_cubic, x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, _cubic_grad(x.astype(np.float64)), rtol=1e-3)


def test_default_steps():
    assert default_step("forward") == pytest.approx(np.sqrt(np.finfo(float).eps))
    assert default_step("central", np.float32) == pytest.approx(np.cbrt(np.finfo(np.float32).eps))


def test_relative_error_is_symmetric_and_zero_safe():
    a = np.array([0.0, 1.0, -2.0, 1e-20])
    b = np.array([0.0, 1.1, -2.0, 0.0])
    err = relative_error(a, b)
    np.testing.assert_allclose(err, [0.0, 0.1 / 1.1, 0.0, 1.0], rtol=1e-12)
    np.testing.assert_array_equal(err, relative_error(b, a))
    assert relative_error(a, b, floor=1e-8)[3] == pytest.approx(1e-12)


def test_check_gradient_passes_the_vjp_and_fails_the_diagonal_trap():
    x = np.array([0.2, -0.5, 1.3, 0.0])
    target = np.array([0.0, 1.0, 0.0, 0.0])

    def loss(z):
        return mse(softmax(z), target)[0]

    def right(z):
        return softmax_vjp(softmax(z), mse(softmax(z), target)[1])

    def trap(z):
        return diagonal_only_derivative(z) * mse(softmax(z), target)[1]

    good = check_gradient(loss, right, x)
    bad = check_gradient(loss, trap, x)
    assert good.passed and good.max_error < 1e-8
    assert not bad.passed and bad.max_error > 1e-2
    assert "FAILED" in str(bad) and "passed" in str(good)
    assert bad.errors[bad.index] == bad.max_error


def test_check_gradient_reports_nan_as_failure():
    res = check_gradient(lambda z: np.sum(z**2), np.array([np.nan, 2.0]), np.array([1.0, 1.0]))
    assert not res.passed and res.index == (0,)


def test_error_vs_step_has_truncation_and_rounding_branches():
    x = np.array([0.4, -0.3, 1.1])
    steps = np.logspace(-12, -1, 12)
    err = error_vs_step(_cubic, _cubic_grad, x, steps, method="central")
    best = int(np.argmin(err))
    assert 0 < best < len(steps) - 1  # rounding dominates at small h, truncation at large h
    assert err[-1] > 100 * err[best] and err[0] > 100 * err[best]
    complex_err = error_vs_step(_cubic, _cubic_grad, x, [1e-20, 1e-100], method="complex")
    assert np.all(complex_err < 1e-15)


def test_errors_are_named():
    with pytest.raises(ValueError, match="method must be one of"):
        numerical_gradient(_cubic, np.ones(2), method="backward")
    with pytest.raises(ValueError, match="eps must be a positive finite step"):
        numerical_gradient(_cubic, np.ones(2), eps=0.0)
    with pytest.raises(
        ValueError, match=r"eps=1e-20 is below the spacing of x\[0\]=0\.5 in float64"
    ):
        numerical_gradient(_cubic, np.array([0.5, 1.0]), eps=1e-20)
    with pytest.raises(ValueError, match=r"shape of x \(2,\), got \(3,\)"):
        check_gradient(_cubic, np.ones(3), np.ones(2))


# ---- numerical_jacobian --------------------------------------------------------------------------


def _affine_tanh(x):
    """f(x) = tanh(A x) + x_0^2, a map R^3 -> R^2 with a known Jacobian."""
    return np.tanh(_A @ x) + np.array([x[0] ** 2, 0.0])


_A = np.array([[1.0, -2.0, 0.5], [0.3, 0.0, 4.0]])


def _affine_tanh_jacobian(x):
    d = 1 - np.tanh(_A @ x) ** 2
    J = d[:, None] * _A
    J[0, 0] += 2 * x[0]
    return J


@pytest.mark.parametrize(
    ("method", "rtol"), [("central", 1e-9), ("forward", 1e-6), ("complex", 1e-14)]
)
def test_numerical_jacobian_of_a_known_map(method, rtol):
    x = np.array([0.2, -0.1, 0.3])
    J = numerical_jacobian(_affine_tanh, x, method=method)
    assert J.shape == (2, 3) and J.dtype == np.float64
    np.testing.assert_allclose(J, _affine_tanh_jacobian(x), rtol=rtol, atol=rtol)


def test_numerical_jacobian_of_softmax_is_diag_minus_outer():
    x = np.array([0.5, -1.0, 2.0, 0.0])
    y = softmax(x)
    np.testing.assert_allclose(
        numerical_jacobian(softmax, x), np.diag(y) - np.outer(y, y), atol=1e-10
    )


def test_numerical_jacobian_flattens_in_c_order_and_keeps_float32():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 10

    def f(z):
        return z.T * 2.0  # shape (3, 2): f.ravel()[i] = 2 z.T.ravel()[i]

    J = numerical_jacobian(f, x, eps=1e-2)
    assert J.shape == (6, 6) and J.dtype == np.float32
    expected = np.zeros((6, 6))
    for i, k in enumerate(np.arange(6).reshape(2, 3).T.ravel()):
        expected[i, k] = 2.0
    np.testing.assert_allclose(J, expected, atol=1e-4)


def test_numerical_jacobian_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        numerical_jacobian(softmax, np.zeros(2), method="backward")
    with pytest.raises(ValueError, match="eps must be a positive finite step"):
        numerical_jacobian(softmax, np.zeros(2), eps=0.0)
    assert numerical_jacobian(softmax, np.zeros(0)).shape == (0, 0)


# ---- issue 12, smaller defects ---------------------------------------------------------------


def test_relative_error_of_infinities_and_nan():
    a = np.array([np.inf, -np.inf, np.inf, np.inf, np.nan, 1.0])
    b = np.array([np.inf, -np.inf, 1.0, -np.inf, 1.0, np.nan])
    with np.errstate(all="raise"):  # no warning either
        err = relative_error(a, b)
    # equal: 0; inf vs finite: the limit |a - b| / |a| -> 1; inf vs -inf: 2; NaN stays NaN
    np.testing.assert_array_equal(err, [0.0, 0.0, 1.0, 2.0, np.nan, np.nan])


def test_relative_error_keeps_the_imaginary_part():
    err = relative_error(np.array([1 + 5j]), np.array([1.0]))
    np.testing.assert_allclose(err, [5 / np.sqrt(26)], rtol=1e-15)  # |5j| / |1 + 5j|
    check = check_gradient(lambda z: float(np.sum(z)), lambda z: np.full(z.shape, 1 + 5j), [2.0])
    assert not check.passed and check.max_error > 0.9


@pytest.mark.parametrize("eps", [np.inf, -np.inf, np.nan, 0.0, -1e-3])
def test_bad_steps_are_rejected(eps):
    with pytest.raises(ValueError, match="eps must be a positive finite step"):
        numerical_gradient(_cubic, np.ones(2), eps=eps)
    with pytest.raises(ValueError, match="eps must be a positive finite step"):
        check_gradient(_cubic, _cubic_grad, np.ones(2), eps=eps)


def test_numerical_gradient_of_a_vector_function_is_a_clear_error():
    with pytest.raises(ValueError, match=r"scalar function: f\(x\) returned shape \(3,\)"):
        numerical_gradient(lambda z: z**2, np.ones(3))
    # a one-element result is a scalar
    np.testing.assert_allclose(numerical_gradient(lambda z: np.sum(z**2, keepdims=True), [1.0]), 2)


@pytest.mark.parametrize("method", ["central", "forward", "complex"])
def test_float32_default_tolerance_passes_correct_and_fails_wrong_gradients(method):
    rng = np.random.default_rng(7)
    for n in (3, 10, 50):
        x = rng.normal(size=(4, n)).astype(np.float32)
        w = rng.normal(size=(4, n)).astype(np.float32)

        def f(z, w=w):
            return np.sum(w * softmax(z))

        def right(z, w=w):
            return softmax_vjp(softmax(z), w)

        def trap(z, w=w):
            return diagonal_only_derivative(z) * w

        good = check_gradient(f, right, x, method=method)
        assert good.passed, str(good)
        if method != "forward":  # 0.5 is too loose to see the trap reliably
            assert not check_gradient(f, trap, x, method=method).passed
    # float64 keeps its tolerance
    assert check_gradient(_cubic, _cubic_grad, np.ones(2)).tol == 1e-6


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("func", ["numerical_gradient", "check_gradient"])
def test_half_precision_points_are_refused_with_the_reason(half, func):
    import ml_dtypes

    dtype = np.float16 if half == "float16" else ml_dtypes.bfloat16
    x = np.ones(3, dtype=dtype)
    call = {
        "numerical_gradient": lambda: numerical_gradient(lambda z: float(np.sum(z)), x),
        "check_gradient": lambda: check_gradient(lambda z: float(np.sum(z)), np.ones(3), x),
    }[func]
    with pytest.raises(TypeError, match=f"dtype {half}.*x.astype"):
        call()
