r"""Single-head attention and its backward, written from the softmax VJP; naive and tiled.

For queries :math:`\mathbf Q` (shape ``(N_q, d)``), keys :math:`\mathbf K` (``(N_k, d)``) and
values :math:`\mathbf V` (``(N_k, d_v)``), with the scale :math:`1/\sqrt d` (or ``scale``),

.. math:: \mathbf S = \mathbf Q\mathbf K^\top/\sqrt d, \qquad
   \mathbf P_i = \operatorname{softmax}(\mathbf S_i), \qquad \mathbf O = \mathbf P\mathbf V,

and for an upstream gradient :math:`d\mathbf O` (shape of :math:`\mathbf O`) the backward is
:math:`d\mathbf V = \mathbf P^\top d\mathbf O`, :math:`d\mathbf P = d\mathbf O\,\mathbf V^\top`,
:math:`d\mathbf S_i = \mathbf P_i \odot (d\mathbf P_i - \mathbf D_i)` (the softmax VJP, row by
row), :math:`d\mathbf Q = d\mathbf S\,\mathbf K/\sqrt d`, :math:`d\mathbf K = d\mathbf S^\top
\mathbf Q/\sqrt d`, where :math:`\mathbf D_i = \langle \mathbf P_i, d\mathbf P_i\rangle = \langle
\mathbf O_i, d\mathbf O_i\rangle` (:func:`attention_delta`).

:func:`attention` and :func:`attention_vjp` form the ``(N_q, N_k)`` matrices. The tiled pair
:func:`tiled_attention` and :func:`tiled_attention_vjp` (FlashAttention's algorithm, Dao et al.
2022 and 2023, in NumPy) visit blocks of ``block_q`` queries and ``block_k`` keys, fold the key
blocks into each query row with the online softmax's merge (:mod:`softmax_grad.online`), store
only :math:`\mathbf O` and the per-row log-sum-exp, and recompute :math:`\mathbf P` block by
block in the backward: the arrays they allocate have the inputs' and outputs' sizes,
``(N_q, ...)`` or ``(N_k, ...)``, or that of one block, ``(block_q, block_k)``.

Masks follow :mod:`softmax_grad.forward`'s ``where=``: ``mask[i, j]`` True keeps key ``j`` for
query ``i``, ``causal=True`` keeps ``j <= i`` (top-left aligned, as PyTorch's ``is_causal``), and
a query row with nothing kept gets :math:`\mathbf P_i = 0`, :math:`\mathbf O_i = 0`, log-sum-exp
``-inf`` and zero gradients, with no NaN and no warning. PyTorch's
``scaled_dot_product_attention`` gives the same zeros (since its ``_safe_softmax``, 2024); a
softmax of ``-inf`` scores written out by hand gives NaN there.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._validation import as_float_array, as_mask
from .forward import softmax
from .online import _shift, finish_logsumexp, merge_logsumexp, partial_logsumexp
from .vjp import softmax_vjp

#: Queries and keys per block of the tiled functions by default.
DEFAULT_BLOCK_Q = 64
DEFAULT_BLOCK_K = 64


class Attention(NamedTuple):
    r"""What :func:`attention` returns: ``out``, the output :math:`\mathbf O` (shape
    ``(N_q, d_v)``), and ``P``, the probabilities (shape ``(N_q, N_k)``) the backward needs."""

    out: np.ndarray
    P: np.ndarray


class TiledAttention(NamedTuple):
    r"""What :func:`tiled_attention` returns: ``out``, the output :math:`\mathbf O` (shape
    ``(N_q, d_v)``), and ``lse``, the per-row log-sum-exp of the scores (shape ``(N_q,)``)."""

    out: np.ndarray
    lse: np.ndarray


class AttentionGrads(NamedTuple):
    """The gradients of a scalar loss with respect to the inputs: ``dQ`` (shape ``(N_q, d)``),
    ``dK`` (``(N_k, d)``) and ``dV`` (``(N_k, d_v)``)."""

    dQ: np.ndarray
    dK: np.ndarray
    dV: np.ndarray


# --- validation ------------------------------------------------------------------------------


def _matrix(a, name: str) -> np.ndarray:
    a = as_float_array(a, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    return a


def _inputs(Q, K, V, scale):
    """Validated ``Q, K, V`` in one dtype (float32 only if all are) and the scale."""
    Q, K, V = _matrix(Q, "Q"), _matrix(K, "K"), _matrix(V, "V")
    if K.shape[1] != Q.shape[1]:
        raise ValueError(
            f"Q and K must have the same head dimension d: Q.shape={Q.shape}, K.shape={K.shape}"
        )
    if V.shape[0] != K.shape[0]:
        raise ValueError(
            f"K and V must have the same number of keys N_k: K.shape={K.shape}, V.shape={V.shape}"
        )
    dtype = np.result_type(Q, K, V)
    if scale is None:
        if Q.shape[1] == 0:
            raise ValueError("Q has head dimension d = 0: the default scale 1/sqrt(d) is undefined")
        scale = 1.0 / math.sqrt(Q.shape[1])
    elif isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale must be a real number, got {type(scale).__name__}")
    elif not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale!r}")
    Q, K, V = (a.astype(dtype, copy=False) for a in (Q, K, V))
    return Q, K, V, dtype.type(scale)


def _like(a, name: str, shape: tuple, dtype) -> np.ndarray:
    """``a`` as an array of ``shape`` in ``dtype``; a ValueError names it if its shape differs."""
    a = as_float_array(a, name)
    if a.shape != shape:
        raise ValueError(f"{name}.shape={a.shape}, expected {shape} from Q, K and V")
    return a.astype(dtype, copy=False)


def _mask(N_q: int, N_k: int, causal: bool, mask) -> np.ndarray | None:
    """The user's mask broadcast to ``(N_q, N_k)`` (a view), or None; ``causal`` checked."""
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    return as_mask(mask, (N_q, N_k), "mask")


def _keep(mask, causal: bool, rows: slice, cols: slice) -> np.ndarray | None:
    """The kept scores of one block ``(rows, cols)``, or None when every score is kept.

    The causal part (key ``j <= i`` for query ``i``, PyTorch's ``is_causal``) is built per block,
    so the tiled functions never hold an ``(N_q, N_k)`` array of their own.
    """
    keep = None if mask is None else mask[rows, cols]
    if causal:
        i, j = np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop)
        lower = j[None, :] <= i[:, None]
        keep = lower if keep is None else keep & lower
    return keep


def _block(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


# --- naive -----------------------------------------------------------------------------------


def attention(Q, K, V, *, scale=None, causal: bool = False, mask=None) -> Attention:
    r"""Single-head attention :math:`\mathbf O = \operatorname{softmax}(\mathbf Q\mathbf
    K^\top/\sqrt d)\,\mathbf V`, forming the ``(N_q, N_k)`` scores and probabilities.

    Parameters
    ----------
    Q : array_like, shape (N_q, d)
    K : array_like, shape (N_k, d)
    V : array_like, shape (N_k, d_v)
        float32 or float64 (integers become float64); the result is float32 only if all three
        are.
    scale : float, optional
        The factor of the scores in place of :math:`1/\sqrt d` (the default).
    causal : bool, default False
        Keep only keys ``j <= i`` for query ``i``.
    mask : array_like of bool, shape (N_q, N_k) or broadcasting to it, optional
        True keeps a score; combined with ``causal`` by logical and.

    Returns
    -------
    Attention
        ``out`` (:math:`\mathbf O`, shape ``(N_q, d_v)``) and ``P`` (shape ``(N_q, N_k)``),
        what :func:`attention_vjp` needs. A query row with nothing kept has ``P`` and ``out``
        zero.

    Raises
    ------
    ValueError
        If an input is not 2-D, ``d`` or ``N_k`` disagree, ``scale`` is not finite, or ``mask``
        does not broadcast to ``(N_q, N_k)``.
    TypeError
        If an input is not float32/float64, ``mask`` is not boolean, or ``causal`` not a bool.
    """
    Q, K, V, c = _inputs(Q, K, V, scale)
    N_q, N_k = Q.shape[0], K.shape[0]
    keep = _keep(_mask(N_q, N_k, causal, mask), causal, slice(0, N_q), slice(0, N_k))
    P = softmax(c * (Q @ K.T), axis=-1, where=keep)
    return Attention(P @ V, P)


def attention_vjp(Q, K, V, P, dO, *, scale=None) -> AttentionGrads:
    r"""Backward of :func:`attention` from the softmax VJP: :math:`d\mathbf V = \mathbf P^\top
    d\mathbf O`, :math:`d\mathbf P = d\mathbf O\,\mathbf V^\top`, :math:`d\mathbf S =`
    ``softmax_vjp(P, dP)``, :math:`d\mathbf Q = d\mathbf S\,\mathbf K/\sqrt d`,
    :math:`d\mathbf K = d\mathbf S^\top\mathbf Q/\sqrt d` (``scale`` in place of :math:`1/\sqrt d`
    if given).

    Masked scores have :math:`\mathbf P_{ij} = 0`, so their :math:`d\mathbf S_{ij}` is 0 and a
    row with nothing kept gives zero gradients; the mask need not be passed again.

    Parameters
    ----------
    Q, K, V : array_like
        The forward's inputs, shapes ``(N_q, d)``, ``(N_k, d)``, ``(N_k, d_v)``.
    P : array_like, shape (N_q, N_k)
        The forward's probabilities (``attention(...).P``).
    dO : array_like, shape (N_q, d_v)
        Gradient of any scalar loss with respect to :math:`\mathbf O`.
    scale : float, optional
        The forward's ``scale``; default :math:`1/\sqrt d`.

    Returns
    -------
    AttentionGrads
        ``dQ``, ``dK``, ``dV``, shapes of ``Q``, ``K``, ``V``.

    Raises
    ------
    ValueError
        If a shape disagrees with ``Q``, ``K``, ``V`` (the argument is named).
    """
    Q, K, V, c = _inputs(Q, K, V, scale)
    P = _like(P, "P", (Q.shape[0], K.shape[0]), Q.dtype)
    dO = _like(dO, "dO", (Q.shape[0], V.shape[1]), Q.dtype)
    dV = P.T @ dO
    dP = dO @ V.T
    dS = softmax_vjp(P, dP, axis=-1)
    return AttentionGrads(c * (dS @ K), c * (dS.T @ Q), dV)


def attention_delta(out, dO) -> np.ndarray:
    r""":math:`\mathbf D_i = \langle \mathbf O_i, d\mathbf O_i\rangle`, which equals the softmax
    VJP's :math:`\langle \mathbf P_i, d\mathbf P_i\rangle` since :math:`d\mathbf P = d\mathbf O
    \,\mathbf V^\top` and :math:`\mathbf O = \mathbf P\mathbf V`: the backward needs neither
    :math:`\mathbf P` nor :math:`d\mathbf P` for it.

    Parameters
    ----------
    out, dO : array_like, shape (N_q, d_v)
        :math:`\mathbf O` and the upstream gradient :math:`d\mathbf O`.

    Returns
    -------
    D : ndarray, shape (N_q,)
    """
    out = as_float_array(out, "out")
    dO = as_float_array(dO, "dO")
    if out.ndim != 2 or out.shape != dO.shape:
        raise ValueError(
            f"out and dO must be 2-D of the same shape, got {out.shape} and {dO.shape}"
        )
    return np.sum(out * dO, axis=-1)


# --- tiled -----------------------------------------------------------------------------------


def _scores(Q, K, c, mask, causal: bool, rows: slice, cols: slice) -> np.ndarray:
    """One block of scores, masked entries ``-inf``: shape ``(len(rows), len(cols))``."""
    S = c * (Q[rows] @ K[cols].T)
    keep = _keep(mask, causal, rows, cols)
    return S if keep is None else np.where(keep, S, -np.inf)


def _above_diagonal(causal: bool, rows: slice, k0: int) -> bool:
    """A causal block with every key index (from ``k0``) above every query index in ``rows``."""
    return causal and k0 > rows.stop - 1


def tiled_attention(
    Q,
    K,
    V,
    *,
    scale=None,
    causal: bool = False,
    mask=None,
    block_q: int = DEFAULT_BLOCK_Q,
    block_k: int = DEFAULT_BLOCK_K,
) -> TiledAttention:
    r""":func:`attention`'s output, computed block by block without the ``(N_q, N_k)`` matrices.

    For each block of ``block_q`` query rows, the state of the online softmax
    (:func:`~softmax_grad.partial_logsumexp`) is kept per row together with the unnormalised
    output :math:`\sum_j e^{\mathbf S_{ij} - \hat m_i}\mathbf V_j`; each block of ``block_k``
    keys is merged into both by :func:`~softmax_grad.merge_logsumexp` (the numerator is a sum
    with the same weights as :math:`Z`, so the same rescaling merges it). At the end
    :math:`\mathbf O_i` is the numerator over :math:`Z_i` and :math:`\operatorname{lse}_i =
    \hat m_i + \log Z_i`. With ``causal=True`` blocks above the diagonal are skipped.

    Parameters
    ----------
    Q, K, V, scale, causal, mask
        As in :func:`attention`.
    block_q, block_k : int >= 1
        Queries and keys per block; they need not divide ``N_q``, ``N_k``.

    Returns
    -------
    TiledAttention
        ``out`` (:math:`\mathbf O`, shape ``(N_q, d_v)``) and ``lse`` (shape ``(N_q,)``), all
        that :func:`tiled_attention_vjp` needs besides the inputs. A row with nothing kept has
        ``out`` zero and ``lse`` ``-inf``.

    Raises
    ------
    ValueError, TypeError
        As :func:`attention`, and a ValueError naming ``block_q`` or ``block_k`` if it is not an
        integer >= 1.
    """
    Q, K, V, c = _inputs(Q, K, V, scale)
    bq, bk = _block(block_q, "block_q"), _block(block_k, "block_k")
    N_q, N_k, d_v = Q.shape[0], K.shape[0], V.shape[1]
    mask = _mask(N_q, N_k, causal, mask)
    out = np.empty((N_q, d_v), Q.dtype)
    lse = np.empty(N_q, Q.dtype)
    for q0 in range(0, N_q, bq):
        rows = slice(q0, min(q0 + bq, N_q))
        n_rows = rows.stop - q0
        # The state (m, [Z, numerator]) of the keys seen so far: m has shape (rows, 1) so the
        # merge rescales Z and the d_v numerator columns by the same factor e^(m_old - m_new).
        m = np.full((n_rows, 1), -np.inf, Q.dtype)
        acc = np.zeros((n_rows, 1 + d_v), Q.dtype)
        for k0 in range(0, N_k, bk):
            if _above_diagonal(causal, rows, k0):
                break
            cols = slice(k0, min(k0 + bk, N_k))
            S = _scores(Q, K, c, mask, causal, rows, cols)
            m_b, Z_b = partial_logsumexp(S, axis=-1)
            with np.errstate(invalid="ignore"):
                E = np.exp(S - _shift(m_b)[:, None])  # the block's e^(S - m_b), 0 where masked
            acc_b = np.concatenate([Z_b[:, None], E @ V[cols]], axis=1)
            m, acc = merge_logsumexp((m, acc), (m_b[:, None], acc_b))
        Z = acc[:, :1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(Z == 0, 0, acc[:, 1:] / np.where(Z == 0, 1, Z))
        lse[rows] = finish_logsumexp((m[:, 0], Z[:, 0]))
    return TiledAttention(out, lse)


def tiled_attention_vjp(
    Q,
    K,
    V,
    out,
    lse,
    dO,
    *,
    scale=None,
    causal: bool = False,
    mask=None,
    block_q: int = DEFAULT_BLOCK_Q,
    block_k: int = DEFAULT_BLOCK_K,
) -> AttentionGrads:
    r"""Backward of :func:`tiled_attention`, recomputing :math:`\mathbf P` block by block.

    :math:`\mathbf D = ` ``attention_delta(out, dO)`` once; then for each block of keys (its
    :math:`d\mathbf K_j, d\mathbf V_j` accumulated while it is visited) and each block of
    queries: :math:`\mathbf P = e^{\mathbf S - \operatorname{lse}}` from ``Q``, ``K`` and the
    stored ``lse``, :math:`d\mathbf V_j \mathrel{+}= \mathbf P^\top d\mathbf O_i`,
    :math:`d\mathbf P = d\mathbf O_i\mathbf V_j^\top`, :math:`d\mathbf S = \mathbf P \odot
    (d\mathbf P - \mathbf D_i)`, :math:`d\mathbf Q_i \mathrel{+}= d\mathbf S\,\mathbf K_j/\sqrt d`,
    :math:`d\mathbf K_j \mathrel{+}= d\mathbf S^\top\mathbf Q_i/\sqrt d` (FlashAttention-2's order).

    Parameters
    ----------
    Q, K, V : array_like
        The forward's inputs.
    out, lse : array_like, shapes (N_q, d_v) and (N_q,)
        The forward's result (``tiled_attention(...)``).
    dO : array_like, shape (N_q, d_v)
        Gradient of any scalar loss with respect to :math:`\mathbf O`.
    scale, causal, mask, block_q, block_k
        As in the forward (``causal`` and ``mask`` must be the forward's).

    Returns
    -------
    AttentionGrads
        ``dQ``, ``dK``, ``dV``; zero rows of ``dQ`` for query rows with nothing kept.

    Raises
    ------
    ValueError, TypeError
        As :func:`tiled_attention`, and a ValueError naming ``out``, ``lse`` or ``dO`` if its
        shape disagrees with ``Q``, ``K``, ``V``.
    """
    Q, K, V, c = _inputs(Q, K, V, scale)
    bq, bk = _block(block_q, "block_q"), _block(block_k, "block_k")
    N_q, N_k, d_v = Q.shape[0], K.shape[0], V.shape[1]
    out = _like(out, "out", (N_q, d_v), Q.dtype)
    lse = _like(lse, "lse", (N_q,), Q.dtype)
    dO = _like(dO, "dO", (N_q, d_v), Q.dtype)
    mask = _mask(N_q, N_k, causal, mask)
    D = attention_delta(out, dO)
    # A row with nothing kept has lse = -inf and every score -inf: subtract 0 instead, so its
    # P is exactly 0 rather than exp(-inf + inf) = NaN.
    lse_hat = _shift(lse)
    dQ = np.zeros_like(Q)
    dK = np.zeros_like(K)
    dV = np.zeros((N_k, d_v), Q.dtype)
    for k0 in range(0, N_k, bk):
        cols = slice(k0, min(k0 + bk, N_k))
        for q0 in range(0, N_q, bq):
            rows = slice(q0, min(q0 + bq, N_q))
            if _above_diagonal(causal, rows, k0):
                continue
            S = _scores(Q, K, c, mask, causal, rows, cols)
            P = np.exp(S - lse_hat[rows, None])
            dV[cols] += P.T @ dO[rows]
            dP = dO[rows] @ V[cols].T
            dS = P * (dP - D[rows, None])
            dQ[rows] += c * (dS @ K[cols])
            dK[cols] += c * (dS.T @ Q[rows])
    return AttentionGrads(dQ, dK, dV)
