"""One iteration of a lone chain or of vectorised chains (:mod:`numpyro_dilation.iteration`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import random
from jax.scipy.special import logsumexp

from numpyro_dilation import dilation, iteration, pooling
from numpyro_dilation.adaptation import window_adapter
from numpyro_dilation.metric import make_metric
from numpyro_dilation.modes import chain_search_cost, cluster_gaussians, fit_cost, mode_log_probs
from numpyro_dilation.trajectory import TrajectoryMove

from .test_moves import I0, make_settings, normal_potential, start

#: The heavy mode of :func:`two_wells`.
HEAVY = jnp.array([6.0, 0.0])


def two_wells(z):
    """Unit Gaussians at the origin (a ten-thousandth of the mass) and at :data:`HEAVY`."""
    x = z["x"]
    return -logsumexp(
        jnp.array([jnp.log(1e-4) - 0.5 * jnp.sum(x**2), -0.5 * jnp.sum((x - HEAVY) ** 2)])
    )


def two_modes(z):
    """Equal unit Gaussians at ``-HEAVY`` and :data:`HEAVY`."""
    x = z["x"]
    return -logsumexp(
        jnp.array([-0.5 * jnp.sum((x + HEAVY) ** 2), -0.5 * jnp.sum((x - HEAVY) ** 2)])
    )


def vectorised(
    settings, adapter, x0, num_anneal, num_warmup, num_slots, potential=normal_potential
):
    """Vectorised chains at ``x0`` (one row each), as the kernel starts them."""
    keys = random.split(random.PRNGKey(0), x0.shape[0])
    state = jax.jit(
        jax.vmap(
            lambda key, x: start(
                settings, adapter, num_anneal, num_warmup, x, key=key, potential=potential
            )
        )
    )(keys, x0)
    return state._replace(modes=pooling.init(state.adapt_state, state.y, num_slots))


def lone_at(x, potential, num_warmup=40):
    """One chain at ``x`` at ``t = 1``."""
    settings = make_settings("hmc")
    adapter = window_adapter(0, num_warmup)
    return settings, adapter, start(settings, adapter, 0, num_warmup, x, key=2, potential=potential)


def test_search_from_keeps_a_chain_at_the_bottom_of_the_only_basin():
    settings, _, state = lone_at(jnp.zeros(2), normal_potential)
    found = jax.jit(lambda s: iteration.search_from(settings, s, s.i + 9, normal_potential))(state)
    np.testing.assert_array_equal(found.y, state.y)
    np.testing.assert_array_equal(found.z["x"], state.y)
    assert float(found.potential_energy) == float(state.potential_energy)
    np.testing.assert_array_equal(
        found.adapt_state.trajectory.center, state.adapt_state.trajectory.center
    )
    assert int(found.num_grad_evals) == int(state.num_grad_evals) + chain_search_cost(2)


def test_search_from_leaves_a_basin_of_negligible_mass():
    settings, _, state = lone_at(jnp.zeros(2), two_wells)
    found = jax.jit(lambda s: iteration.search_from(settings, s, s.i + 9, two_wells))(state)
    assert float(jnp.linalg.norm(found.y - HEAVY)) < 0.1
    np.testing.assert_array_equal(found.z["x"], found.y)
    assert float(found.potential_energy) == pytest.approx(float(two_wells({"x": found.y})))
    # the ChEES centre follows the chain into its new basin
    np.testing.assert_array_equal(found.adapt_state.trajectory.center, found.y)


def scaled_normal(z):
    """A Gaussian whose scales (1, 2, 0.5) the metric learns exactly (its gradient is linear)."""
    return 0.5 * jnp.sum((z["x"] / jnp.array([1.0, 2.0, 0.5])) ** 2)


def test_lone_step_searches_at_the_end_of_annealing_and_closes_the_windows():
    settings = make_settings("mala")
    num_anneal, num_warmup = 20, 100
    adapter = window_adapter(num_anneal, num_warmup)
    x0 = jnp.array([0.5, -1.0, 0.2])
    state = start(settings, adapter, num_anneal, num_warmup, x0, potential=scaled_normal)
    run = jax.jit(lambda s: iteration.lone_step(settings, adapter, s, scaled_normal))
    ends = [i for i in range(num_warmup) if bool(adapter.is_window_end(i))]
    assert len(ends) >= 2  # one window in the annealing, one after
    changes = []
    for i in range(num_warmup + 2):
        new = run(state)
        searched = chain_search_cost(3) if i == num_anneal - 1 else 0
        assert int(new.num_grad_evals) == int(state.num_grad_evals) + 1 + searched
        if not np.array_equal(
            new.adapt_state.inverse_mass_matrix, state.adapt_state.inverse_mass_matrix
        ):
            changes.append(i)
        if i in ends:
            # a closed window's Welford sums start again
            assert int(new.adapt_state.position_state[-1]) == 0
        state = new
    assert changes == ends
    np.testing.assert_allclose(state.adapt_state.inverse_mass_matrix, [1.0, 4.0, 0.25], rtol=0.2)


def test_pooled_start_gives_all_chains_one_step_size_and_length():
    x0 = jnp.array([[0.5, 0.0], [1.0, 1.0], [-1.0, 0.5], [0.0, -2.0]])
    for stationary in ("hmc", "mala"):
        settings = make_settings(stationary)
        adapter = window_adapter(10, 40)
        state = vectorised(settings, adapter, x0, 10, 40, 2)
        adapt = state.adapt_state
        state = state._replace(
            adapt_state=adapt._replace(
                curvature=jnp.array([1.0, 4.0, 9.0, 100.0]),
                step_size=jnp.array([0.1, 0.2, 0.3, 0.4]),
            )
        )
        started = jax.jit(lambda s, settings=settings: iteration.pooled_start(settings, s))(state)
        median = 6.5  # of the curvatures
        expected = 1.0 / median if stationary == "mala" else median**-0.5
        np.testing.assert_allclose(started.adapt_state.step_size, np.full(4, expected), rtol=1e-6)
        length = started.adapt_state.trajectory.length
        if stationary == "hmc":
            np.testing.assert_allclose(length, np.full(4, median**-0.5), rtol=1e-6)
        else:
            np.testing.assert_array_equal(length, adapt.trajectory.length)


def test_pooled_update_shares_one_step_size_and_length_within_each_mode():
    settings = make_settings("hmc")
    adapter = window_adapter(0, 40)
    x0 = jnp.array([[0.5, 0.0], [1.0, 1.0], [-1.0, 0.5], [0.0, -2.0]])
    state = vectorised(settings, adapter, x0, 0, 40, 2)
    state = state._replace(modes=state.modes._replace(label=jnp.array([0, 0, 1, 1])))
    move = TrajectoryMove(
        y=state.y,
        potential_energy=state.potential_energy,
        grad=state.y_grad,
        accept_prob=jnp.array([0.9, 0.95, 0.1, 0.2]),
        diverging=jnp.zeros(4, bool),
        proposal=state.y * 1.5,
        proposal_grad=state.y_grad,
        proposal_potential=state.potential_energy,
        proposal_velocity=state.y,
        num_steps=jnp.full(4, 5),
        uturn_steps=jnp.array([3, 0, 2, 0]),
    )
    updated = jax.jit(
        lambda s: iteration.pooled_update(
            settings, adapter, s._replace(modes=None), s, move, jnp.array(3)
        )
    )(state)
    step = np.asarray(updated.adapt_state.step_size)
    length = np.asarray(updated.adapt_state.trajectory.length)
    assert step[0] == step[1] and step[2] == step[3]
    assert length[0] == length[1] and length[2] == length[3]
    # the mode that accepts more takes the longer step
    assert step[0] > step[2]
    assert length[0] != 1.0 and length[2] != 1.0


def test_pooled_window_end_refits_the_modes_only_after_the_annealing():
    settings = make_settings("mala")
    num_anneal, num_warmup = 10, 60
    adapter = window_adapter(num_anneal, num_warmup)
    x0 = jnp.array([[-4.0, 0.5], [-3.5, -0.5], [-4.5, 0.0], [-4.0, 1.0]])
    x0 = jnp.concatenate([x0, -x0])
    state = vectorised(settings, adapter, x0, num_anneal, num_warmup, 4, two_modes)
    state = state._replace(t=jnp.ones(8), y=x0, z={"x": x0})

    def close(s, i, settings=settings):
        return iteration.pooled_window_end(settings, adapter, s, i, num_anneal, two_modes)

    close = jax.jit(close)
    annealing, stationary = close(state, jnp.array(5)), close(state, jnp.array(30))
    np.testing.assert_array_equal(annealing.modes.label, np.zeros(8))
    np.testing.assert_array_equal(annealing.num_grad_evals, state.num_grad_evals)
    labels = np.asarray(stationary.modes.label)
    assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]
    cost = -(-fit_cost(8, 4) // 8)
    np.testing.assert_array_equal(stationary.num_grad_evals, state.num_grad_evals + cost)
    # a single slot has nothing to refit
    one = state._replace(modes=pooling.init(state.adapt_state, state.y, 1))
    single = jax.jit(lambda s: iteration.pooled_window_end(settings, adapter, s, 30, 10, two_modes))
    np.testing.assert_array_equal(single(one).modes.label, np.zeros(8))
    np.testing.assert_array_equal(single(one).num_grad_evals, state.num_grad_evals)


def test_label_log_weight_is_the_label_probability_where_on_and_zero_elsewhere():
    metric = jax.tree.map(lambda x: jnp.stack([x, x]), make_metric(jnp.ones(2)))
    gaussians = cluster_gaussians(
        jnp.stack([-HEAVY, HEAVY]), metric, jnp.log(jnp.array([0.5, 0.5])), jnp.array([0, 1])
    )
    y = jnp.array([3.0, 0.0])
    on, off = jnp.array(True), jnp.array(False)
    assert float(iteration.label_log_weight(gaussians, off, 0, y)) == 0.0
    near, far = (float(iteration.label_log_weight(gaussians, on, k, y)) for k in (1, 0))
    assert near == pytest.approx(float(mode_log_probs(gaussians, y[None])[0, 1]))
    assert far < -20.0 < near <= 0.0


def test_pooled_chain_transition_stops_each_chain_at_its_own_number_of_steps():
    settings = make_settings("hmc")
    adapter = window_adapter(0, 40)
    state = vectorised(settings, adapter, jnp.array([[0.5, 0.0], [1.0, 1.0]]), 0, 40, 1)
    chains = state._replace(modes=None)
    run = jax.jit(
        lambda s: jax.vmap(
            lambda chain, n, label: iteration.pooled_chain_transition(
                settings, adapter, I0, I0, 40, 5, normal_potential, None, chain, n, label
            )
        )(s, jnp.array([2, 5]), jnp.zeros(2, jnp.int32))
    )
    new, move = run(chains)
    np.testing.assert_array_equal(move.num_steps, [2, 5])
    np.testing.assert_array_equal(new.num_grad_evals, chains.num_grad_evals + jnp.array([2, 5]))
    np.testing.assert_array_equal(new.i, [1, 1])


def test_pooled_step_pools_the_chains_when_the_annealing_ends():
    settings = make_settings("mala")
    num_anneal, num_warmup = 3, 40
    adapter = window_adapter(num_anneal, num_warmup)
    x0 = jnp.array([[0.5, 0.0], [1.0, 1.0], [-1.0, 0.5], [0.0, -2.0]])
    state = vectorised(settings, adapter, x0, num_anneal, num_warmup, 1)
    run = jax.jit(lambda s: iteration.pooled_step(settings, adapter, s, normal_potential))
    for k in range(num_anneal):
        state = run(state)
        np.testing.assert_array_equal(state.i, np.full(4, k + 1))
        assert len(set(np.asarray(state.t))) == 1  # one level for all chains
    np.testing.assert_array_equal(state.t, np.ones(4))
    step = np.asarray(state.adapt_state.step_size)
    assert np.all(step == step[0])
    assert float(step[0]) == pytest.approx(1.0 / float(jnp.median(state.adapt_state.curvature)))


def test_step_runs_a_lone_chain_or_vectorised_chains():
    settings = make_settings("mala")
    adapter = window_adapter(3, 20)
    lone = start(settings, adapter, 3, 20)
    chains = vectorised(settings, adapter, jnp.array([[0.5, 0.0], [1.0, 1.0]]), 3, 20, 1)

    def program(fn, state):
        # the traced computation, without compiling it
        return str(jax.make_jaxpr(fn)(state))

    def step(batched):
        return lambda s: iteration.step(settings, adapter, s, normal_potential, batched)

    lone_step = program(lambda s: iteration.lone_step(settings, adapter, s, normal_potential), lone)
    pooled_step = program(
        lambda s: iteration.pooled_step(settings, adapter, s, normal_potential), chains
    )
    assert lone_step != pooled_step
    assert program(step(False), lone) == lone_step
    assert program(step(True), chains) == pooled_step
    # build_kernel's step is this step
    kernel_step = dilation.build_kernel(settings, adapter).step
    assert program(lambda s: kernel_step(s, normal_potential, True), chains) == pooled_step
