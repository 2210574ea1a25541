r"""The softmax Jacobian derived symbolically with SymPy, and proofs of the identities.

Logits are the real symbols :math:`x_1, \dots, x_n`; probabilities the positive symbols
:math:`y_1, \dots, y_n` (the book's notation). Matrices are ``sympy.Matrix`` with row index i
(output) and column index j (input): :math:`J_{ij} = \partial y_i / \partial x_j`.
"""

from __future__ import annotations

import sympy as sp


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (the number of classes), got {n!r}")
    return n


def logit_symbols(n: int) -> tuple[sp.Symbol, ...]:
    """The real logit symbols ``(x1, ..., xn)``."""
    return sp.symbols(f"x1:{_check_n(n) + 1}", real=True)


def probability_symbols(n: int) -> tuple[sp.Symbol, ...]:
    """The positive probability symbols ``(y1, ..., yn)``."""
    return sp.symbols(f"y1:{_check_n(n) + 1}", positive=True)


def symbolic_softmax(n: int) -> sp.Matrix:
    r"""Softmax of the logits as an (n, 1) column: :math:`y_i = e^{x_i} / \sum_k e^{x_k}`."""
    x = logit_symbols(n)
    denominator = sum(sp.exp(xk) for xk in x)
    return sp.Matrix([sp.exp(xi) / denominator for xi in x])


def symbolic_jacobian(n: int) -> sp.Matrix:
    r"""The (n, n) Jacobian by differentiation: :math:`J_{ij} = \partial y_i/\partial x_j`.

    Its free symbols are exactly the logits ``z1..zn``.
    """
    y = symbolic_softmax(n)
    x = logit_symbols(n)
    return sp.Matrix(n, n, lambda i, j: sp.diff(y[i], x[j]))


def kronecker_form(n: int) -> sp.Matrix:
    r"""The closed form :math:`J_{ij} = y_i(\delta_{ij} - y_j)` in probability symbols, (n, n)."""
    y = probability_symbols(n)
    return sp.Matrix(n, n, lambda i, j: y[i] * (sp.KroneckerDelta(i, j) - y[j]))


def substitute_softmax(expr, n: int):
    """Replace the probability symbols ``y_i`` in ``expr`` by the softmax of the logits."""
    return expr.subs(dict(zip(probability_symbols(n), symbolic_softmax(n), strict=True)))


def jacobian_difference(n: int) -> sp.Matrix:
    """``symbolic_jacobian(n) - kronecker_form(n)`` with y = softmax(x), simplified.

    The zero matrix is a proof, for this n, that differentiation gives the Kronecker form.
    """
    diff = symbolic_jacobian(n) - substitute_softmax(kronecker_form(n), n)
    return diff.applyfunc(sp.simplify)


def question_delta(n: int) -> sp.Matrix:
    r"""The source thread's elementwise ``delta`` as an (n, 1) column.

    With :math:`e_i = e^{x_i}` and :math:`o_i = \sum_{k \ne i} e_k`,
    :math:`\delta_i = 1 / (2 + e_i/o_i + o_i/e_i)`.
    """
    e = [sp.exp(xi) for xi in logit_symbols(n)]
    total = sum(e)
    return sp.Matrix([1 / (2 + ei / (total - ei) + (total - ei) / ei) for ei in e])


def question_delta_difference(n: int) -> sp.Matrix:
    r"""``question_delta(n) - diag(J)`` simplified; zero proves the delta is :math:`y_i(1-y_i)`."""
    jac = symbolic_jacobian(n)
    delta = question_delta(n)
    return sp.Matrix([sp.simplify(delta[i] - jac[i, i]) for i in range(n)])
