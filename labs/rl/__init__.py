"""Chapter "Temporal-difference learning and value functions": tabular MDPs as tensors,
exact planning, TD and Monte Carlo prediction, TD control, linear and neural value functions.

Every learning function runs many independent runs at once (the ``runs``
argument): one tensor operation per time step for all of them.
"""

from . import double_q, features, offpolicy, traces
from .control import ControlResult, expected_sarsa, greedy_return, q_learning, sarsa, td_control
from .dqn import DQNResult, ReplayBuffer, dqn
from .mdp import TabularMDP, cliff_walking, grid_world, random_walk, random_walk_1000, sample_actions, windy_gridworld
from .planning import (
    epsilon_greedy_probs,
    evaluate_policy,
    greedy_policy,
    iterative_policy_evaluation,
    markov_reward_process,
    on_policy_distribution,
    uniform_policy,
    value_iteration,
)
from .prediction import (
    batch_fixed_points,
    gradient_mc,
    mc_fixed_point,
    mc_prediction,
    minibatch_prediction,
    sample_transitions,
    semi_gradient_td,
    td0,
    td_fixed_point,
)

__all__ = [
    "ControlResult", "DQNResult", "ReplayBuffer", "TabularMDP", "batch_fixed_points", "cliff_walking", "dqn",
    "epsilon_greedy_probs", "evaluate_policy", "expected_sarsa", "double_q", "features", "offpolicy", "traces", "gradient_mc", "greedy_policy",
    "greedy_return", "grid_world", "iterative_policy_evaluation", "markov_reward_process", "mc_fixed_point",
    "mc_prediction", "minibatch_prediction", "on_policy_distribution", "q_learning", "random_walk", "random_walk_1000",
    "sample_actions", "sample_transitions", "sarsa", "semi_gradient_td", "td0", "td_control",
    "td_fixed_point", "uniform_policy", "value_iteration", "windy_gridworld",
]
