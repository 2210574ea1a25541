"""softmax_grad.checks: the printed line, its stability, and that a failing check raises."""

import math

import numpy as np
import pytest

from softmax_grad import check_allclose, check_at_most, check_close
from softmax_grad.checks import format_magnitude


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "= 0"),
        (3.1e-17, "< 1e-16"),
        (9.99e-17, "< 1e-16"),
        (1e-16, "< 1e-15"),  # strict: a power of ten goes to the next bucket
        (1.0, "< 1e1"),
        (0.5, "< 1e0"),
        (250.0, "< 1e3"),
        (math.nan, "= nan"),
    ],
)
def test_format_magnitude(value, shown):
    assert format_magnitude(value) == shown


def test_format_magnitude_is_a_strict_upper_bound_over_many_values():
    for v in np.geomspace(1e-300, 1e300, 2001):
        exponent = int(format_magnitude(v)[4:])
        assert 10.0 ** (exponent - 1) <= v < 10.0**exponent


def test_check_close_prints_magnitude_against_allowed(capsys):
    result = check_close("max |error|", 3.1e-17, 2.2e-15)
    assert capsys.readouterr().out == "max |error| < 1e-16 ≤ allowed 2.2e-15\n"
    assert result.measured == 3.1e-17 and result.allowed == 2.2e-15
    assert str(result) == "max |error| < 1e-16 ≤ allowed 2.2e-15"


def test_check_close_near_the_limit_shows_a_digit_not_a_misleading_power(capsys):
    check_close("err", 1.5e-15, 2.2e-15)
    assert capsys.readouterr().out == "err = 1.5e-15 ≤ allowed 2.2e-15\n"


def test_check_close_equal_to_allowed_passes(capsys):
    check_close("err", 1e-3, 1e-3)
    assert capsys.readouterr().out == "err = 0.001 ≤ allowed 0.001\n"


@pytest.mark.parametrize("measured", [3e-15, math.nan, math.inf])
def test_check_close_fails_with_the_same_line(capsys, measured):
    with pytest.raises(AssertionError) as info:
        check_close("max |error|", measured, 2.2e-15)
    printed = capsys.readouterr().out.strip()
    assert str(info.value) == printed
    assert printed.startswith("max |error| = ") and printed.endswith("> allowed 2.2e-15: FAILED")


def test_check_at_most_shows_digits_and_unit(capsys):
    check_at_most("wrong parameters", 3, 5, digits=3, unit=" of 195")
    assert capsys.readouterr().out == "wrong parameters = 3 of 195 ≤ allowed 5 of 195\n"
    with pytest.raises(AssertionError, match="= 6 > allowed 5: FAILED"):
        check_at_most("count", 6, 5)


def test_check_allclose_passes_and_prints_both_errors(capsys):
    expected = np.array([1.0, 2.0, np.nan, np.inf])
    actual = expected * (1 + np.array([1e-13, -2e-13, 0.0, 0.0]))
    result = check_allclose("y", actual, expected, rtol=1e-12)
    line = capsys.readouterr().out.strip()
    assert line == (
        "y: max abs error < 1e-12, max rel error < 1e-12; allowed atol 0 + rtol 1e-12 · |expected|"
    )
    assert 0 < result.measured <= 1


def test_check_allclose_fails_naming_the_worst_element():
    expected = np.array([[1.0, 2.0], [3.0, 4.0]])
    actual = expected.copy()
    actual[1, 0] += 1e-6
    with pytest.raises(AssertionError, match=r"worst at index \(1, 0\).*FAILED"):
        check_allclose("y", actual, expected, rtol=1e-9)


def test_check_allclose_atol_covers_zeros():
    check_allclose("dx", np.array([1e-20, 0.0]), np.array([0.0, 0.0]), atol=1e-15)
    with pytest.raises(AssertionError):
        check_allclose("dx", np.array([1e-20, 0.0]), np.array([0.0, 0.0]))


def test_check_allclose_nan_placement_and_shape():
    with pytest.raises(AssertionError, match="non-finite values differ at index"):
        check_allclose("y", np.array([np.nan, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(AssertionError, match="non-finite values differ"):
        check_allclose("y", np.array([np.inf]), np.array([-np.inf]))
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        check_allclose("y", np.zeros(2), np.zeros(3))
