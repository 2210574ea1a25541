r"""The softmax Jacobian derived symbolically with SymPy, and proofs of the identities.

Logits are the real symbols :math:`z_1, \dots, z_n`; probabilities the positive symbols
:math:`s_1, \dots, s_n`. Matrices are ``sympy.Matrix`` with row index i (output) and column
index j (input): :math:`J_{ij} = \partial s_i / \partial z_j`.
"""

from __future__ import annotations

import sympy as sp


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (the number of classes), got {n!r}")
    return n


def logit_symbols(n: int) -> tuple[sp.Symbol, ...]:
    """The real logit symbols ``(z1, ..., zn)``."""
    return sp.symbols(f"z1:{_check_n(n) + 1}", real=True)


def probability_symbols(n: int) -> tuple[sp.Symbol, ...]:
    """The positive probability symbols ``(s1, ..., sn)``."""
    return sp.symbols(f"s1:{_check_n(n) + 1}", positive=True)


def symbolic_softmax(n: int) -> sp.Matrix:
    r"""Softmax of the logits as an (n, 1) column: :math:`s_i = e^{z_i} / \sum_k e^{z_k}`."""
    z = logit_symbols(n)
    denominator = sum(sp.exp(zk) for zk in z)
    return sp.Matrix([sp.exp(zi) / denominator for zi in z])


def symbolic_jacobian(n: int) -> sp.Matrix:
    r"""The (n, n) Jacobian by differentiation: :math:`J_{ij} = \partial s_i/\partial z_j`.

    Its free symbols are exactly the logits ``z1..zn``.
    """
    s = symbolic_softmax(n)
    z = logit_symbols(n)
    return sp.Matrix(n, n, lambda i, j: sp.diff(s[i], z[j]))


def kronecker_form(n: int) -> sp.Matrix:
    r"""The closed form :math:`J_{ij} = s_i(\delta_{ij} - s_j)` in probability symbols, (n, n)."""
    s = probability_symbols(n)
    return sp.Matrix(n, n, lambda i, j: s[i] * (sp.KroneckerDelta(i, j) - s[j]))


def substitute_softmax(expr, n: int):
    """Replace the probability symbols ``s_i`` in ``expr`` by the softmax of the logits."""
    return expr.subs(dict(zip(probability_symbols(n), symbolic_softmax(n), strict=True)))


def jacobian_difference(n: int) -> sp.Matrix:
    """``symbolic_jacobian(n) - kronecker_form(n)`` with s = softmax(z), simplified.

    The zero matrix is a proof, for this n, that differentiation gives the Kronecker form.
    """
    diff = symbolic_jacobian(n) - substitute_softmax(kronecker_form(n), n)
    return diff.applyfunc(sp.simplify)


def question_delta(n: int) -> sp.Matrix:
    r"""The source thread's elementwise ``delta`` as an (n, 1) column.

    With :math:`e_i = e^{z_i}` and :math:`o_i = \sum_{k \ne i} e_k`,
    :math:`\delta_i = 1 / (2 + e_i/o_i + o_i/e_i)`.
    """
    e = [sp.exp(zi) for zi in logit_symbols(n)]
    total = sum(e)
    return sp.Matrix([1 / (2 + ei / (total - ei) + (total - ei) / ei) for ei in e])


def question_delta_difference(n: int) -> sp.Matrix:
    r"""``question_delta(n) - diag(J)`` simplified; zero proves the delta is :math:`s_i(1-s_i)`."""
    jac = symbolic_jacobian(n)
    delta = question_delta(n)
    return sp.Matrix([sp.simplify(delta[i] - jac[i, i]) for i in range(n)])
