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
    with pytest.raises(ValueError, match="eps must be a positive step"):
        numerical_gradient(_cubic, np.ones(2), eps=0.0)
    with pytest.raises(
        ValueError, match=r"eps=1e-20 is below the spacing of x\[0\]=0\.5 in float64"
    ):
        numerical_gradient(_cubic, np.array([0.5, 1.0]), eps=1e-20)
    with pytest.raises(ValueError, match=r"shape of x \(2,\), got \(3,\)"):
        check_gradient(_cubic, np.ones(3), np.ones(2))
