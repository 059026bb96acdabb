"""labs.comm in one process: the simulated algorithms, their schedules and the cost model."""

import pytest
import sympy as sp
import torch

from labs.comm import (
    ALGORITHMS,
    all_gather,
    all_reduce,
    all_to_all,
    allreduce_cost,
    broadcast,
    cost_terms,
    reduce,
    reduce_scatter,
    schedule_cost,
    simulate,
    simulate_steps,
)

PS = list(range(1, 10))


def buffers(p, shape, dtype=torch.float64):
    g = torch.Generator().manual_seed(p * 31 + sum(shape))
    return [torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(p)]


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (64,)])
def test_every_rank_ends_with_the_sum(algorithm, p, shape):
    x = buffers(p, shape)
    results, _ = simulate(algorithm, x)
    expected = torch.stack(x).sum(0)
    assert len(results) == p
    for r in results:
        assert r.shape == expected.shape and r.dtype == expected.dtype
        torch.testing.assert_close(r, expected, rtol=1e-12, atol=1e-12)


def test_integer_buffers_are_summed_exactly():
    x = [torch.arange(10, dtype=torch.int64) * (r + 1) for r in range(5)]
    for algorithm in ALGORITHMS:
        results, _ = simulate(algorithm, x)
        assert all(torch.equal(r, torch.arange(10) * 15) for r in results)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("p", PS)
def test_each_rank_sends_and_receives_at_most_one_message_per_step(algorithm, p):
    _, schedule = simulate(algorithm, buffers(p, (12,)))
    for step in schedule:
        assert step, "a step with no message"
        assert len({m.src for m in step}) == len(step) and len({m.dst for m in step}) == len(step)
        assert all(0 <= m.src < p and 0 <= m.dst < p and m.src != m.dst for m in step)
        assert step.kind in ("reduce", "copy")


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("p", PS)
def test_schedule_cost_equals_the_formula(algorithm, p):
    n = 2520  # divisible by 1..10, so every chunk has the same size
    _, schedule = simulate(algorithm, buffers(p, (n,), torch.float32))
    params = dict(alpha=3e-6, beta=2e-9, gamma=5e-10)
    simulated = schedule_cost(schedule, bytes_per_element=4, **params)
    assert simulated == pytest.approx(allreduce_cost(algorithm, p, 4 * n, **params), rel=1e-12)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("p", PS[1:])
def test_no_algorithm_beats_the_bandwidth_lower_bound(algorithm, p):
    n = 2520
    _, schedule = simulate(algorithm, buffers(p, (n,)))
    sent = [0] * p
    for step in schedule:
        for m in step:
            sent[m.src] += m.n_elements
    bound = 2 * (p - 1) * n / p
    assert max(sent) >= bound
    if algorithm == "ring" or (algorithm == "rabenseifner" and p & (p - 1) == 0):
        assert max(sent) == bound and min(sent) == bound


def test_ring_schedule_at_p_4():
    _, schedule = simulate("ring", buffers(4, (8,)))
    assert len(schedule) == 6
    assert [step.kind for step in schedule] == ["reduce"] * 3 + ["copy"] * 3
    assert schedule[0] == [(0, 1, 2), (1, 2, 2), (2, 3, 2), (3, 0, 2)]


def test_one_rank_needs_no_messages():
    for algorithm in ALGORITHMS:
        results, schedule = simulate(algorithm, [torch.ones(3)])
        assert schedule == [] and torch.equal(results[0], torch.ones(3))


def test_symbolic_cost_terms_agree_with_numbers():
    p, n = sp.symbols("p n", positive=True)
    for algorithm in ALGORITHMS:
        symbolic = cost_terms(algorithm, p, n)
        for p_value in (2, 8, 64):
            numeric = cost_terms(algorithm, p_value, 1000)
            for s_term, n_term in zip(symbolic, numeric):
                assert float(sp.sympify(s_term).subs({p: p_value, n: 1000})) == pytest.approx(n_term)


def test_collective_definitions():
    x = buffers(4, (10,))
    total = torch.stack(x).sum(0)
    assert all(torch.equal(b, x[2]) for b in broadcast(x, root=2))
    assert torch.allclose(reduce(x, root=1)[1], total) and torch.equal(reduce(x, root=1)[0], x[0])
    assert all(torch.allclose(b, total) for b in all_reduce(x))
    # reduce-scatter then all-gather is allreduce: the decomposition the ring uses
    assert all(torch.allclose(b, total) for b in all_gather(reduce_scatter(x)))
    y = buffers(3, (6,))
    assert all(torch.equal(a, b) for a, b in zip(all_to_all(all_to_all(y)), y))  # a transpose, twice


@pytest.mark.parametrize("run", [simulate, simulate_steps], ids=["simulate", "simulate_steps"])
def test_simulate_rejects_bad_input(run):
    name = run.__name__
    with pytest.raises(ValueError, match=f"{name}: algorithm must be one of"):
        run("butterfly", [torch.ones(2)])
    with pytest.raises(ValueError, match=f"{name}: buffers must be a non-empty list"):
        run("ring", [])
    with pytest.raises(TypeError, match=rf"{name}: buffers\[1\] must be a torch.Tensor, got list"):
        run("ring", [torch.ones(2), [1.0, 2.0]])
    with pytest.raises(ValueError, match=rf"{name}: .*buffers\[2\] has shape \(3,\)"):
        run("ring", [torch.ones(2), torch.ones(2), torch.ones(3)])
    with pytest.raises(ValueError, match="dtype torch.float64"):
        run("ring", [torch.ones(2), torch.ones(2, dtype=torch.float64)])
    with pytest.raises(TypeError, match=rf"{name}: buffers must have a dtype in \(float16, .*int64\), got torch.bool"):
        run("ring", [torch.ones(2, dtype=torch.bool)] * 2)


def test_allreduce_cost_rejects_bad_input():
    with pytest.raises(ValueError, match="allreduce_cost: algorithm must be one of 'ring'"):
        allreduce_cost("tree", 4, 10, alpha=1, beta=1)
    with pytest.raises(ValueError, match="allreduce_cost: p must be a positive int, got 0"):
        allreduce_cost("ring", 0, 10, alpha=1, beta=1)
    with pytest.raises(ValueError, match="allreduce_cost: p must be a positive int, got 2.5"):
        allreduce_cost("ring", 2.5, 10, alpha=1, beta=1)
    with pytest.raises(ValueError, match="allreduce_cost: beta must be a finite real number >= 0, got -1"):
        allreduce_cost("ring", 2, 10, alpha=1, beta=-1)
    with pytest.raises(ValueError, match="allreduce_cost: n_bytes must be a finite real number >= 0, got nan"):
        allreduce_cost("ring", 2, float("nan"), alpha=1, beta=1)
    with pytest.raises(ValueError, match="allreduce_cost: gamma must be a finite real number >= 0, got True"):
        allreduce_cost("ring", 2, 10, alpha=1, beta=1, gamma=True)


def test_make_problem_is_built_from_its_seed_alone():
    from labs.comm.experiment import make_problem

    state = torch.random.get_rng_state()
    (model_a, x_a, y_a), (model_b, x_b, y_b) = make_problem(5), make_problem(5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is neither read nor moved
    assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
    assert all(torch.equal(a, b) for a, b in zip(model_a.parameters(), model_b.parameters()))
    other = make_problem(6)[0]
    assert not torch.equal(next(model_a.parameters()), next(other.parameters()))
    first = model_a[0].weight
    assert first.dtype == torch.float64 and first.abs().max() <= 10 ** -0.5  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))


def test_alpha_beta_fit_recovers_known_parameters():
    from labs.comm.experiment import fit_alpha_beta

    p = [2] * 5 + [4] * 5
    n = [64, 1e3, 1e4, 1e5, 1e6] * 2
    alpha, beta = 40e-6, 2e-9
    seconds = [allreduce_cost("ring", q, m, alpha=alpha, beta=beta) for q, m in zip(p, n)]
    fitted = fit_alpha_beta(p, n, seconds)
    assert (fitted.alpha, fitted.beta) == pytest.approx((alpha, beta), rel=1e-9)
    assert fitted.rms_rel_error < 1e-9
    latency_only, bandwidth_only = (fit_alpha_beta(p, n, seconds, terms=(t,)) for t in ("alpha", "beta"))
    assert latency_only.beta == 0 and latency_only.alpha > 0 and bandwidth_only.alpha == 0 and bandwidth_only.beta > 0
    # One-term models cannot follow both ends.
    assert min(latency_only.rms_rel_error, bandwidth_only.rms_rel_error) > 0.5


def test_alpha_beta_fit_does_not_clamp():
    from labs.comm.experiment import fit_alpha_beta

    # Small messages slower than large ones: the least-squares beta is negative, and is returned as such.
    fitted = fit_alpha_beta([2, 2, 2], [10, 1e5, 1e6], [1e-3, 5e-4, 2e-4])
    assert fitted.beta < 0 < fitted.alpha and fitted.rms_rel_error > 0


def test_alpha_beta_fit_rejects_bad_input():
    from labs.comm.experiment import fit_alpha_beta

    p, n, seconds = [2, 2, 2], [10, 100, 1000], [1e-4, 2e-4, 3e-4]
    with pytest.raises(ValueError, match="fit_alpha_beta: terms must be one of 'alpha', 'beta'; got 'gamma'"):
        fit_alpha_beta(p, n, seconds, terms=("gamma",))
    with pytest.raises(ValueError, match="fit_alpha_beta: terms must name at least one"):
        fit_alpha_beta(p, n, seconds, terms=())
    with pytest.raises(ValueError, match="fit_alpha_beta: p, n_bytes and seconds must have the same length, got 3, 2 and 3"):
        fit_alpha_beta(p, n[:2], seconds)
    with pytest.raises(ValueError, match=r"fit_alpha_beta: n_bytes must be >= 0 and seconds > 0"):
        fit_alpha_beta(p, n, [1e-4, 0.0, 3e-4])
    with pytest.raises(ValueError, match=r"fit_alpha_beta: every p must be an int >= 2"):
        fit_alpha_beta([1, 2, 2], n, seconds)
    with pytest.raises(ValueError, match="fit_alpha_beta: seconds must be a 1-D sequence of finite numbers"):
        fit_alpha_beta(p, n, [1e-4, float("nan"), 3e-4])
    with pytest.raises(ValueError, match="fit_alpha_beta: fitting 2 terms needs at least 2 points, got 1"):
        fit_alpha_beta([2], [10], [1e-4])


def test_collectives_picture_labels_decode_the_definitions():
    from labs.comm.plots import _labels

    p = 4
    x = [torch.tensor([float(1 << r) + k / 100 for k in range(p)], dtype=torch.float64) for r in range(p)]
    assert [_labels(t, p) for t in reduce_scatter(x)] == [["Σ0"], ["Σ1"], ["Σ2"], ["Σ3"]]
    assert _labels(all_to_all(x)[2], p) == ["A2", "B2", "C2", "D2"]
    assert _labels(x[1], p) == ["B0", "B1", "B2", "B3"]


def test_bus_bandwidth_follows_the_nccl_tests_convention():
    from labs.comm import algbw, busbw

    assert algbw(1e9, 0.5) == 2e9
    assert busbw(1e9, 0.5, 8) == pytest.approx(2e9 * 2 * 7 / 8)
    assert busbw(1e9, 0.5, 1) == 0.0  # one rank moves nothing


@pytest.mark.parametrize("nodes, g", [(1, 1), (1, 4), (4, 1), (2, 2), (2, 3), (3, 4)])
@pytest.mark.parametrize("n", [1, 7, 24])
def test_hierarchical_allreduce_sums_and_costs_what_the_formula_says(nodes, g, n):
    from labs.comm import hierarchical_cost, schedule_cost_two_level, simulate_hierarchical

    x = buffers(nodes * g, (n,))
    results, schedule = simulate_hierarchical(x, nodes)
    for r in results:
        torch.testing.assert_close(r, torch.stack(x).sum(0), rtol=1e-12, atol=1e-12)
    for step in schedule:
        assert len({m.src for m in step}) == len(step) and len({m.dst for m in step}) == len(step)
    if n == 24:  # divisible by every g * nodes here: chunks of equal size
        node_of = [r // g for r in range(nodes * g)]
        links = dict(alpha_intra=1e-6, beta_intra=1e-11, alpha_inter=5e-6, beta_inter=1e-10)
        simulated = schedule_cost_two_level(schedule, node_of, bytes_per_element=4, **links)
        assert simulated == pytest.approx(hierarchical_cost(g, nodes, 4 * n, **links), rel=1e-12)
        across = [0] * (nodes * g)
        for step in schedule:
            for m in step:
                if node_of[m.src] != node_of[m.dst]:
                    across[m.src] += m.n_elements
        assert max(across) == 2 * (nodes - 1) * n // (g * nodes)  # each rank's share of the network traffic


def test_hierarchical_rejects_bad_input():
    from labs.comm import hierarchical_cost, simulate_hierarchical

    with pytest.raises(ValueError, match="simulate_hierarchical: the 6 ranks must split evenly over nodes, got nodes=4"):
        simulate_hierarchical(buffers(6, (3,)), 4)
    with pytest.raises(ValueError, match=r"simulate_hierarchical: .*buffers\[1\] has shape \(3,\)"):
        simulate_hierarchical([torch.ones(2), torch.ones(3)], 1)
    with pytest.raises(ValueError, match="simulate_hierarchical: nodes must be a positive int, got 0"):
        simulate_hierarchical(buffers(2, (3,)), 0)
    with pytest.raises(ValueError, match="hierarchical_cost: beta_inter must be a finite real number >= 0"):
        hierarchical_cost(2, 2, 10, alpha_intra=0, beta_intra=0, alpha_inter=0, beta_inter=-1)


@pytest.mark.parametrize("p", range(1, 33))
def test_double_binary_tree(p):
    from labs.comm import double_binary_tree

    trees = double_binary_tree(p)
    inner = []
    for parents in trees:
        assert parents.count(-1) == 1
        children = [parents.count(r) for r in range(p)]
        assert max(children) <= 2
        depth = 0
        for r in range(p):  # every rank reaches the root, in at most ceil(lg p) hops
            hops, q = 0, r
            while parents[q] != -1:
                q, hops = parents[q], hops + 1
                assert hops <= p
            depth = max(depth, hops)
        assert depth <= max(1, (p - 1).bit_length())
        inner.append({r for r in range(p) if children[r] > 0})
    if p % 2 == 0:
        assert not inner[0] & inner[1]  # no rank forwards data in both trees


def test_exposed_communication_matches_the_closed_form_and_its_limits():
    from labs.comm import exposed_closed_form, exposed_communication

    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        k = 1 + int(20 * u[0])
        grad, backward, alpha, beta = 1e8, 0.01 + 0.2 * u[1], 1e-6 * 10 ** (2 * u[2]), 1e-11 * 10 ** (2 * u[3])
        args = dict(p=8, alpha=alpha, beta=beta)
        got = exposed_communication(grad, grad / k, backward, **args)
        assert got == pytest.approx(exposed_closed_form(grad, grad / k, backward, 8, alpha, beta), rel=1e-9, abs=1e-15)
        one_bucket = exposed_communication(grad, grad, backward, **args)
        assert one_bucket == pytest.approx(2 * 7 * alpha + 2 * 7 / 8 * grad * beta)  # no overlap at all
        assert got <= one_bucket * (1 + 1e-12) + 2 * 7 * alpha * k  # buckets never cost more than their start-ups
    with pytest.raises(ValueError, match="exposed_communication: bucket_bytes must be a finite real number > 0"):
        exposed_communication(1e6, 0, 0.1, p=2, alpha=1e-6, beta=1e-9)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_simulate_steps_records_every_step_and_ends_where_simulate_ends(algorithm):
    g = torch.Generator().manual_seed(3)
    buffers = [torch.randn(2, 5, generator=g, dtype=torch.float64) for _ in range(6)]
    states, schedule = simulate_steps(algorithm, buffers)
    results, expected_schedule = simulate(algorithm, buffers)
    assert states.shape == (len(schedule) + 1, 6, 10)
    assert torch.equal(states[0], torch.stack([b.reshape(-1) for b in buffers]))
    assert torch.equal(states[-1], torch.stack([r.reshape(-1) for r in results]))
    assert [list(s) for s in schedule] == [list(s) for s in expected_schedule]
    changed = [(states[i + 1] != states[i]).any().item() for i in range(len(schedule))]
    assert all(changed), f"{algorithm}: a recorded step changed no buffer"
