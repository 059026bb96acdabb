"""labs.rl: environments, exact planning, TD / MC prediction, TD control, linear and neural values."""

import pytest
import torch

from labs import rl
from labs.rl import features


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- environments -----------------------------------------------------------------------------

@pytest.mark.parametrize("build", [rl.random_walk, rl.random_walk_1000, rl.cliff_walking, rl.windy_gridworld, rl.grid_world])
def test_environments_are_valid_mdps(build):
    mdp = build()
    torch.testing.assert_close(mdp.P.sum(-1), torch.ones(mdp.n_states, mdp.n_actions, dtype=torch.float64))
    assert mdp.R.shape == mdp.P.shape and mdp.terminal.shape == (mdp.n_states,)
    assert (mdp.P[mdp.terminal].argmax(-1) == torch.nonzero(mdp.terminal)[:, 0][:, None]).all()


def test_step_samples_the_transition_probabilities():
    mdp = rl.random_walk_1000()
    n = 200_000
    states = torch.full((n,), 500)
    next_states, rewards = mdp.step(states, torch.ones(n, dtype=torch.long), gen())
    jumps = next_states - 500
    assert jumps.min() >= 1 and jumps.max() <= 100
    counts = torch.bincount(jumps, minlength=101)[1:].double()
    assert (counts / n - 0.01).abs().max() < 5 * (0.01 * 0.99 / n) ** 0.5  # five standard errors
    assert (rewards == 0).all()


def test_cliff_sends_back_to_start_with_minus_100():
    mdp = rl.cliff_walking()
    start = torch.tensor([3 * 12 + 0])
    right = torch.tensor([rl.mdp.COMPASS.index("right")])
    next_state, reward = mdp.step(start, right, gen())
    assert next_state.item() == 36 and reward.item() == -100.0


def test_windy_gridworld_optimal_episode_takes_15_steps():
    # Sutton & Barto, Example 6.5: the optimal (deterministic) path takes 15 steps.
    v, _, _ = rl.value_iteration(rl.windy_gridworld(), 1.0)
    assert v[3 * 10 + 0].item() == pytest.approx(-15.0)


# --- exact planning -----------------------------------------------------------------------------

def test_random_walk_true_values_are_k_over_6():
    mdp = rl.random_walk()
    v = rl.evaluate_policy(mdp, rl.uniform_policy(mdp), 1.0)
    torch.testing.assert_close(v, torch.tensor([0, 1, 2, 3, 4, 5, 0], dtype=torch.float64) / 6)


def test_iterative_policy_evaluation_converges_to_the_closed_form():
    mdp = rl.grid_world()
    policy = rl.uniform_policy(mdp)
    history = rl.iterative_policy_evaluation(mdp, policy, 0.9, sweeps=400)
    torch.testing.assert_close(history[-1], rl.evaluate_policy(mdp, policy, 0.9), atol=1e-12, rtol=0)


def test_value_iteration_satisfies_the_bellman_optimality_equation():
    mdp = rl.grid_world()
    v, q, policy = rl.value_iteration(mdp, 0.9)
    torch.testing.assert_close(v, (mdp.r + 0.9 * mdp.P @ v).amax(-1), atol=1e-9, rtol=0)
    torch.testing.assert_close(rl.evaluate_policy(mdp, policy, 0.9), v, atol=1e-8, rtol=0)
    assert v[3 * 5 + 2].item() == pytest.approx(10.0)  # the target: r_target / (1 - gamma)


def test_on_policy_distribution_is_stationary_for_a_continuing_task():
    mdp = rl.grid_world()
    policy = rl.uniform_policy(mdp)
    mu = rl.on_policy_distribution(mdp, policy)
    P_pi, _ = rl.markov_reward_process(mdp, policy)
    torch.testing.assert_close(mu @ P_pi, mu)


# --- prediction -----------------------------------------------------------------------------------

def test_td0_matches_a_per_run_python_loop():
    """The vectorised update equals the textbook loop, run by run, on the same experience."""
    mdp = rl.random_walk()
    policy = rl.uniform_policy(mdp)
    stream = rl.sample_transitions(mdp, policy, episodes=7, runs=3, generator=gen(1))
    table = torch.eye(7, dtype=torch.float64) * (~mdp.terminal)[:, None]
    w = rl.prediction.linear_prediction(stream, table, alpha=0.1, gamma=1.0, init=torch.tensor(0.5, dtype=torch.float64),
                                        method="td", episodes=7)
    for run in range(3):
        V = [0.0] + [0.5] * 5 + [0.0]
        snapshots = [list(V)]
        for t in range(stream.states.shape[0]):
            if not stream.active[t, run]:
                continue
            s, r, s2 = int(stream.states[t, run]), float(stream.rewards[t, run]), int(stream.next_states[t, run])
            V[s] += 0.1 * (r + V[s2] - V[s])
            if stream.ends[t, run]:
                snapshots.append(list(V))
        torch.testing.assert_close(w[run] * ~mdp.terminal, torch.tensor(snapshots, dtype=torch.float64))


def test_mc_returns_restart_at_episode_ends():
    mdp = rl.random_walk()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=5, runs=4, generator=gen(2))
    G = rl.prediction.returns(stream, 1.0)
    # In the 5-state walk the only reward is the +1 on the right exit: G_t is 1 exactly when the episode ends right.
    episode = torch.cumsum(stream.ends.long(), 0) - stream.ends.long()
    for run in range(4):
        for k in range(5):
            steps = (episode[:, run] == k) & stream.active[:, run]
            exit_reward = stream.rewards[steps, run][-1]
            assert (G[steps, run] == exit_reward).all()


def test_td_and_mc_approach_the_true_values():
    mdp = rl.random_walk()
    policy = rl.uniform_policy(mdp)
    true = rl.evaluate_policy(mdp, policy, 1.0)
    for learn, alpha in [(rl.td0, 0.05), (rl.mc_prediction, 0.02)]:
        V = learn(mdp, policy, alpha=alpha, episodes=100, runs=200, init=0.5, generator=gen(3))
        assert V.shape == (200, 101, 7)
        rms = ((V - true) ** 2)[..., 1:-1].mean(-1).sqrt().mean(0)
        assert rms[-1] < 0.5 * rms[0]
        assert (V[..., [0, -1]] == 0).all()


def test_batch_td_is_the_certainty_equivalence_estimate():
    """Batch TD (repeat all experience until convergence) reaches the fixed point computed in closed form."""
    mdp = rl.random_walk()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=10, runs=2, generator=gen(4))
    td, mc = rl.batch_fixed_points(stream, mdp.n_states, mdp.terminal, 10, 0.5)
    run = 0
    mask = stream.active[:, run]
    s, r, s2 = stream.states[mask, run], stream.rewards[mask, run], stream.next_states[mask, run]
    V = torch.full((7,), 0.5, dtype=torch.float64)
    V[[0, 6]] = 0
    for _ in range(3000):  # batch updating with a small step size, as in Figure 6.2
        increments = torch.zeros(7, dtype=torch.float64)
        increments.index_add_(0, s, r + V[s2] - V[s])
        V += 0.01 * increments
    torch.testing.assert_close(V, td[run, -1], atol=1e-6, rtol=0)
    G = rl.prediction.returns(stream, 1.0)[mask, run]
    sums = torch.zeros(7, dtype=torch.float64).index_add_(0, s, G)
    counts = torch.bincount(s, minlength=7).double()
    seen = counts > 0
    torch.testing.assert_close(mc[run, -1][seen], (sums / counts.clamp_min(1))[seen])


def test_linear_td_and_mc_reach_their_fixed_points():
    mdp = rl.random_walk(9, left_reward=-1.0)
    policy = rl.uniform_policy(mdp)
    phi = features.state_aggregation(9, 3)
    stream = rl.sample_transitions(mdp, policy, episodes=300, runs=100, generator=gen(5))
    for method, exact in [("td", rl.td_fixed_point), ("mc", rl.mc_fixed_point)]:
        w = rl.prediction.linear_prediction(stream, phi, alpha=0.02, gamma=1.0, init=torch.zeros(3, dtype=torch.float64),
                                            method=method, episodes=300)
        learned = (phi @ w[:, 150:].mean((0, 1)))[1:-1]
        target = (phi @ exact(mdp, policy, phi))[1:-1]
        assert (learned - target).abs().max() < 0.05, method
    # The two fixed points differ: TD's is not the best approximation in the value error.
    assert (rl.td_fixed_point(mdp, policy, phi) - rl.mc_fixed_point(mdp, policy, phi)).abs().max() > 1e-3


def test_tabular_features_make_both_fixed_points_the_true_values():
    mdp = rl.random_walk()
    policy = rl.uniform_policy(mdp)
    phi = features.tabular(5)
    true = rl.evaluate_policy(mdp, policy, 1.0)
    torch.testing.assert_close(phi @ rl.td_fixed_point(mdp, policy, phi), true)
    torch.testing.assert_close(phi @ rl.mc_fixed_point(mdp, policy, phi), true)


@pytest.mark.parametrize("build, d", [(lambda: features.state_aggregation(1000, 10), 10),
                                      (lambda: features.polynomial(1000, 5), 6),
                                      (lambda: features.fourier(1000, 5), 6),
                                      (lambda: features.tile_coding(1000, 4, 200), 5 + 3 * 6)])
def test_feature_shapes_and_zero_terminal_rows(build, d):
    phi = build()
    assert phi.shape == (1002, d)
    assert (phi[[0, -1]] == 0).all()
    assert (phi[1:-1].abs().sum(0) > 0).all(), "every feature is used by some state"


def test_semi_gradient_td_returns_weights_per_episode():
    mdp = rl.random_walk_1000()
    w = rl.semi_gradient_td(mdp, rl.uniform_policy(mdp), features.state_aggregation(1000, 10), alpha=0.05,
                            episodes=3, runs=4, generator=gen(6))
    assert w.shape == (4, 4, 10) and (w[:, 0] == 0).all() and (w[:, -1] != 0).any()


# --- control ----------------------------------------------------------------------------------------

def test_cliff_walking_sarsa_safe_q_learning_optimal():
    """Sutton & Barto, Example 6.6: Q-learning learns the optimal path along the cliff (13 steps),
    Sarsa the safer one, and Sarsa's online reward is higher."""
    mdp = rl.cliff_walking()
    results = {m: rl.td_control(mdp, m, alpha=0.5, epsilon=0.1, episodes=200, runs=20, generator=gen(7))
               for m in ("sarsa", "q_learning")}
    assert results["sarsa"].rewards.shape == (20, 200)
    assert results["sarsa"].rewards[:, -100:].mean() > results["q_learning"].rewards[:, -100:].mean()
    total, steps = rl.greedy_return(mdp, results["q_learning"].q, generator=gen(11))
    assert (steps == 13).float().mean() >= 0.9 and (total == -13).float().mean() >= 0.9


def test_expected_sarsa_learns_windy_gridworld():
    mdp = rl.windy_gridworld()
    result = rl.expected_sarsa(mdp, alpha=0.5, epsilon=0.1, episodes=150, runs=8, generator=gen(8))
    assert result.lengths[:, -20:].float().mean() < 25  # optimal is 15; exploration adds a few
    assert result.lengths[:, 0].float().mean() > 100


def test_epsilon_greedy_probabilities():
    q = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    torch.testing.assert_close(rl.epsilon_greedy_probs(q, 0.2), torch.tensor([[0.05, 0.45, 0.45, 0.05]]))


def test_dqn_learns_an_optimal_greedy_policy():
    mdp = rl.grid_world()
    v_star, _, _ = rl.value_iteration(mdp, 0.9)
    state = torch.random.get_rng_state()
    result = rl.dqn(mdp, gamma=0.9, steps=1500, target_every=100, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state), "dqn leaves torch's global RNG alone"
    greedy_values = rl.evaluate_policy(mdp, rl.greedy_policy(result.q), 0.9)
    assert (greedy_values - v_star).abs().max() < 0.5


def test_dqn_is_reproducible_from_its_seed_alone():
    mdp = rl.grid_world()
    first = rl.dqn(mdp, gamma=0.9, steps=20, seed=3)
    torch.manual_seed(99)  # the global RNG must not matter
    second = rl.dqn(mdp, gamma=0.9, steps=20, seed=3)
    torch.testing.assert_close(first.q, second.q, rtol=0, atol=0)
    assert not torch.equal(first.q, rl.dqn(mdp, gamma=0.9, steps=20, seed=4).q)


# --- bad input ------------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    mdp = rl.random_walk()
    policy = rl.uniform_policy(mdp)
    with pytest.raises(ValueError, match=r"td0: alpha \(the step size\) must be a finite real number > 0, got 0.0"):
        rl.td0(mdp, policy, alpha=0.0, episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"mc_prediction: alpha \(the step size\) must be a finite real number > 0, got nan"):
        rl.mc_prediction(mdp, policy, alpha=float("nan"), episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"evaluate_policy: gamma \(the discount\) must be a finite real number >= 0 and <= 1, got 1.5"):
        rl.evaluate_policy(mdp, policy, 1.5)
    with pytest.raises(ValueError, match=r"sarsa: gamma \(the discount\) must be a finite real number >= 0"):
        rl.sarsa(rl.cliff_walking(), alpha=0.5, epsilon=0.1, episodes=1, runs=1, gamma=-0.1, generator=gen())
    with pytest.raises(ValueError, match=r"q_learning: epsilon must be a finite real number >= 0 and <= 1, got 2.0"):
        rl.q_learning(rl.cliff_walking(), alpha=0.5, epsilon=2.0, episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"td_control: method must be one of 'sarsa', 'q_learning', 'expected_sarsa'; got 'dqn'"):
        rl.td_control(rl.cliff_walking(), "dqn", alpha=0.5, epsilon=0.1, episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"value_iteration: tol must be a finite real number > 0, got 0"):
        rl.value_iteration(mdp, 0.9, tol=0)
    with pytest.raises(ValueError, match=r"td0: policy rows must be probability distributions"):
        rl.td0(mdp, policy * 2, alpha=0.1, episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"evaluate_policy: policy must have shape \(S, A\) = \(7, 2\), got \(7, 3\)"):
        rl.evaluate_policy(mdp, torch.full((7, 3), 1 / 3, dtype=torch.float64), 1.0)
    with pytest.raises(TypeError, match=r"evaluate_policy: policy must be a torch.Tensor"):
        rl.evaluate_policy(mdp, [[0.5, 0.5]] * 7, 1.0)
    with pytest.raises(TypeError, match=r"td0: mdp must be a labs.rl.TabularMDP"):
        rl.td0("walk", policy, alpha=0.1, episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"td0: runs must be a positive int, got 0"):
        rl.td0(mdp, policy, alpha=0.1, episodes=1, runs=0, generator=gen())
    with pytest.raises(ValueError, match=r"semi_gradient_td: features must be a tensor of shape \(S, d\) with S = 7"):
        rl.semi_gradient_td(mdp, policy, torch.ones(5, 2), alpha=0.1, episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"gradient_mc: init must be a number or a vector of length 2"):
        rl.gradient_mc(mdp, policy, torch.ones(7, 2), alpha=0.1, episodes=1, runs=1, init=torch.zeros(3), generator=gen())
    with pytest.raises(ValueError, match=r"random_walk: n_states must be odd \(so that there is a middle state to start in\), got 4"):
        rl.random_walk(4)
    with pytest.raises(ValueError, match=r"random_walk: n_states must be a positive int, got 0"):
        rl.random_walk(0)
    with pytest.raises(ValueError, match=r"sample_transitions: .* has no terminal state"):
        rl.sample_transitions(rl.grid_world(), rl.uniform_policy(rl.grid_world()), episodes=1, runs=1, generator=gen())
    with pytest.raises(ValueError, match=r"grid_world: cell \(5, 0\) lies outside"):
        rl.grid_world(forbidden=[(5, 0)])
    with pytest.raises(ValueError, match=r"dqn: the grid world is continuing, so gamma must be < 1"):
        rl.dqn(rl.grid_world(), gamma=1.0, seed=0)
    with pytest.raises(ValueError, match=r"dqn: lr must be a finite real number > 0, got -0.1"):
        rl.dqn(rl.grid_world(), gamma=0.9, lr=-0.1, seed=0)
    with pytest.raises(ValueError, match=r"greedy_return: q must be a tensor of shape \(runs, S, A\) = \(runs, 48, 4\), got \(48, 4\)"):
        rl.greedy_return(rl.cliff_walking(), torch.zeros(48, 4), generator=gen())
    with pytest.raises(ValueError, match=r"state_aggregation: groups=7 must divide n_states=1000"):
        features.state_aggregation(1000, 7)


def test_every_run_finishes_exactly_the_requested_episodes():
    mdp = rl.random_walk()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=6, runs=5, generator=gen(9))
    assert (stream.ends.sum(0) == 6).all()
    assert (stream.ends <= stream.active).all()


def test_hyper_parameters_can_differ_per_run():
    mdp = rl.cliff_walking()
    epsilon = torch.tensor([0.0, 0.0, 1.0, 1.0])
    result = rl.q_learning(mdp, alpha=0.5, epsilon=epsilon, episodes=30, runs=4, generator=gen(10))
    late = result.rewards[:, -10:].mean(1)
    assert late[:2].min() > late[2:].max()  # greedy runs have learned; random runs keep wandering
    with pytest.raises(ValueError, match=r"sarsa: alpha \(the step size\) given per run must have shape \(4,\), got \(3,\)"):
        rl.sarsa(mdp, alpha=torch.ones(3), epsilon=0.1, episodes=1, runs=4, generator=gen())
    with pytest.raises(ValueError, match=r"expected_sarsa: epsilon must be a finite real number >= 0 and <= 1, got 1.5"):
        rl.expected_sarsa(mdp, alpha=0.5, epsilon=torch.tensor([0.1, 1.5]), episodes=1, runs=2, generator=gen())


def test_sampling_needs_a_generator_and_leaves_the_global_rng_alone():
    """No default stream: every function that samples names its generator, and never reads torch's global RNG."""
    walk, cliff = rl.random_walk(), rl.cliff_walking()
    with pytest.raises(TypeError, match=r"td0: generator must be a torch.Generator .*got NoneType"):
        rl.td0(walk, rl.uniform_policy(walk), alpha=0.1, episodes=1, runs=1, generator=None)
    with pytest.raises(TypeError, match=r"sample_transitions: generator must be a torch.Generator .*got int"):
        rl.sample_transitions(walk, rl.uniform_policy(walk), episodes=1, runs=1, generator=0)
    with pytest.raises(TypeError, match=r"sarsa: generator must be a torch.Generator"):
        rl.sarsa(cliff, alpha=0.5, epsilon=0.1, episodes=1, runs=1, generator=None)
    with pytest.raises(TypeError, match=r"greedy_return: generator must be a torch.Generator"):
        rl.greedy_return(cliff, torch.zeros(1, 48, 4), generator=None)
    state = torch.random.get_rng_state()
    first = rl.td0(walk, rl.uniform_policy(walk), alpha=0.1, episodes=5, runs=3, generator=gen(12))
    control = rl.q_learning(cliff, alpha=0.5, epsilon=0.1, episodes=3, runs=2, generator=gen(13))
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(first, rl.td0(walk, rl.uniform_policy(walk), alpha=0.1, episodes=5, runs=3, generator=gen(12)))
    torch.testing.assert_close(control.q, rl.q_learning(cliff, alpha=0.5, epsilon=0.1, episodes=3, runs=2, generator=gen(13)).q)


# --- mini-batch prediction and step-size schedules -------------------------------------------------

@pytest.mark.parametrize("method", ["td", "mc"])
def test_minibatch_prediction_matches_a_plain_loop(method):
    mdp = rl.random_walk(9, left_reward=-1.0)
    phi = features.state_aggregation(9, 3)
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=50, runs=6, generator=gen(3), max_steps=40)
    learners, pool = 2, 3
    got = rl.minibatch_prediction(stream, phi, alpha=0.3, gamma=0.9, learners=learners, method=method)
    G = rl.prediction.returns(stream, 0.9)
    for k in range(learners):
        w = torch.zeros(3, dtype=torch.float64)
        for t in range(got.shape[0] - 1):
            update = torch.zeros(3, dtype=torch.float64)
            for r in range(k * pool, (k + 1) * pool):
                s, s2 = int(stream.states[t, r]), int(stream.next_states[t, r])
                target = float(stream.rewards[t, r]) + 0.9 * float(phi[s2] @ w) if method == "td" else float(G[t, r])
                update += (target - float(phi[s] @ w)) * phi[s]
            w = w + 0.3 * update / pool
            torch.testing.assert_close(got[t + 1, k], w)


def test_minibatch_prediction_rejects_bad_input():
    mdp = rl.random_walk()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=2, runs=4, generator=gen())
    with pytest.raises(ValueError, match="minibatch_prediction: learners=3 must divide"):
        rl.minibatch_prediction(stream, features.tabular(5), alpha=0.1, learners=3, method="td")
    with pytest.raises(ValueError, match="minibatch_prediction: method must be one of"):
        rl.minibatch_prediction(stream, features.tabular(5), alpha=0.1, learners=2, method="q")
    with pytest.raises(TypeError, match="minibatch_prediction: stream must be a Transitions"):
        rl.minibatch_prediction(stream.states, features.tabular(5), alpha=0.1, learners=2, method="td")
    with pytest.raises(ValueError, match="minibatch_prediction: steps=100000 exceeds"):
        rl.minibatch_prediction(stream, features.tabular(5), alpha=0.1, learners=2, method="td", steps=100_000)


def test_sample_transitions_stops_at_max_steps():
    mdp = rl.random_walk_1000()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=10**6, runs=3, generator=gen(), max_steps=17)
    assert stream.states.shape == (17, 3)


def test_visit_count_schedule_is_one_over_n_per_state():
    # With alpha = 1/n, tabular MC's estimate of a state is the plain average of its returns.
    mdp = rl.random_walk()
    stream = rl.sample_transitions(mdp, rl.uniform_policy(mdp), episodes=30, runs=2, generator=gen(5))
    w = rl.prediction.linear_prediction(stream, features.tabular(5), alpha=lambda n: 1 / n, gamma=1.0,
                                        init=torch.tensor(0.5, dtype=torch.float64), method="mc", episodes=30)
    G = rl.prediction.returns(stream, 1.0)
    for r in range(2):
        for s in range(1, 6):
            seen = (stream.states[:, r] == s) & stream.active[:, r]
            torch.testing.assert_close(w[r, -1, s - 1], G[seen, r].mean())


# --- every vectorised learner against a plain per-run loop on the same experience -----------------

def _plain_control(trace, run, method, alpha, epsilon, gamma, S, A, terminal):
    """The textbook loop for one run, replaying that run's recorded experience; it also checks that
    each recorded action was epsilon-greedy-possible (with epsilon = 0: a best action) under its own Q."""
    Q = [[0.0] * A for _ in range(S)]
    for t in range(trace["states"].shape[0]):
        if not trace["active"][t, run]:
            break
        s, a = int(trace["states"][t, run]), int(trace["actions"][t, run])
        r, s2, a2 = float(trace["rewards"][t, run]), int(trace["next_states"][t, run]), int(trace["next_actions"][t, run])
        if epsilon == 0.0 and (method != "sarsa" or t == 0):
            assert Q[s][a] == max(Q[s]), f"step {t}: action {a} is not greedy in state {s}"
        if epsilon == 0.0 and method == "sarsa" and not terminal[s2]:  # Sarsa picks A' before updating Q(S, A)
            assert Q[s2][a2] == max(Q[s2]), f"step {t}: next action {a2} is not greedy in state {s2}"
        if terminal[s2]:
            estimate = 0.0
        elif method == "sarsa":
            estimate = Q[s2][a2]
        elif method == "q_learning":
            estimate = max(Q[s2])
        else:
            best = [b for b in range(A) if Q[s2][b] == max(Q[s2])]
            estimate = sum((epsilon / A + (1 - epsilon) * (b in best) / len(best)) * Q[s2][b] for b in range(A))
        Q[s][a] += alpha * (r + gamma * estimate - Q[s][a])
        more = t + 1 < trace["states"].shape[0] and bool(trace["active"][t + 1, run])
        if epsilon == 0.0 and method == "sarsa" and terminal[s2] and more:  # a fresh episode's first action
            start = int(trace["states"][t + 1, run])
            assert Q[start][a2] == max(Q[start]), f"step {t + 1}: first action {a2} is not greedy in state {start}"
    return torch.tensor(Q, dtype=torch.float64)


@pytest.mark.parametrize("epsilon", [0.0, 0.2])
@pytest.mark.parametrize("method", ["sarsa", "q_learning", "expected_sarsa"])
def test_td_control_matches_a_per_run_python_loop(method, epsilon):
    mdp = rl.windy_gridworld() if epsilon == 0.0 else rl.cliff_walking()
    runs, alpha, gamma = 3, 0.5, 0.95
    result = rl.td_control(mdp, method, alpha=alpha, epsilon=epsilon, gamma=gamma, episodes=4, runs=runs,
                           generator=gen(7), record=True)
    for run in range(runs):
        q = _plain_control(result.trace, run, method, alpha, epsilon, gamma, mdp.n_states, mdp.n_actions, mdp.terminal.tolist())
        torch.testing.assert_close(result.q[run], q)
        steps = int(result.trace["active"][:, run].sum())
        assert steps == int(result.lengths[run].sum())
        torch.testing.assert_close(result.trace["rewards"][:steps, run].sum(), result.rewards[run].sum())


def test_sarsa_takes_the_action_it_bootstrapped_from():
    mdp = rl.cliff_walking()
    trace = rl.td_control(mdp, "sarsa", alpha=0.5, epsilon=0.1, episodes=3, runs=2, generator=gen(2), record=True).trace
    going = trace["active"][1:] & ~mdp.terminal[trace["next_states"][:-1]]
    assert (trace["actions"][1:][going] == trace["next_actions"][:-1][going]).all()
    assert (trace["states"][1:][going] == trace["next_states"][:-1][going]).all()


def test_constant_alpha_mc_matches_a_per_run_python_loop():
    mdp = rl.random_walk()
    policy = rl.uniform_policy(mdp)
    stream = rl.sample_transitions(mdp, policy, episodes=6, runs=3, generator=gen(4))
    V = rl.prediction.linear_prediction(stream, features.tabular(5), alpha=0.1, gamma=0.9, method="mc", episodes=6,
                                        init=torch.tensor(0.5, dtype=torch.float64))
    for run in range(3):
        values, episode, snapshots = [0.0] + [0.5] * 5 + [0.0], [], []
        for t in range(stream.states.shape[0]):
            if not stream.active[t, run]:
                break
            episode.append((int(stream.states[t, run]), float(stream.rewards[t, run])))
            if stream.ends[t, run]:  # the textbook: returns backwards, then the updates in time order
                G, targets = 0.0, []
                for s, r in reversed(episode):
                    G = r + 0.9 * G
                    targets.append((s, G))
                for s, G in reversed(targets):
                    values[s] += 0.1 * (G - values[s])
                snapshots.append(values[1:-1])
                episode = []
        torch.testing.assert_close(V[run, 1:], torch.tensor(snapshots, dtype=torch.float64))


def test_dqn_ablations_run_and_reject_bad_flags():
    grid = rl.grid_world()
    for kwargs in (dict(replay=False), dict(target_every=1)):
        result = rl.dqn(grid, gamma=0.9, steps=5, envs=4, batch=8, hidden=8, seed=0, **kwargs)
        assert result.q.shape == (25, 5) and torch.isfinite(result.losses).all()
    with pytest.raises((TypeError, ValueError), match="dqn: replay"):
        rl.dqn(grid, gamma=0.9, steps=5, seed=0, replay="no")
    with pytest.raises((TypeError, ValueError), match="td_control: record"):
        rl.td_control(rl.cliff_walking(), "sarsa", alpha=0.5, epsilon=0.1, episodes=1, runs=1, generator=gen(), record=1.5)
