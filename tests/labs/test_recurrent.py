"""labs.recurrent: every form of a gated linear recurrence against a float64 loop, and the dualities."""

import pytest
import torch

from labs.recurrent import GLA_METHODS, decay_mask, gated_linear_attention, selective_scan, ssd
from labs.recurrent.reference import gla_recurrent, selective_scan_recurrent

F64 = torch.float64


def make(t, *, per_channel, b=2, h=3, dk=5, dv=4, seed=0, dtype=F64, strength=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, t, dk, generator=g, dtype=F64) for _ in range(2))
    v = torch.randn(b, h, t, dv, generator=g, dtype=F64)
    shape = (b, h, t, dk) if per_channel else (b, h, t)
    log_decay = -strength * torch.rand(*shape, generator=g, dtype=F64)
    h0 = torch.randn(b, h, dk, dv, generator=g, dtype=F64)
    return [x.to(dtype) for x in (q, k, v, log_decay, h0)]


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "channel"])
@pytest.mark.parametrize("with_state", [False, True], ids=["h0", "zero"])
@pytest.mark.parametrize("t", [1, 63, 65, 1000])
def test_three_methods_agree_with_a_float64_loop(t, per_channel, with_state):
    b, h = (1, 2) if t == 1000 else (2, 3)
    q, k, v, log_decay, h0 = make(t, per_channel=per_channel, b=b, h=h)
    h0 = h0 if with_state else None
    want_o, want_state = gla_recurrent(q, k, v, log_decay, h0)
    for method in GLA_METHODS:
        o, state = gated_linear_attention(q, k, v, log_decay, method=method, chunk_size=16,
                                          initial_state=h0, return_state=True)
        assert o.shape == v.shape and state.shape == (b, h, 5, 4)
        torch.testing.assert_close(o, want_o, atol=1e-10, rtol=1e-10, msg=f"{method} output")
        torch.testing.assert_close(state, want_state, atol=1e-10, rtol=1e-10, msg=f"{method} state")


def test_zero_decay_is_linear_attention_and_the_loop_is_not_trivial():
    """log_decay = 0 keeps every past pair: o_t = q_t sum_{s<=t} k_s^T v_s; a decay changes the output."""
    q, k, v, log_decay, _ = make(20, per_channel=False)
    plain = gated_linear_attention(q, k, v, torch.zeros_like(log_decay), method="recurrent")
    scores = (q @ k.transpose(-1, -2)).tril()
    torch.testing.assert_close(plain, scores @ v)
    decayed = gated_linear_attention(q, k, v, log_decay, method="recurrent")
    assert (decayed - plain).abs().max() > 0.1


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 128])
def test_chunk_size_changes_nothing(chunk_size):
    q, k, v, log_decay, h0 = make(65, per_channel=True)
    want = gated_linear_attention(q, k, v, log_decay, method="recurrent", initial_state=h0)
    got = gated_linear_attention(q, k, v, log_decay, method="chunk", chunk_size=chunk_size, initial_state=h0)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "channel"])
def test_strong_decay_does_not_overflow_in_float32(per_channel):
    """Cumulative log-decays far below -88 (exp underflows, 1/exp overflows) stay finite and right.

    Right to float32's resolution of the cumulative sum: b_t reaches -3000 here, and
    b_t - b_s carries an absolute error of about 3000 * 6e-8, so relative errors near 1e-4.
    """
    q, k, v, log_decay, _ = make(200, per_channel=per_channel, strength=30.0, dtype=torch.float32)
    want = gla_recurrent(*(x.double() for x in (q, k, v, log_decay)))[0]
    for method in ("chunk", "quadratic"):
        got = gated_linear_attention(q, k, v, log_decay, method=method, chunk_size=64)
        assert torch.isfinite(got).all(), method
        torch.testing.assert_close(got.double(), want, atol=2e-3, rtol=2e-3)


def test_sixteen_bit_inputs_accumulate_in_float32():
    q, k, v, log_decay, _ = make(65, per_channel=False)
    want = gla_recurrent(q, k, v, log_decay)[0]
    got = gated_linear_attention(*(x.to(torch.bfloat16) for x in (q, k, v, log_decay)), chunk_size=16)
    assert got.dtype == torch.bfloat16
    assert ((got.double() - want).norm() / want.norm()) < 2e-2


@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "channel"])
@pytest.mark.parametrize("method", GLA_METHODS)
def test_gradcheck(method, per_channel):
    q, k, v, log_decay, h0 = make(9, per_channel=per_channel, b=1, h=2, dk=3, dv=2)
    inputs = [x.requires_grad_() for x in (q, k, v, log_decay, h0)]

    def f(q, k, v, log_decay, h0):
        o, state = gated_linear_attention(q, k, v, log_decay, method=method, chunk_size=4,
                                          initial_state=h0, return_state=True)
        return o, state

    assert torch.autograd.gradcheck(f, inputs)


def test_decay_mask_is_the_recurrence_and_one_semiseparable():
    g = torch.Generator().manual_seed(1)
    log_decay = -torch.rand(12, generator=g, dtype=F64)
    m = decay_mask(log_decay)
    a = log_decay.exp()
    for t in range(12):
        for s in range(12):
            want = torch.prod(a[s + 1:t + 1]) if s <= t else torch.tensor(0.0, dtype=F64)
            torch.testing.assert_close(m[t, s], want)
    # Every block on or below the diagonal has rank 1: M[t, s] = (prod a_{..t}) / (prod a_{..s}).
    for cut in range(1, 12):
        block = m[cut:, :cut]
        assert torch.linalg.matrix_rank(block) == 1
    assert torch.linalg.matrix_rank(m) == 12  # the whole mask is full rank: structure, not low rank


def test_selective_scan_is_its_recurrence():
    g = torch.Generator().manual_seed(2)
    b, d, length, n = 2, 4, 70, 3
    u = torch.randn(b, d, length, generator=g, dtype=F64)
    delta = torch.randn(b, d, length, generator=g, dtype=F64)
    A = -torch.rand(d, n, generator=g, dtype=F64) * 2
    B, C = (torch.randn(b, n, length, generator=g, dtype=F64) for _ in range(2))
    D = torch.randn(d, generator=g, dtype=F64)
    got = selective_scan(u, delta, A, B, C, D, delta_softplus=True)
    want = selective_scan_recurrent(u, torch.nn.functional.softplus(delta), A, B, C, D)
    torch.testing.assert_close(got, want)
    without_d = selective_scan(u, torch.nn.functional.softplus(delta), A, B, C)
    torch.testing.assert_close(got - without_d, D[:, None] * u)


@pytest.mark.parametrize("t", [1, 63, 65])
def test_ssd_is_gated_linear_attention(t):
    """Mamba-2's duality: SSD with scalar A per head = GLA with q = C, k = B, v = x dt, log-decay dt A."""
    g = torch.Generator().manual_seed(3)
    b, h, p, n = 2, 3, 4, 5
    x = torch.randn(b, t, h, p, generator=g, dtype=F64)
    dt = torch.rand(b, t, h, generator=g, dtype=F64)
    A = -torch.rand(h, generator=g, dtype=F64) * 3
    B, C = (torch.randn(b, t, h, n, generator=g, dtype=F64) for _ in range(2))
    got = ssd(x, dt, A, B, C, chunk_size=16)
    heads_first = lambda z: z.transpose(1, 2)  # noqa: E731  (batch, T, H, .) -> (batch, H, T, .)
    want = gla_recurrent(heads_first(C), heads_first(B), heads_first(x * dt[..., None]), heads_first(dt * A))[0]
    torch.testing.assert_close(got, heads_first(want))


def test_bad_input_names_the_argument():
    q, k, v, log_decay, h0 = make(8, per_channel=False, dtype=torch.float32)
    cases = [
        (dict(q=q[0]), "gated_linear_attention: q must have 4 dimensions"),
        (dict(k=k[..., :3]), "q and k must have the same shape"),
        (dict(v=v[:, :, :5]), "v must be"),
        (dict(log_decay=log_decay[..., :5]), "log_decay must be"),
        (dict(log_decay=-log_decay), "log_decay must be <= 0"),
        (dict(method="fast"), "method must be one of"),
        (dict(chunk_size=0), "chunk_size must be a positive int"),
        (dict(initial_state=h0[..., :2]), "initial_state must be"),
        (dict(v=v.double()), "must share one dtype"),
    ]
    for change, message in cases:
        args = dict(q=q, k=k, v=v, log_decay=log_decay) | change
        with pytest.raises((ValueError, TypeError), match=message):
            gated_linear_attention(**args)
    u = torch.randn(1, 2, 6)
    A, B = -torch.rand(2, 3), torch.randn(1, 3, 6)
    with pytest.raises(ValueError, match="selective_scan: A must be <= 0"):
        selective_scan(u, u.abs(), -A, B, B)
    with pytest.raises(ValueError, match="selective_scan: delta must be >= 0"):
        selective_scan(u, -u.abs() - 1, A, B, B)
    with pytest.raises(ValueError, match=r"selective_scan: B must be \(batch, N, L\)"):
        selective_scan(u, u.abs(), A, B[..., :5], B)
    x = torch.randn(1, 6, 2, 4)
    with pytest.raises(ValueError, match=r"ssd: dt must be \(batch, T, H\)"):
        ssd(x, torch.rand(1, 5, 2), -torch.rand(2), torch.randn(1, 6, 2, 3), torch.randn(1, 6, 2, 3))
    with pytest.raises(ValueError, match="ssd: A must be <= 0"):
        ssd(x, torch.rand(1, 6, 2), torch.rand(2), torch.randn(1, 6, 2, 3), torch.randn(1, 6, 2, 3))
