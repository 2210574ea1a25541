"""softmax_grad: the softmax derivative, independent of any loss function.

NumPy reference implementations, the SymPy derivation, gradient checking and (in
:mod:`softmax_grad.native`) compiled kernels; and the helpers every chapter shares: checks that
print what they measured against what they allow (:mod:`softmax_grad.checks`), one timer
(:mod:`softmax_grad.timing`) and the machine's cache sizes (:mod:`softmax_grad.machine`).
"""

from .attention import (
    Attention,
    AttentionGrads,
    TiledAttention,
    attention,
    attention_delta,
    attention_vjp,
    tiled_attention,
    tiled_attention_vjp,
)
from .checks import CheckResult, check_allclose, check_at_most, check_close
from .forward import log_softmax, softmax
from .gradcheck import (
    GradientCheck,
    check_gradient,
    default_step,
    error_vs_step,
    numerical_gradient,
    numerical_jacobian,
    relative_error,
)
from .jacobian import (
    diagonal_only_derivative,
    jacobian_einsum,
    jacobian_iterative,
    jacobian_vectorized,
)
from .layers import LogSoftmax, Softmax
from .losses import (
    cross_entropy,
    distillation_loss,
    focal_loss,
    kl_divergence,
    mse,
    softmax_cross_entropy,
    z_loss,
)
from .machine import cache_sizes, parse_size
from .memory import PeakMemory, peak_memory, peak_memory_torch
from .online import (
    finish_logsumexp,
    merge_logsumexp,
    online_logsumexp,
    online_softmax,
    partial_logsumexp,
)
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
from .timing import WARM_HEAP, AllocatorShare, Timing, allocator_share, run_fresh, time_call
from .vjp import log_softmax_vjp, softmax_vjp, vjp_error_bound
from .vocab_head import (
    VocabHeadResult,
    vocab_head_cross_entropy,
    vocab_head_cross_entropy_naive,
)

__version__ = "0.1.0"

__all__ = [
    "AllocatorShare",
    "Attention",
    "AttentionGrads",
    "CheckResult",
    "GradientCheck",
    "LogSoftmax",
    "PeakMemory",
    "Softmax",
    "TiledAttention",
    "Timing",
    "VocabHeadResult",
    "WARM_HEAP",
    "allocator_share",
    "attention",
    "attention_delta",
    "attention_vjp",
    "cache_sizes",
    "check_allclose",
    "check_at_most",
    "check_close",
    "check_gradient",
    "cross_entropy",
    "default_step",
    "diagonal_only_derivative",
    "distillation_loss",
    "error_vs_step",
    "finish_logsumexp",
    "focal_loss",
    "jacobian_difference",
    "jacobian_einsum",
    "jacobian_iterative",
    "jacobian_vectorized",
    "kl_divergence",
    "kronecker_form",
    "log_softmax",
    "log_softmax_vjp",
    "logit_symbols",
    "merge_logsumexp",
    "mse",
    "numerical_gradient",
    "numerical_jacobian",
    "online_logsumexp",
    "online_softmax",
    "parse_size",
    "partial_logsumexp",
    "peak_memory",
    "peak_memory_torch",
    "probability_symbols",
    "question_delta",
    "question_delta_difference",
    "relative_error",
    "run_fresh",
    "softmax",
    "softmax_cross_entropy",
    "softmax_vjp",
    "substitute_softmax",
    "symbolic_jacobian",
    "symbolic_softmax",
    "tiled_attention",
    "tiled_attention_vjp",
    "time_call",
    "vjp_error_bound",
    "vocab_head_cross_entropy",
    "vocab_head_cross_entropy_naive",
    "z_loss",
]
