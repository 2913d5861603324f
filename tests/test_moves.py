"""One chain's move and transition (:mod:`numpyro_dilation.moves`), each function alone."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import random

from numpyro_dilation import dilation, moves, path, trajectory
from numpyro_dilation.adaptation import window_adapter
from numpyro_dilation.state import DilationSettings
from numpyro_dilation.trajectory import TrajectoryMove

X0 = jnp.array([0.5, -1.0, 1.0])
#: Iteration 0 as the kernel passes it: an array (the state's counter).
I0 = jnp.array(0)


def normal_potential(z):
    return 0.5 * jnp.sum(z["x"] ** 2)


def normal_potential_flat(y):
    return 0.5 * jnp.sum(y**2)


def make_settings(stationary: str = "hmc", **options) -> DilationSettings:
    """The kernel's default annealing settings with the given stationary kernel."""
    return DilationSettings(
        eps=0.75,
        alpha=0.75,
        levels=path.make_schedule("geometric", 0.03),
        stationary=stationary,
        **options,
    )


def start(
    settings,
    adapter,
    num_anneal,
    num_warmup,
    x0=X0,
    step_size=0.1,
    key=0,
    potential=normal_potential,
):
    """One chain's state from :func:`numpyro_dilation.dilation.init` at ``x0``; ``key`` is a
    seed or a PRNG key."""
    return dilation.init(
        random.PRNGKey(key) if isinstance(key, int) else key,
        {"x": x0},
        potential,
        adapter,
        settings,
        center=None,
        step_size=step_size,
        inverse_mass_matrix=None,
        num_anneal_steps=num_anneal,
        num_warmup=num_warmup,
    )


def at_one(stationary="hmc", num_warmup=40, step_size=0.1, **options):
    """Settings, adapter and a state at ``t = 1`` (no annealing)."""
    settings = make_settings(stationary, **options)
    adapter = window_adapter(0, num_warmup)
    return settings, adapter, start(settings, adapter, 0, num_warmup, step_size=step_size)


def test_hmc_move_with_a_tiny_step_accepts_almost_surely():
    settings, _, state = at_one(step_size=1e-3)
    move, step_size, t_next, key = jax.jit(
        lambda s: moves.move_of(settings, s, 0, 0, 40, normal_potential, 5)
    )(state)
    assert float(move.accept_prob) > 0.999
    assert not bool(move.diverging)
    assert int(move.num_steps) == 5
    assert float(step_size) == pytest.approx(1e-3)
    assert float(t_next) == 1.0
    assert not np.array_equal(move.y, state.y)
    assert not np.array_equal(key, state.rng_key)


def test_hamiltonian_move_of_stops_at_its_own_number_of_steps_below_the_bound():
    settings, _, state = at_one(step_size=0.05)
    move, step = jax.jit(
        lambda s: moves.hamiltonian_move_of(
            settings, s, normal_potential_flat, 3, 7, None, random.PRNGKey(1)
        )
    )(state)
    assert int(move.num_steps) == 3
    assert float(step) == pytest.approx(0.05)
    # three leapfrog steps of 0.05, each moving by about 0.05 times the momentum
    assert 0.0 < float(jnp.linalg.norm(move.proposal - state.y)) < 3 * 0.05 * 6


def test_move_of_is_langevin_while_annealing_and_hmc_after():
    settings = make_settings("hmc")
    adapter = window_adapter(10, 40)
    state = start(settings, adapter, 10, 40)
    run = jax.jit(lambda s, i: moves.move_of(settings, s, i, 10, 40, normal_potential, 4))
    move, _, t_next, _ = run(state, 0)
    assert int(move.num_steps) == 1
    np.testing.assert_array_equal(move.proposal_velocity, jnp.zeros(3))
    assert float(state.t) < float(t_next) < 1.0
    move, _, t_next, _ = run(state._replace(t=jnp.ones(())), 10)
    assert int(move.num_steps) == 4
    assert float(t_next) == 1.0


def test_langevin_move_of_is_unadjusted_only_while_annealing_or_sampling_without_adjust():
    settings = make_settings("mala", adjust=False)
    adapter = window_adapter(10, 40)
    state = start(settings, adapter, 10, 40)
    pag = moves.flat_potential_and_grad(normal_potential_flat, lambda y: y)

    @jax.jit
    def accept(s, i, t_next):
        move, step = moves.langevin_move_of(settings, s, i, 10, 40, t_next, pag, None, s.rng_key)
        return move.accept_prob, move.diverging, step

    # annealing: unadjusted, the step sized by the curvature and scaled back to z
    t_next = path.level_after(0, 10, settings.levels, state.y.dtype)
    accept_prob, diverging, step = accept(state, 0, t_next)
    assert float(accept_prob) == 1.0 and not bool(diverging)
    expected = path.rescaled_step_size(0.75, 0.75, state.t, state.adapt_state.curvature) * state.t
    assert float(step) == pytest.approx(float(expected))
    # at t = 1 a step of 3 on a standard normal: MALA rejects most, unless sampling unadjusted
    big = state._replace(
        t=jnp.ones(()),
        potential_energy=normal_potential_flat(state.y),
        adapt_state=state.adapt_state._replace(step_size=jnp.array(3.0)),
    )
    one = jnp.ones(())
    assert float(accept(big, 20, one)[0]) < 0.5  # warmup: always adjusted
    assert float(accept(big, 50, one)[0]) == 1.0  # sampling with adjust=False


def test_a_diverging_move_gives_zero_chees_gradient():
    _, _, state = at_one()
    y = state.y
    move = TrajectoryMove(
        y=y,
        potential_energy=state.potential_energy,
        grad=state.y_grad,
        accept_prob=jnp.zeros(()),
        diverging=jnp.array(True),
        proposal=y + 1.0,
        proposal_grad=state.y_grad,
        proposal_potential=state.potential_energy,
        proposal_velocity=jnp.ones_like(y),
        num_steps=jnp.array(4),
        uturn_steps=jnp.array(0),
    )
    center = jnp.zeros_like(y)
    assert float(moves.chees_gradient_of(state, move, center)) == 0.0
    fine = moves.chees_gradient_of(state, move._replace(diverging=jnp.array(False)), center)
    expected = trajectory.chees_gradient(y, y + 1.0, jnp.ones_like(y), center, center, jnp.ones(3))
    assert float(fine) != 0.0
    assert float(fine) == pytest.approx(float(expected))


def test_trajectory_jitter_spreads_over_the_unit_interval_without_repeating():
    jitter = np.asarray(jax.vmap(moves.trajectory_jitter)(jnp.arange(64)))
    assert np.all((jitter > 0.0) & (jitter <= 1.0))
    assert len(np.unique(jitter)) == 64
    assert np.max(np.diff(np.sort(np.concatenate([[0.0], jitter, [1.0]])))) <= 1 / 32


def test_steps_of_is_one_for_mala_and_the_jittered_length_for_hmc():
    settings, _, state = at_one("mala")
    assert moves.steps_of(settings, state.adapt_state, 3, 40) == 1
    settings, _, state = at_one("hmc", step_size=0.1)
    adapt = state.adapt_state
    traj = adapt.trajectory._replace(length=jnp.array(1.0), log_length_avg=jnp.log(3.0))
    adapt = adapt._replace(trajectory=traj)
    counts = set()
    for i in range(40, 44):
        warm = int(moves.steps_of(settings, adapt, i, 80))
        sampling = int(moves.steps_of(settings, adapt, i, 40))
        # the warmup's iterate (1) during the warmup, the averaged length (3) after it
        assert warm == int(trajectory.num_leapfrog_steps(i, 1.0, 0.1))
        assert sampling == int(trajectory.num_leapfrog_steps(i, 3.0, 0.1))
        assert 1 <= warm <= 10
        assert warm < sampling <= 30
        counts.add(warm)
    assert len(counts) > 1  # jittered


def test_warmup_update_restarts_step_and_length_from_the_curvature_while_annealing():
    settings = make_settings("hmc")
    adapter = window_adapter(10, 40)
    state = start(settings, adapter, 10, 40)
    move, *_ = moves.move_of(settings, state, 0, 10, 40, normal_potential, 1)
    adapt = jax.jit(
        lambda: moves.warmup_update(
            settings, adapter, jnp.array(True), I0, 10, state, move, False, state.adapt_state
        )
    )()
    assert float(adapt.step_size) == pytest.approx(float(jax.lax.rsqrt(adapt.curvature)))
    assert float(adapt.trajectory.length) == pytest.approx(float(jax.lax.rsqrt(adapt.curvature)))
    np.testing.assert_array_equal(adapt.trajectory.center, move.y)
    assert float(adapt.curvature) != float(state.adapt_state.curvature)


def test_warmup_update_of_pooled_chains_leaves_step_and_length_to_the_pool():
    settings, adapter, state = at_one("hmc", step_size=0.3)
    i = jnp.array(30)  # the ChEES centre (at the origin) has a memory by now
    move, *_ = moves.move_of(settings, state, i, 0, 40, normal_potential, 5)
    update = jax.jit(
        lambda pooled: moves.warmup_update(
            settings, adapter, jnp.array(False), i, 0, state, move, pooled, state.adapt_state
        ),
        static_argnums=0,
    )
    old = state.adapt_state
    pooled, alone = update(True), update(False)
    assert float(pooled.step_size) == float(old.step_size)
    assert float(pooled.trajectory.length) == float(old.trajectory.length)
    assert float(alone.step_size) != float(old.step_size)
    assert float(alone.trajectory.length) != float(old.trajectory.length)
    # both move their ChEES centre a step towards the chain
    np.testing.assert_array_equal(pooled.trajectory.center, alone.trajectory.center)
    np.testing.assert_allclose(alone.trajectory.center, move.y / 31, rtol=1e-6)
    # the curvature is only learnt while annealing
    assert float(alone.curvature) == float(old.curvature)


def test_transition_advances_i_and_keeps_t_at_one_after_annealing():
    settings = make_settings("hmc")
    num_anneal, num_warmup = 5, 20
    adapter = window_adapter(num_anneal, num_warmup)
    state = start(settings, adapter, num_anneal, num_warmup)
    run = jax.jit(
        lambda s: moves.transition(
            settings, adapter, s, s.i, num_anneal, num_warmup, normal_potential
        )
    )
    levels = []
    for k in range(num_anneal + 3):
        new = run(state)
        assert int(new.i) == k + 1
        assert int(new.num_grad_evals) == int(state.num_grad_evals) + int(new.num_steps)
        levels.append(float(new.t))
        state = new
    annealed = levels[:num_anneal]
    assert all(a < b for a, b in itertools.pairwise(annealed))
    assert levels[num_anneal - 1 :] == [1.0] * 4
    np.testing.assert_array_equal(state.z["x"], state.y)
    assert int(state.num_steps) >= 1


def test_transition_with_move_returns_the_move_it_made():
    settings, adapter, state = at_one("mala", step_size=0.5)
    run = jax.jit(
        lambda pooled: moves.transition_with_move(
            settings, adapter, state, 0, 0, 40, 1, None, normal_potential, pooled
        ),
        static_argnums=0,
    )
    (alone, move), (pooled, _) = run(False), run(True)
    np.testing.assert_array_equal(alone.y, move.y)
    assert float(alone.accept_prob) == float(move.accept_prob)
    # the same move; only the step size's adaptation differs (pooled chains share theirs)
    np.testing.assert_array_equal(pooled.y, alone.y)
    assert float(pooled.adapt_state.step_size) == 0.5
    assert float(alone.adapt_state.step_size) != 0.5
