"""softmax_grad.vocab_head: the chunked head against the naive one, PyTorch autograd (float64),
finite differences, its memory (tracemalloc) and its argument checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softmax_grad as sg

B, D, N = 9, 5, 37  # N prime: no chunk size below it divides it
IGNORE = -100


def _case(dtype=np.float64, seed=0, b=B, d=D, n=N, scale=1.0):
    rng = np.random.default_rng(seed)
    H = (scale * rng.normal(size=(b, d))).astype(dtype)
    W = rng.normal(size=(n, d)).astype(dtype)
    labels = rng.integers(0, n, size=b)
    labels[[1, b - 2]] = IGNORE
    labels[0], labels[2] = 0, n - 1  # the first and the last vocabulary entry
    ell_bar = rng.normal(size=b)
    return H, W, labels, ell_bar


def _upstream(reduction, ell_bar):
    return ell_bar if reduction == "none" else 1.7


def _max_diff(a, b):
    return max(np.max(np.abs(np.asarray(x) - np.asarray(y))) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("chunk", [1, 4, 10, N - 1, N, 64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_chunked_equals_naive(chunk, reduction, eps):
    H, W, labels, ell_bar = _case()
    opts = dict(
        ell_bar=_upstream(reduction, ell_bar),
        ignore_index=IGNORE,
        label_smoothing=eps,
        reduction=reduction,
    )
    got = sg.vocab_head_cross_entropy(H, W, labels, chunk=chunk, **opts)
    ref = sg.vocab_head_cross_entropy_naive(H, W, labels, **opts)
    assert np.shape(got.loss) == np.shape(ref.loss)
    assert got.dH.shape == (B, D) and got.dW.shape == (N, D)
    assert _max_diff(got, ref) <= 1e-13


@settings(max_examples=40)
@given(
    b=st.integers(1, 6),
    d=st.integers(1, 4),
    n=st.integers(1, 40),
    chunk=st.integers(1, 45),
    eps=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_chunk_size_does_not_change_the_result(b, d, n, chunk, eps, seed):
    rng = np.random.default_rng(seed)
    H, W = rng.normal(size=(b, d)), rng.normal(size=(n, d))
    labels = rng.integers(0, n, size=b)
    got = sg.vocab_head_cross_entropy(H, W, labels, label_smoothing=eps, chunk=chunk)
    ref = sg.vocab_head_cross_entropy_naive(H, W, labels, label_smoothing=eps)
    assert _max_diff(got, ref) <= 1e-13


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("ignore_index", [None, IGNORE])
def test_matches_pytorch_autograd(reduction, eps, ignore_index):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    H, W, labels, ell_bar = _case(scale=2.0)
    if ignore_index is None:
        labels = np.where(labels == IGNORE, 3, labels)
    up = _upstream(reduction, ell_bar)
    got = sg.vocab_head_cross_entropy(
        H,
        W,
        labels,
        ell_bar=up,
        ignore_index=ignore_index,
        label_smoothing=eps,
        reduction=reduction,
        chunk=8,
    )
    Ht = torch.tensor(H, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    kw = {} if ignore_index is None else dict(ignore_index=ignore_index)
    loss = F.cross_entropy(
        Ht @ Wt.T, torch.tensor(labels), reduction=reduction, label_smoothing=eps, **kw
    )
    loss.backward(torch.tensor(up, dtype=torch.float64))
    np.testing.assert_allclose(got.loss, loss.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(got.dH, Ht.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradients_match_finite_differences(reduction):
    H, W, labels, ell_bar = _case(b=4, d=3, n=7)
    opts = dict(ignore_index=IGNORE, label_smoothing=0.2, reduction=reduction, chunk=3)

    def scalar(h, w):
        loss = sg.vocab_head_cross_entropy(h, w, labels, **opts).loss
        return np.sum(ell_bar * loss) if reduction == "none" else loss

    got = sg.vocab_head_cross_entropy(
        H, W, labels, ell_bar=ell_bar if reduction == "none" else None, **opts
    )
    dH_num = sg.numerical_gradient(lambda h: scalar(h, W), H)
    dW_num = sg.numerical_gradient(lambda w: scalar(H, w), W)
    assert np.max(np.abs(got.dH - dH_num)) <= 1e-8
    assert np.max(np.abs(got.dW - dW_num)) <= 1e-8
    assert np.all(got.dH[labels == IGNORE] == 0)


def test_all_rows_ignored_mean_is_nan_with_zero_gradient_as_pytorch():
    torch = pytest.importorskip("torch")
    H, W, _, _ = _case()
    labels = np.full(B, IGNORE)
    got = sg.vocab_head_cross_entropy(H, W, labels, ignore_index=IGNORE, chunk=5)
    Ht = torch.tensor(H, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(Ht @ Wt.T, torch.tensor(labels), ignore_index=IGNORE)
    loss.backward()
    assert np.isnan(got.loss) and np.isnan(loss.item())
    assert np.all(got.dH == 0) and np.all(got.dW == 0)
    assert np.all(Ht.grad.numpy() == 0) and np.all(Wt.grad.numpy() == 0)
    total = sg.vocab_head_cross_entropy(H, W, labels, ignore_index=IGNORE, reduction="sum")
    assert total.loss == 0 and np.all(total.dH == 0)


def test_ignored_rows_get_zero_loss_and_gradient_whatever_their_upstream_gradient():
    H, W, labels, ell_bar = _case()
    ell_bar[labels == IGNORE] = np.nan
    got = sg.vocab_head_cross_entropy(
        H, W, labels, ell_bar=ell_bar, ignore_index=IGNORE, reduction="none", chunk=6
    )
    ignored = labels == IGNORE
    assert np.all(got.loss[ignored] == 0) and np.all(got.dH[ignored] == 0)
    assert np.all(np.isfinite(got.dH)) and np.all(np.isfinite(got.dW))
    # dW is the sum of the other rows' contributions only
    kept = sg.vocab_head_cross_entropy(
        H[~ignored], W, labels[~ignored], ell_bar=ell_bar[~ignored], reduction="none", chunk=6
    )
    assert np.max(np.abs(got.dW - kept.dW)) <= 1e-14


def test_nan_propagates_to_its_row():
    H, W, labels, _ = _case()
    H[3, 0] = np.nan
    got = sg.vocab_head_cross_entropy(H, W, labels, ignore_index=IGNORE, reduction="none")
    assert np.isnan(got.loss[3]) and np.all(np.isnan(got.dH[3]))
    assert np.all(np.isfinite(np.delete(got.loss, 3)))


def test_float32_stays_float32_and_is_accurate():
    H, W, labels, ell_bar = _case(np.float32, b=16, d=32, n=3000)
    opts = dict(ignore_index=IGNORE, label_smoothing=0.1, reduction="none", ell_bar=ell_bar)
    got = sg.vocab_head_cross_entropy(H, W, labels, chunk=512, **opts)
    ref = sg.vocab_head_cross_entropy(H.astype(np.float64), W.astype(np.float64), labels, **opts)
    assert got.loss.dtype == got.dH.dtype == got.dW.dtype == np.float32
    scalar = sg.vocab_head_cross_entropy(H, W, labels, ignore_index=IGNORE)
    assert scalar.loss.dtype == np.float32
    u = np.finfo(np.float32).eps / 2
    for a, b in zip(got, ref, strict=True):
        assert np.max(np.abs(a - b)) <= 1000 * u * np.max(np.abs(b))


def test_chunked_path_never_holds_the_logits():
    b, d, n, chunk = 64, 16, 20000, 512
    H, W, labels, _ = _case(b=b, d=d, n=n)
    logits = b * n * H.itemsize
    outputs = (n * d + b * d) * H.itemsize  # dW and dH, returned
    head, naive_head = sg.vocab_head_cross_entropy, sg.vocab_head_cross_entropy_naive
    head(H[:2], W[:chunk], labels[:2] % chunk)  # one-time allocations (BLAS) before measuring
    chunked = sg.peak_memory(head, H, W, labels, ignore_index=IGNORE, chunk=chunk)
    naive = sg.peak_memory(naive_head, H, W, labels, ignore_index=IGNORE)
    # Forward: a chunk and partial_logsumexp's two temporaries; backward: one chunk next to the
    # outputs. Never B x n.
    block = b * chunk * H.itemsize
    assert chunked.peak_bytes <= max(3 * block, outputs + block) + (256 << 10)
    assert chunked.peak_bytes < logits / 2
    assert naive.peak_bytes >= 2 * logits  # the measurement does see the logits and Y
    assert _max_diff(chunked.result, naive.result) <= 1e-13


def _err(**kw):
    H, W, labels, _ = _case()
    args = dict(H=H, W=W, labels=labels)
    args.update({k: v for k, v in kw.items() if k in args})
    opts = {"ignore_index": IGNORE} | {k: v for k, v in kw.items() if k not in args}
    return lambda: sg.vocab_head_cross_entropy(args["H"], args["W"], args["labels"], **opts)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        (dict(H=np.zeros(D)), ValueError, r"H must have shape \(B, d\)"),
        (dict(W=np.zeros((N, D + 1))), ValueError, "same hidden width d"),
        (dict(W=np.zeros((N, D, 1))), ValueError, r"W must have shape \(n, d\)"),
        (dict(H=np.zeros((B, D), np.float32)), TypeError, "same dtype"),
        (dict(H=np.zeros((B, D), np.int64)), TypeError, "float32 or float64, got dtype int64"),
        (dict(W=np.zeros((N, D), np.float16)), TypeError, "half precision"),
        (dict(H=np.zeros((0, D))), ValueError, "at least one row"),
        (dict(labels=np.full(B, N)), ValueError, rf"\[0, {N}\)"),
        (dict(labels=np.full(B, IGNORE), ignore_index=None), ValueError, "got -100"),
        (dict(labels=np.full(B, -1)), ValueError, "or equal ignore_index=-100"),
        (dict(labels=np.zeros(B + 1, int)), ValueError, "labels must have shape"),
        (dict(labels=np.zeros(B)), TypeError, "labels must be integers"),
        (dict(ignore_index=True), TypeError, "ignore_index must be an int"),
        (dict(chunk=0), ValueError, "chunk must be an integer >= 1"),
        (dict(chunk=2.0), ValueError, "chunk must be an integer >= 1"),
        (dict(chunk=True), ValueError, "chunk must be an integer >= 1"),
        (dict(reduction="avg"), ValueError, "reduction must be one of"),
        (dict(label_smoothing=1.5), ValueError, "label_smoothing must lie in"),
        (dict(reduction="none", ell_bar=np.ones(B - 1)), ValueError, r"ell_bar must have shape"),
        (dict(reduction="none", ell_bar=np.ones(B, complex)), TypeError, "a real array"),
        (dict(reduction="mean", ell_bar=np.ones(B)), TypeError, "ell_bar must be a real number"),
    ],
)
def test_bad_arguments_are_named(kw, exc, match):
    with pytest.raises(exc, match=match):
        _err(**kw)()


def test_naive_checks_its_arguments_too():
    H, W, labels, _ = _case()
    with pytest.raises(ValueError, match="same hidden width d"):
        sg.vocab_head_cross_entropy_naive(H, W[:, :-1], labels)
