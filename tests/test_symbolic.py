"""The SymPy derivation: free symbols, the Kronecker form, the question's delta."""

import numpy as np
import pytest
import sympy as sp

from softmax_grad import (
    jacobian_difference,
    kronecker_form,
    logit_symbols,
    probability_symbols,
    question_delta_difference,
    symbolic_jacobian,
    symbolic_softmax,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_jacobian_equals_kronecker_form(n):
    assert jacobian_difference(n).is_zero_matrix


@pytest.mark.parametrize("n", [2, 3])
def test_question_delta_is_the_diagonal(n):
    assert question_delta_difference(n).is_zero_matrix


def test_free_symbols_are_exactly_the_logits():
    jac = symbolic_jacobian(3)
    assert jac.shape == (3, 3)
    assert jac.free_symbols == set(logit_symbols(3))
    assert kronecker_form(3).free_symbols == set(probability_symbols(3))


def test_numeric_value_matches_seed():
    x1, x2 = logit_symbols(2)
    jac = symbolic_jacobian(2).subs({x1: 1, x2: 2})
    v = np.e / (1 + np.e) ** 2
    np.testing.assert_allclose(np.array(jac.evalf(), dtype=float), [[v, -v], [-v, v]], rtol=1e-14)
    assert float(sp.simplify(sum(symbolic_softmax(2)))) == 1.0


def test_a_wrong_form_is_not_proved():
    y = probability_symbols(2)
    wrong = sp.Matrix(2, 2, lambda i, j: y[i] * (1 - y[i]) if i == j else 0)
    x = logit_symbols(2)
    subs = dict(zip(y, symbolic_softmax(2), strict=True))
    diff = (symbolic_jacobian(2) - wrong.subs(subs)).applyfunc(sp.simplify)
    assert not diff.is_zero_matrix
    assert diff.free_symbols == set(x)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_n(bad):
    with pytest.raises(ValueError, match="n must be a positive int"):
        symbolic_jacobian(bad)


def test_symbols_follow_the_book_notation():
    assert [str(v) for v in logit_symbols(2)] == ["x1", "x2"]
    assert [str(v) for v in probability_symbols(2)] == ["y1", "y2"]
