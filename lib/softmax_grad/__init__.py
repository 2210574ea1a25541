"""softmax_grad: the softmax derivative, independent of any loss function.

NumPy reference implementations, the SymPy derivation, gradient checking and (in
:mod:`softmax_grad.native`) compiled kernels.
"""

from .forward import log_softmax, softmax
from .gradcheck import (
    GradientCheck,
    check_gradient,
    default_step,
    error_vs_step,
    numerical_gradient,
    relative_error,
)
from .jacobian import (
    diagonal_only_derivative,
    jacobian_einsum,
    jacobian_iterative,
    jacobian_vectorized,
)
from .layers import LogSoftmax, Softmax
from .losses import cross_entropy, mse, softmax_cross_entropy
from .symbolic import (
    jacobian_difference,
    kronecker_form,
    logit_symbols,
    probability_symbols,
    question_delta,
    question_delta_difference,
    substitute_softmax,
    symbolic_jacobian,
    symbolic_softmax,
)
from .vjp import log_softmax_vjp, softmax_vjp

__version__ = "0.1.0"

__all__ = [
    "GradientCheck",
    "LogSoftmax",
    "Softmax",
    "check_gradient",
    "cross_entropy",
    "default_step",
    "diagonal_only_derivative",
    "error_vs_step",
    "jacobian_difference",
    "jacobian_einsum",
    "jacobian_iterative",
    "jacobian_vectorized",
    "kronecker_form",
    "log_softmax",
    "log_softmax_vjp",
    "logit_symbols",
    "mse",
    "numerical_gradient",
    "probability_symbols",
    "question_delta",
    "question_delta_difference",
    "relative_error",
    "softmax",
    "softmax_cross_entropy",
    "softmax_vjp",
    "substitute_softmax",
    "symbolic_jacobian",
    "symbolic_softmax",
]
