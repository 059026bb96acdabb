"""labs.attention: the forms of attention held against each other and against their definitions."""

import math

import pytest
import torch

from labs.attention import (
    GAU,
    attention_entropy,
    favor_attention,
    favor_features,
    linear_attention,
    linear_attention_weights,
    mixed_chunk_attention,
    mixed_chunk_weights,
    positive_mse,
    random_projection,
    softmax_attention,
    trig_features,
    trig_mse,
)
from labs.attention.chunk import causal_chunk_numerator, causal_denominator


def qkv(t, b=2, h=3, dk=5, dv=7, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, t, dk, generator=g, dtype=dtype), torch.randn(b, h, t, dk, generator=g, dtype=dtype),
            torch.randn(b, h, t, dv, generator=g, dtype=dtype))


def test_softmax_attention_matches_torch_sdpa():
    q, k, v = qkv(63)
    for causal in (False, True):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        torch.testing.assert_close(softmax_attention(q, k, v, causal=causal), expected)


@pytest.mark.parametrize("t", [1, 63, 65])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("feature_map", ["elu+1", "relu", "identity"])
def test_all_methods_agree(t, causal, normalize, feature_map):
    q, k, v = qkv(t)
    if feature_map == "identity" and normalize:  # the identity map needs positive inputs to normalise safely
        q, k = q.abs(), k.abs()
    results = {
        method: linear_attention(q, k, v, causal=causal, feature_map=feature_map, normalize=normalize,
                                 method=method, chunk_size=cs)
        for method, cs in [("quadratic", 64), ("recurrent", 64), ("chunk", 16), ("chunk", 7), ("auto", 64)]
    }
    for out in results.values():
        torch.testing.assert_close(out, results["quadratic"], rtol=1e-10, atol=1e-10)


def test_linear_attention_matches_its_definition():
    q, k, v = qkv(9, b=1, h=1)
    phi = lambda x: torch.nn.functional.elu(x) + 1  # noqa: E731
    out = linear_attention(q, k, v, causal=True, method="chunk", chunk_size=4)
    t = 6
    sims = torch.stack([phi(q[0, 0, t]) @ phi(k[0, 0, s]) for s in range(t + 1)])
    expected = (sims[:, None] * v[0, 0, : t + 1]).sum(0) / (sims.sum() + 1e-6)
    torch.testing.assert_close(out[0, 0, t], expected)


def test_callable_feature_map_with_more_features():
    q, k, v = qkv(20)
    square = lambda x: torch.cat([x, x * x], dim=-1).exp()  # noqa: E731
    ref = linear_attention(q, k, v, causal=True, feature_map=square, method="quadratic")
    torch.testing.assert_close(linear_attention(q, k, v, causal=True, feature_map=square, method="chunk", chunk_size=8), ref)


def test_half_precision_normaliser_does_not_overflow_at_32k():
    # 32k keys of ones: the normaliser reaches 32768 * Dk, far beyond float16's 65504.
    t, dk = 32768, 4
    q = torch.zeros(1, 1, t, dk, dtype=torch.float16)
    k = torch.zeros_like(q)
    v = torch.ones(1, 1, t, 2, dtype=torch.float16)
    den = causal_denominator(torch.ones_like(q), torch.ones_like(k))
    assert den.dtype == torch.float32 and den[0, 0, -1, 0].item() == t * dk
    out = linear_attention(q, k, v, causal=True, method="chunk", chunk_size=64)  # elu+1 of 0 is 1
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.ones_like(out))
    num = causal_chunk_numerator(torch.ones_like(q), torch.ones_like(k), v, 64)
    assert num[0, 0, -1, 0].item() == t * dk  # exact in float32, inf in float16


def test_favor_is_unbiased_and_matches_mse_formula():
    g = torch.Generator().manual_seed(1)
    d, m, trials = 4, 16, 4000
    x = 0.4 * torch.randn(d, dtype=torch.float64, generator=g)
    y = 0.4 * torch.randn(d, dtype=torch.float64, generator=g)
    exact = torch.exp(x @ y)
    w = torch.randn(trials, m, d, dtype=torch.float64, generator=g)
    pos = (favor_features(x, w[0], is_query=True, stabilize=False) @ favor_features(y, w[0], is_query=False, stabilize=False))
    assert pos > 0
    estimates = torch.stack([favor_features(x, wi, is_query=True, stabilize=False)
                             @ favor_features(y, wi, is_query=False, stabilize=False) for wi in w])
    trig = torch.stack([trig_features(x, wi) @ trig_features(y, wi) for wi in w])
    for est, mse in ((estimates, positive_mse(x, y, m)), (trig, trig_mse(x, y, m))):
        assert abs(est.mean() - exact) < 5 * math.sqrt(mse / trials)
        torch.testing.assert_close(((est - exact) ** 2).mean(), mse, rtol=0.15, atol=0)


def test_orthogonal_projection_rows_are_orthogonal_and_gaussian_length():
    w = random_projection(8, 8, orthogonal=True, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gram = w @ w.T
    torch.testing.assert_close(gram - torch.diag(torch.diag(gram)), torch.zeros(8, 8, dtype=torch.float64), atol=1e-10, rtol=0)
    big = random_projection(4000, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs((big**2).sum(-1).mean().item() - 6) < 0.3  # E|w|^2 = D, like a Gaussian vector
    assert random_projection(10, 4, orthogonal=False, generator=torch.Generator().manual_seed(2)).shape == (10, 4)


def test_favor_attention_approximates_softmax():
    q, k, v = qkv(32, b=1, h=1, dk=4, dv=3)
    q, k = 0.5 * q, 0.5 * k
    w = random_projection(2048, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for causal in (False, True):
        approx = favor_attention(q, k, v, w, causal=causal)
        exact = softmax_attention(q, k, v, causal=causal)
        assert (approx - exact).abs().max() < 0.1


def test_stabilised_features_give_the_same_attention():
    q, k, v = qkv(16, dk=4)
    w = random_projection(32, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = linear_attention(favor_features(q, w, is_query=True, stabilize=False),
                             favor_features(k, w, is_query=False, stabilize=False), v, feature_map="identity", eps=0)
    stable = linear_attention(favor_features(q, w, is_query=True), favor_features(k, w, is_query=False), v,
                              feature_map="identity", eps=0)
    torch.testing.assert_close(stable, plain)


def test_entropy_of_uniform_and_one_hot_weights():
    uniform = torch.full((3, 8), 1 / 8, dtype=torch.float64)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((3,), math.log(8), dtype=torch.float64))
    assert attention_entropy(torch.eye(4, dtype=torch.float64)).abs().max() < 1e-12
    q, k, _ = qkv(10)
    w = linear_attention_weights(torch.relu(q) + 1, torch.relu(k) + 1, causal=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=torch.float64), rtol=1e-5, atol=0)


@pytest.mark.parametrize("t", [1, 63, 65])
@pytest.mark.parametrize("causal", [False, True])
def test_mixed_chunk_attention_matches_explicit_weights(t, causal):
    g = torch.Generator().manual_seed(2)
    q, k, ql, kl = (torch.randn(2, t, 6, generator=g, dtype=torch.float64) for _ in range(4))
    v = torch.randn(2, t, 5, generator=g, dtype=torch.float64)
    out = mixed_chunk_attention(q, k, ql, kl, v, chunk_size=16, causal=causal)
    torch.testing.assert_close(out, mixed_chunk_weights(q, k, ql, kl, chunk_size=16, causal=causal) @ v)


def test_gau_decoder_is_causal_and_counts_parameters():
    g = torch.Generator().manual_seed(0)
    d, s = 16, 8
    for chunk_size, n_qk in ((None, 2), (4, 4)):
        gau = GAU(d, s=s, causal=True, chunk_size=chunk_size).double()
        assert sum(p.numel() for p in gau.parameters()) == 3 * d * (2 * d) + d * s + 2 * n_qk * s
        x = torch.randn(2, 11, d, dtype=torch.float64, generator=g)
        y = gau(x)
        x2 = x.clone()
        x2[:, 7:] += 1.0  # change the future
        torch.testing.assert_close(gau(x2)[:, :7], y[:, :7])
        assert not torch.allclose(gau(x2)[:, 7:], y[:, 7:])


def test_linear_attention_gradients_match_quadratic():
    q, k, v = qkv(37, b=1, h=2)
    grads = []
    for method, cs in (("quadratic", 64), ("chunk", 8)):
        args = [x.clone().requires_grad_() for x in (q, k, v)]
        out = linear_attention(*args, causal=True, method=method, chunk_size=cs)
        grads.append(torch.autograd.grad(out.pow(2).sum(), args))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_bad_input_raises_clear_errors():
    q, k, v = qkv(8)
    with pytest.raises(ValueError, match=r"linear_attention: q and k must have the same shape"):
        linear_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match=r"linear_attention: v must be \(B, H, T, Dv\)"):
        linear_attention(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match=r"linear_attention: feature_map must be one of"):
        linear_attention(q, k, v, feature_map="softplus")
    with pytest.raises(ValueError, match=r"linear_attention: method must be one of 'auto', 'quadratic', 'recurrent', "
                                         r"'chunk'; got 'fast'"):
        linear_attention(q, k, v, method="fast")
    with pytest.raises(ValueError, match=r"linear_attention: chunk_size must be a positive int, got 0"):
        linear_attention(q, k, v, chunk_size=0)
    with pytest.raises(ValueError, match=r"linear_attention: eps must be a finite real number >= 0, got -1.0"):
        linear_attention(q, k, v, eps=-1.0)
    with pytest.raises(ValueError, match=r"linear_attention: eps must be a finite real number >= 0, got inf"):
        linear_attention(q, k, v, eps=float("inf"))
    with pytest.raises(TypeError, match=r"linear_attention: normalize must be True or False, got str"):
        linear_attention(q, k, v, normalize="yes")
    with pytest.raises(TypeError, match=r"linear_attention: q must be a torch.Tensor"):
        linear_attention(q.numpy(), k, v)
    with pytest.raises(TypeError, match=r"linear_attention: q must have a floating dtype .*got torch.int64"):
        linear_attention(q.long(), k, v)
    with pytest.raises(TypeError, match=r"share one dtype"):
        linear_attention(q.float(), k, v)
    with pytest.raises(ValueError, match=r"must have 4 dimensions"):
        linear_attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match=r"feature_map must map"):
        linear_attention(q, k, v, feature_map=lambda x: x.sum(-2))
    with pytest.raises(TypeError, match=r"softmax_attention: causal must be True or False"):
        softmax_attention(q, k, v, causal=1)
    with pytest.raises(ValueError, match=r"softmax_attention: scale must be a finite real number, got nan"):
        softmax_attention(q, k, v, scale=float("nan"))
    with pytest.raises(ValueError, match=r"softmax_attention: scale must be a finite real number, got True"):
        softmax_attention(q, k, v, scale=True)
    with pytest.raises(ValueError, match=r"favor_features: projection has 3 columns but x has D = 5"):
        favor_features(q, torch.randn(8, 3), is_query=True)
    with pytest.raises(TypeError, match=r"favor_features: x must have a floating dtype .*got torch.int64"):
        favor_features(q.long(), torch.randn(8, 5), is_query=True)
    with pytest.raises(ValueError, match=r"favor_features: projection must have at least 2 dimensions, got shape \(5,"):
        favor_features(q, torch.randn(5), is_query=True)
    with pytest.raises(TypeError, match=r"favor_features: stabilize must be True or False, got int"):
        favor_features(q, torch.randn(8, 5), is_query=True, stabilize=1)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"random_projection: n_features must be a positive int"):
        random_projection(0, 4, generator=g)
    with pytest.raises(TypeError, match=r"random_projection: generator must be a torch.Generator .*got NoneType"):
        random_projection(8, 4, generator=None)
    with pytest.raises(ValueError, match=r"mixed_chunk_attention: chunk_size must be a positive int"):
        mixed_chunk_attention(q[0], k[0], q[0], k[0], v[0], chunk_size=-2)
    with pytest.raises(ValueError, match=r"mixed_chunk_attention: k_lin must have the shape of q"):
        mixed_chunk_attention(q[0], k[0], q[0], k[0, :, :4], v[0], chunk_size=4)
    with pytest.raises(ValueError, match=r"mixed_chunk_attention: v must have 3 dimensions, got shape \(2, 3, 8, 7\)"):
        mixed_chunk_attention(q[0], k[0], q[0], k[0], v, chunk_size=4)
