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
