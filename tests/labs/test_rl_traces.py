"""labs.rl.traces: n-step TD and TD(lambda) held to the textbook's per-run loops on the same experience."""

import pytest
import torch

from labs import rl
from labs.rl import features, traces


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _episodes(stream, run):
    """The run's episodes as lists of (S_t, R_{t+1}, S_{t+1}), in order (complete episodes only)."""
    out, current = [], []
    for t in range(stream.states.shape[0]):
        if not stream.active[t, run]:
            break
        current.append((int(stream.states[t, run]), float(stream.rewards[t, run]), int(stream.next_states[t, run])))
        if stream.ends[t, run]:
            out.append(current)
            current = []
    return out


def _textbook_n_step(episodes, phi, n, alpha, gamma, d):
    """Sutton and Barto's n-step semi-gradient TD pseudocode (section 9.4), one run."""
    w = torch.zeros(d, dtype=torch.float64)
    snapshots = [w.clone()]
    for episode in episodes:
        T = len(episode)
        for t in range(T + n - 1):
            tau = t - n + 1
            if tau < 0:
                continue
            G = sum(gamma ** (i - tau) * episode[i][1] for i in range(tau, min(tau + n, T)))
            if tau + n < T:
                G += gamma**n * float(phi[episode[tau + n][0]] @ w)
            s = episode[tau][0]
            w = w + alpha * (G - float(phi[s] @ w)) * phi[s]
        snapshots.append(w.clone())
    return torch.stack(snapshots)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 40])
def test_n_step_td_matches_the_textbook_loop(n):
    mdp = rl.random_walk(19, left_reward=-1.0)
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=5, runs=3, generator=gen(n))
    phi = features.state_aggregation(19, 19)
    alphas = [0.1, 0.4]
    got = traces.n_step_td(stream, phi, n=n, alpha=alphas, gamma=0.9, episodes=5)
    assert got.shape == (2, 3, 6, 19)
    for k, alpha in enumerate(alphas):
        for run in range(3):
            want = _textbook_n_step(_episodes(stream, run), phi, n, alpha, 0.9, 19)
            torch.testing.assert_close(got[k, run], want)


def test_one_step_td_is_linear_prediction():
    mdp = rl.random_walk_1000()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=3, runs=4, generator=gen(1))
    phi = features.state_aggregation(1000, 10)
    got = traces.n_step_td(stream, phi, n=1, alpha=[0.05], episodes=3)[0]
    want = rl.prediction.linear_prediction(stream, phi, alpha=0.05, gamma=1.0, init=torch.tensor(0.0, dtype=torch.float64),
                                           method="td", episodes=3)
    torch.testing.assert_close(got, want)


def test_td_lambda_matches_the_textbook_loop():
    mdp = rl.random_walk(9, left_reward=-1.0)
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=4, runs=2, generator=gen(3))
    phi = features.state_aggregation(9, 3)
    got = traces.td_lambda(stream, phi, lam=0.7, alpha=[0.2], gamma=0.95, episodes=4)[0]
    for run in range(2):
        w = torch.zeros(3, dtype=torch.float64)
        snapshots = [w.clone()]
        for episode in _episodes(stream, run):
            z = torch.zeros(3, dtype=torch.float64)
            for s, r, s2 in episode:
                z = 0.95 * 0.7 * z + phi[s]
                delta = r + 0.95 * float(phi[s2] @ w) - float(phi[s] @ w)
                w = w + 0.2 * delta * z
            snapshots.append(w.clone())
        torch.testing.assert_close(got[run], torch.stack(snapshots))


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_offline_lambda_return_equals_the_backward_view(lam):
    generator = gen(int(lam * 10))
    T, d, gamma = 12, 4, 0.9
    phi = torch.randn(T, d, dtype=torch.float64, generator=generator)
    rewards = torch.randn(T, dtype=torch.float64, generator=generator)
    w = torch.randn(d, dtype=torch.float64, generator=generator)
    values = phi @ w
    forward = ((traces.lambda_returns(rewards, values, gamma=gamma, lam=lam) - values)[:, None] * phi).sum(0)
    next_values = torch.cat([values[1:], torch.zeros(1, dtype=torch.float64)])
    delta = rewards + gamma * next_values - values
    z, backward = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    for t in range(T):
        z = gamma * lam * z + phi[t]
        backward += delta[t] * z
    torch.testing.assert_close(forward, backward, atol=1e-12, rtol=0)


def test_traces_reject_bad_input():
    mdp = rl.random_walk()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=2, runs=2, generator=gen())
    phi = features.tabular(5)
    with pytest.raises(ValueError, match="n_step_td: n must be"):
        traces.n_step_td(stream, phi, n=0, alpha=[0.1], episodes=2)
    with pytest.raises(ValueError, match="n_step_td: alpha"):
        traces.n_step_td(stream, phi, n=2, alpha=[0.1, -1.0], episodes=2)
    with pytest.raises(TypeError, match="td_lambda: stream must be a Transitions"):
        traces.td_lambda(stream.states, phi, lam=0.5, alpha=[0.1], episodes=2)
    with pytest.raises(ValueError, match="td_lambda: lam"):
        traces.td_lambda(stream, phi, lam=1.5, alpha=[0.1], episodes=2)
    with pytest.raises(ValueError, match="lambda_returns: rewards and values"):
        traces.lambda_returns(torch.zeros(3), torch.zeros(4), gamma=0.9, lam=0.5)


# --- off-policy: Baird's counterexample, semi-gradient TD and TDC -------------------------------------

def test_baird_is_sutton_and_bartos_example_11_1():
    mdp, phi, b, pi = rl.offpolicy.baird()
    assert phi.shape == (7, 8) and torch.linalg.matrix_rank(phi) == 7
    torch.testing.assert_close(rl.on_policy_distribution(mdp, b), torch.full((7,), 1 / 7, dtype=torch.float64))
    assert (mdp.P[:, 1, 6] == 1).all() and (mdp.R == 0).all()


@pytest.mark.parametrize("method", ["td", "tdc"])
def test_off_policy_td_matches_a_per_run_loop(method):
    mdp, phi, b, pi = rl.offpolicy.baird()
    init = torch.tensor([1, 1, 1, 1, 1, 1, 10, 1], dtype=torch.float64)
    # Replay the same draws: the sampler consumes the generator the same way in both.
    got = rl.offpolicy.off_policy_td(mdp, b, pi, phi, method=method, alpha=0.01, beta=0.05, steps=30, runs=2, gamma=0.99,
                                     init=init, generator=gen(4))
    generator = gen(4)
    state = mdp.reset(2, generator)
    w, v = init.expand(2, 8).clone(), torch.zeros(2, 8, dtype=torch.float64)
    for t in range(30):
        action = rl.sample_actions(b, state, generator)
        next_state, _ = mdp.step(state, action, generator)
        for r in range(2):
            s, a, s2 = int(state[r]), int(action[r]), int(next_state[r])
            rho = float(pi[s, a] / b[s, a])
            delta = 0.99 * float(phi[s2] @ w[r]) - float(phi[s] @ w[r])
            if method == "td":
                w[r] = w[r] + 0.01 * rho * delta * phi[s]
            else:
                correction = float(phi[s] @ v[r])
                w[r] = w[r] + 0.01 * rho * (delta * phi[s] - 0.99 * phi[s2] * correction)
                v[r] = v[r] + 0.05 * (rho * delta - correction) * phi[s]
        state = next_state
        torch.testing.assert_close(got[t + 1], w)


def test_off_policy_td_rejects_bad_input():
    mdp, phi, b, pi = rl.offpolicy.baird()
    kwargs = dict(alpha=0.01, steps=3, runs=2, gamma=0.99, init=0.0, generator=gen())
    with pytest.raises(ValueError, match="off_policy_td: TDC needs a step size beta"):
        rl.offpolicy.off_policy_td(mdp, b, pi, phi, method="tdc", **kwargs)
    with pytest.raises(ValueError, match="off_policy_td: method must be one of"):
        rl.offpolicy.off_policy_td(mdp, b, pi, phi, method="gtd9", **kwargs)
    with pytest.raises(ValueError, match="off_policy_td: the behaviour policy must try"):
        rl.offpolicy.off_policy_td(mdp, pi, b, phi, method="td", **kwargs)
    with pytest.raises(ValueError, match="off_policy_td: features must be"):
        rl.offpolicy.off_policy_td(mdp, b, pi, phi[:3], method="td", **kwargs)


# --- maximisation bias ------------------------------------------------------------------------------

def test_maximisation_bias_shapes_and_random_behaviour():
    for method in ("q_learning", "double_q"):
        left = rl.double_q.maximisation_bias(method, episodes=20, runs=4000, epsilon=1.0, generator=gen(1))
        assert left.shape == (4000, 20) and left.dtype == torch.bool
        assert abs(left.double().mean().item() - 0.5) < 0.01  # epsilon = 1: uniformly random


def test_double_q_is_less_biased_than_q_learning():
    # A falsifiable ordering on the book's example: early on Q-learning prefers the worse action far more often.
    q = rl.double_q.maximisation_bias("q_learning", episodes=60, runs=2000, generator=gen(2)).double()[:, 10:60].mean()
    d = rl.double_q.maximisation_bias("double_q", episodes=60, runs=2000, generator=gen(3)).double()[:, 10:60].mean()
    assert q > d + 0.2


def test_maximisation_bias_rejects_bad_input():
    with pytest.raises(ValueError, match="maximisation_bias: method must be one of"):
        rl.double_q.maximisation_bias("sarsa", episodes=2, runs=2, generator=gen())
    with pytest.raises(ValueError, match="maximisation_bias: epsilon"):
        rl.double_q.maximisation_bias("double_q", episodes=2, runs=2, epsilon=2.0, generator=gen())
