"""The pure functions behind mode-aware pooling and mode moves (numpyro_dilation.modes),
the search of a lone chain, the start far from the posterior (numpyro_dilation.locate)
and the mode health check (numpyro_dilation.health)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from numpyro_dilation import locate, modes
from numpyro_dilation.health import SamplerHealthWarning, warn_if_modes_not_equilibrated
from numpyro_dilation.metric import make_metric


def gaussian_mixture(means, sds, weights):
    means, sds, weights = (jnp.asarray(a, jnp.float32) for a in (means, sds, weights))

    def potential(x):
        sq = jnp.sum((x - means) ** 2, -1) / sds**2
        d = x.shape[-1]
        return -logsumexp(jnp.log(weights) - 0.5 * sq - d * jnp.log(sds))

    return potential


def fit(y, potential, num_slots=16):
    y = jnp.asarray(y, jnp.float32)
    # one compiled program (op-by-op, the descent and k-means loops dispatch slowly)
    fit_map = jax.jit(modes.fit_map, static_argnums=(3, 4))
    mode_map, clusters = fit_map(
        jax.random.PRNGKey(0), y, jnp.ones(y.shape[1]), jax.value_and_grad(potential), num_slots
    )
    return np.asarray(mode_map.mode_of)[np.asarray(clusters)]


def num_modes(labels):
    return len(np.unique(labels))


# ------------------------------------------------------------------ the mode map


def test_one_gaussian_is_one_mode_and_separated_gaussians_are_several():
    rng = np.random.default_rng(0)
    assert num_modes(fit(rng.normal(size=(64, 3)), lambda x: 0.5 * jnp.sum(x**2))) == 1
    means = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])
    y = means[rng.integers(0, 3, 96)] + rng.normal(size=(96, 3))
    labels = fit(y, gaussian_mixture(means, [1.0, 1.0, 1.0], [0.3, 0.3, 0.4]))
    # each chain labelled by the mode it sits in
    truth = np.argmin(((y[:, None] - means) ** 2).sum(-1), 1)
    assert num_modes(labels) == 3
    for k in range(3):
        assert num_modes(labels[truth == k]) == 1


def test_modes_of_different_widths_and_curved_or_heavy_unimodal_shapes():
    rng = np.random.default_rng(1)
    means = np.array([[9.0, 0.0], [-7.0, 0.0]])
    y = np.concatenate(
        [0.1 * rng.normal(size=(8, 2)) + means[0], rng.normal(size=(56, 2)) + means[1]]
    )
    assert num_modes(fit(y, gaussian_mixture(means, [0.1, 1.0], [0.5, 0.5]))) == 2
    # a banana and a Student-t: one basin each, however k-means cuts them
    x = 3 * rng.normal(size=64)
    banana = np.c_[x, 0.2 * x**2 + 0.5 * rng.normal(size=64)]
    assert (
        num_modes(fit(banana, lambda z: z[0] ** 2 / 18 + (z[1] - 0.2 * z[0] ** 2) ** 2 / 0.5)) == 1
    )
    student = rng.standard_t(3, size=(64, 5))
    assert num_modes(fit(student, lambda z: 4.0 * jnp.log1p(jnp.sum(z**2) / 3))) == 1


def _normal_scale_potential(v):
    # a normal model's potential in (mean, log sd), flat priors: N = 400 draws of
    # mean 25 and sd 18.  Not convex: at a small sd the gradient in log sd is steep,
    # and a straight segment from a far point to the mode crosses a ridge.
    n, mean, var = 400.0, 25.0, 18.0**2
    b, u = v[0], v[1]
    return n * u + 0.5 * n * (var + (mean - b) ** 2) * jnp.exp(-2 * u)


def test_a_cluster_on_a_slope_joins_its_lowest_neighbour_and_bridges_nothing():
    # clusters 0-2 are modes (barriers between them), 3-5 lie out on slopes:
    # 3 has no barrier to modes 0 and 1, 4 none to 3 and mode 2, 5 none to 4
    level = jnp.array([0.0, 0.5, 0.2, 10.0, 20.0, 30.0, jnp.inf])
    links = [(0, 3), (1, 3), (3, 4), (2, 4), (4, 5)]
    linked = np.eye(7, dtype=bool)
    for i, j in links:
        linked[i, j] = linked[j, i] = True
    active = jnp.array([True] * 6 + [False])
    assert np.asarray(modes.components(jnp.asarray(linked)))[:6].tolist() == [0] * 6
    mode_of = np.asarray(modes.join_modes(jnp.asarray(linked), level, active))
    # 3 and 4 join their lowest neighbours (0 and 2), 5 follows 4 on down to 2
    assert mode_of.tolist() == [0, 1, 2, 0, 2, 2, 6]
    # clusters whose bottoms differ by less than BRIDGE_RISE bridge as before
    flat = jnp.array([0.0, 0.5, 0.2, 0.9, 1.0, 1.5, jnp.inf])
    assert np.asarray(modes.join_modes(jnp.asarray(linked), flat, active))[:6].tolist() == [0] * 6
    # and a slope of clusters stepping down to one mode is that mode
    chain = np.eye(7, dtype=bool)
    for i in range(5):
        chain[i, i + 1] = chain[i + 1, i] = True
    slope = jnp.array([0.0, 2.0, 4.0, 6.0, 8.0, 10.0, jnp.inf])
    assert np.asarray(modes.join_modes(jnp.asarray(chain), slope, active))[:6].tolist() == [0] * 6


def test_chains_far_out_in_heavy_tails_do_not_join_the_modes_into_one():
    """Regression: on a Student-t mixture (df = 3) moved 100 mode widths from the
    start, chains still out in the tails at the end of warmup ended their descent on
    slopes with no barrier to either of two modes, and the map joined all three modes
    through them (no mode moves ran; mode-weight TV 0.03 instead of 0.005)."""
    d, df = 10, 3.0
    means = np.zeros((3, d))
    means[0, 0], means[1, :2], means[2, 0] = 13.0, [1.0, 12.0], -11.0
    log_weights = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    mu = jnp.asarray(means, jnp.float32)

    def potential(x):
        sq = jnp.sum((x - mu) ** 2, -1)
        return -logsumexp(log_weights - 0.5 * (df + d) * jnp.log1p(sq / df))

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 48)
    in_modes = means[truth] + 0.5 * rng.normal(size=(48, d))
    direction = rng.normal(size=(16, d))
    in_tails = 1000.0 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    labels = fit(np.concatenate([in_modes, in_tails]), potential)
    mode_of_chain = labels[:48]
    assert [num_modes(mode_of_chain[truth == k]) for k in range(3)] == [1, 1, 1]
    assert num_modes(mode_of_chain) == 3


def test_a_far_flat_slope_of_a_nonconvex_potential_is_no_basin_worth_chains():
    """Regression: a scout's descent from a small scale parameter jumped over the mode
    onto a far, nearly flat slope of a regression's potential; the straight segment
    from there to the mode crosses a ridge that the barrier test takes for a basin's
    wall, and ensemble mode moved chains there (wrong draws on posteriordb's kidiq,
    earnings and mesquite)."""
    potential_and_grad = jax.value_and_grad(_normal_scale_potential)
    mode = jnp.array([25.0, jnp.log(18.0)])
    scale = jnp.array([0.9, 0.035])  # the posterior's sds
    # the jump: one unbounded descent step from 40 sds below the mode's log sd
    start = (mode - 40 * scale)[None]
    far, far_u, _, settled = modes.descend(potential_and_grad, start, scale, modes.DESCENT_STEPS)
    u_mode, _ = potential_and_grad(mode)
    assert float(far_u[0] - u_mode) > 100.0  # far above the mode, not back in it
    # the ridge: the barrier test alone would take it for a basin
    depth = modes.barriers(far[0], far_u[0], mode, u_mode, lambda v: potential_and_grad(v)[0], 9)
    assert float(depth) > modes.MIN_BARRIER
    worth = modes.worth_a_basin(far_u, settled, u_mode, 2)
    assert not bool(worth[0])
    # a genuine basin a few nats above the reference is worth chains; a descent
    # still falling is not, wherever it ended
    assert bool(modes.worth_a_basin(u_mode + 5.0, jnp.array(True), u_mode, 2))
    assert not bool(modes.worth_a_basin(u_mode + 5.0, jnp.array(False), u_mode, 2))
    near = (mode - 5 * scale)[None]
    _, _, _, settled = modes.descend(potential_and_grad, near, scale, 2)
    assert not bool(settled[0])
    _, _, _, settled = modes.descend(potential_and_grad, near, scale, modes.DESCENT_STEPS)
    assert bool(settled[0])


def test_barrier_depth_is_zero_on_a_convex_potential_and_the_valley_between_two_modes():
    potential = gaussian_mixture([[0.0], [8.0]], [1.0, 1.0], [0.5, 0.5])
    a, b = jnp.array([0.0]), jnp.array([8.0])
    depth = modes.barriers(a, potential(a), b, potential(b), potential, 15)
    # the potential at the midpoint, 4 sd from both modes, stands 8 - log(2) nats higher
    np.testing.assert_allclose(depth, 8.0 - np.log(2.0), atol=0.05)
    convex = modes.barriers(
        jnp.array([-3.0, 1.0]), 5.0, jnp.array([2.0, -1.0]), 2.5, lambda x: 0.5 * jnp.sum(x**2), 9
    )
    assert float(convex) <= 1e-6


# ------------------------------------------------------------------ mode moves


def gaussians_of(means, covs, weights, mode_of=None):
    covs = jnp.asarray(covs, jnp.float32)
    metric = jax.vmap(make_metric)(covs)
    mode_of = jnp.arange(len(weights)) if mode_of is None else jnp.asarray(mode_of)
    return modes.cluster_gaussians(
        jnp.asarray(means, jnp.float32), metric, jnp.log(jnp.asarray(weights, jnp.float32)), mode_of
    )


def map_of_modes(means):
    """A mode map with one cluster per mode, its bottom at the mode's mean."""
    k = len(means)
    return modes.ModeMap(
        centers=jnp.asarray(means, jnp.float32),
        mode_of=jnp.arange(k),
        scale=jnp.ones(len(means[0])),
        num_clusters=jnp.asarray(k),
        bottom=jnp.asarray(means, jnp.float32),
        bottom_potential=jnp.zeros(k),
    )


def test_other_cluster_is_uniform_over_the_other_active_clusters():
    active = jnp.array([True, False, True, True, True])
    u = jax.random.uniform(jax.random.PRNGKey(0), (40000,))
    picks = np.asarray(modes.other_cluster(u, jnp.full(40000, 2), active))
    counts = np.bincount(picks, minlength=5) / len(picks)
    np.testing.assert_allclose(counts, [1 / 3, 0, 0, 1 / 3, 1 / 3], atol=0.01)


def test_a_hop_and_its_reverse_are_inverse_maps_with_opposite_jacobians():
    means = [[0.0, 0.0], [10.0, 3.0], [-4.0, 9.0]]
    covs = [[[1.0, 0.5], [0.5, 2.0]], [[0.04, 0.0], [0.0, 0.25]], [[3.0, -1.0], [-1.0, 1.0]]]
    gaussians = gaussians_of(means, covs, [0.2, 0.5, 0.3])
    mode_map = map_of_modes(means)
    y = jnp.array([[0.3, -0.4], [0.5, 0.2]])
    forward, log_jac, valid = modes.hop_proposal(jnp.array([0.2, 0.9]), y, gaussians, mode_map)
    assert np.all(np.asarray(valid))
    # from the landing point, the reverse draw picks cluster 0 back and maps exactly back
    u_back = jnp.zeros(2)  # the first other cluster: 0, whatever the landing cluster
    back, log_jac_back, _ = modes.hop_proposal(u_back, forward, gaussians, mode_map)
    np.testing.assert_allclose(back, y, atol=1e-5)
    np.testing.assert_allclose(log_jac + log_jac_back, 0.0, atol=1e-5)


def test_mode_moves_alone_keep_a_two_mode_mixture_exact():
    """Start from exact draws and apply only mode moves: the law must not change."""
    means = np.array([[-5.0, 0.0], [6.0, 2.0]])
    covs = np.array([[[1.0, 0.6], [0.6, 1.0]], [[0.25, 0.0], [0.0, 2.0]]])
    weights = np.array([0.3, 0.7])

    def potential(x):
        logs = []
        for k in range(2):
            diff = x - means[k]
            logs.append(
                jnp.log(weights[k])
                - 0.5 * diff @ np.linalg.inv(covs[k]) @ diff
                - 0.5 * np.log(np.linalg.det(covs[k]))
            )
        return -logsumexp(jnp.stack(logs))

    # proposals fitted a little off, so that the moves are not perfect draws
    gaussians = gaussians_of(means + 0.3, covs * 1.5, [0.5, 0.5])
    mode_map = map_of_modes(means)
    rng = np.random.default_rng(3)
    n = 4000
    k = rng.choice(2, n, p=weights)
    y = jnp.asarray(
        means[k] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs[k]), rng.normal(size=(n, 2))),
        jnp.float32,
    )
    pag = jax.vmap(jax.value_and_grad(potential))
    pe, grad = pag(y)
    step = jax.jit(
        lambda key, y, pe, g: modes.mode_moves(
            key, y, pe, g, gaussians, mode_map, jnp.array([0.5, 0.5]), jax.value_and_grad(potential)
        )
    )
    accepted = 0
    for it in range(30):
        move = step(jax.random.PRNGKey(it), y, pe, grad)
        y, pe, grad = move.y, move.potential_energy, move.grad
        accepted += int(move.accepted.sum())
    assert accepted > 0.2 * 30 * n
    frac = float(np.mean(np.asarray(y[:, 0]) > 0))
    assert abs(frac - weights[1]) < 4.5 * np.sqrt(weights[1] * (1 - weights[1]) / n)
    inside = np.asarray(y[np.asarray(y[:, 0]) > 0])
    np.testing.assert_allclose(inside.mean(0), means[1], atol=4.5 * np.sqrt(2.0 / len(inside)))


def test_mode_log_probs_are_a_distribution_over_the_modes():
    gaussians = gaussians_of(
        [[0.0], [3.0], [9.0]], [[[1.0]], [[1.0]], [[4.0]]], [0.2, 0.3, 0.5], mode_of=[0, 0, 2]
    )
    y = jnp.linspace(-3, 12, 31)[:, None]
    probs = np.exp(np.asarray(modes.mode_log_probs(gaussians, y)))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.all(probs[:, 1] == 0)  # slot 1 is no mode
    assert probs[0, 0] > 0.99 and probs[-1, 2] > 0.99
    # one mode at a time, as a chain's local move asks: the same numbers
    for k in (0, 1, 2):
        one = np.exp(jax.vmap(lambda yy, k=k: modes.mode_log_prob(gaussians, yy, k))(y))
        np.testing.assert_allclose(one, probs[:, k], rtol=1e-5, atol=1e-7)


def test_drawn_mode_labels_follow_the_mode_probabilities():
    # slot 3 is an empty cluster (no mass), the only one of mode 1
    gaussians = gaussians_of(
        [[0.0], [3.0], [9.0], [4.0]],
        [[[1.0]], [[1.0]], [[4.0]], [[1.0]]],
        [0.2, 0.3, 0.5, 0.0],
        mode_of=[0, 0, 2, 1],
    )
    n = 20_000
    # three positions: in mode 0, between the modes and in mode 2
    y = jnp.repeat(jnp.array([[1.0], [5.5], [8.0]]), n, axis=0)
    labels = np.asarray(jax.jit(modes.draw_mode_labels)(jax.random.PRNGKey(0), gaussians, y))
    probs = np.exp(np.asarray(modes.mode_log_probs(gaussians, y[::n])))
    assert set(np.unique(labels)) <= {0, 2}  # never the slot that is no mode
    for j in range(3):
        freq = np.bincount(labels[j * n : (j + 1) * n], minlength=4) / n
        tol = 4.5 * np.sqrt(probs[j] * (1 - probs[j]) / n) + 1e-6
        assert np.all(np.abs(freq - probs[j]) <= tol), (j, freq, probs[j])


# ------------------------------------------------------------------ a lone chain, a far start


def test_a_lone_chain_continues_in_a_basin_drawn_by_its_mass():
    # a minor basin at -3 (5% of the mass) and the rest at +3
    potential = gaussian_mixture([[-3.0, 0.0], [3.0, 0.0]], [0.7, 0.7], [0.05, 0.95])
    pag = jax.value_and_grad(potential)

    def ends(x0):
        y = jnp.asarray(x0)
        u, g = pag(y)
        search = jax.jit(lambda key: modes.chain_search(key, y, u, g, jnp.ones(2), pag))
        return np.array([float(search(jax.random.PRNGKey(k))[0][0]) for k in range(40)])

    from_minor, from_major = ends([-3.0, 0.0]), ends([3.0, 0.0])
    # about 95% of the draws end in the major basin, from either start
    assert np.mean(from_minor > 0) > 0.8 and np.mean(from_major > 0) > 0.8
    assert np.mean(from_minor > 0) < 1.0 or np.mean(from_major > 0) < 1.0  # a draw, not a rule


def test_a_start_far_outside_a_badly_scaled_posterior_is_located():
    # data in the thousands, a scale parameter started 1e4 times too small
    data = jnp.asarray(np.random.default_rng(0).normal(20000.0, 2000.0, size=50), jnp.float32)

    def potential(z):
        mu, log_sigma = z
        return jnp.sum(0.5 * ((data - mu) / jnp.exp(log_sigma)) ** 2 + log_sigma)

    pag = jax.value_and_grad(potential)
    y = jnp.zeros(2)
    u, g = pag(y)
    assert float(locate.excess_along_gradient(pag, y, g)) > locate.FAR_NATS * 2
    out = locate.locate(pag, y, u, g)
    assert 0 < int(out.num_iterations) < locate.MAX_ITERATIONS
    assert abs(float(out.y[0]) - 20000.0) < 1000.0 and abs(float(out.y[1]) - np.log(2000.0)) < 1.0
    # a start inside the posterior only pays the check
    inside = locate.locate(pag, out.y, out.potential_energy, out.grad)
    assert int(inside.num_iterations) == 0 and int(inside.num_grad_evals) == 1


# ------------------------------------------------------------------ the mode health check


def caught(occupancy, ensemble=True):
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always", SamplerHealthWarning)
        warn_if_modes_not_equilibrated(1999, 1000, np.asarray(occupancy), ensemble)
    return [str(w.message) for w in ws]


def test_modes_no_chain_moved_between_are_reported_with_advice():
    occupancy = np.zeros((8, 2, 4), int)
    occupancy[:5, :, 0] = 500  # five chains always in mode 0, three always in mode 2
    occupancy[5:, :, 2] = 500
    [message] = caught(occupancy, ensemble=False)
    assert "2 separate modes" in message and "ensemble=True" in message
    assert caught(occupancy, ensemble=True)[0].count("more chains") == 1


def test_equilibrated_modes_are_silent_and_drifting_ones_are_reported():
    rng = np.random.default_rng(0)
    n = 64
    first = rng.binomial(500, 0.3, n)
    second = rng.binomial(500, 0.3, n)
    occupancy = np.zeros((n, 2, 3), int)
    occupancy[:, 0, 0], occupancy[:, 0, 1] = first, 500 - first
    occupancy[:, 1, 0], occupancy[:, 1, 1] = second, 500 - second
    assert caught(occupancy) == []
    drifting = occupancy.copy()
    late = rng.binomial(500, 0.45, n)
    drifting[:, 1, 0], drifting[:, 1, 1] = late, 500 - late
    [message] = caught(drifting)
    assert "changed between the halves" in message


@pytest.mark.parametrize("shape", [(1, 2, 3), (8, 2, 1)])
def test_a_single_chain_or_a_single_mode_is_never_reported(shape):
    assert caught(np.full(shape, 500)) == []


def test_coincidence_check_in_blocks_is_the_pairwise_one():
    """Many scouts are compared a block of rows at a time; the answer is the full
    pairwise comparison's (points within SAME_BOTTOM of an earlier candidate)."""
    rng = np.random.default_rng(0)
    m = modes.PAIRWISE_BLOCK * 2 + 37
    # clumps of near-coinciding points, so that many coincide
    centres = rng.normal(size=(40, 3)) * 5
    points = centres[rng.integers(0, 40, m)] + 0.1 * modes.SAME_BOTTOM * rng.normal(size=(m, 3))
    candidate = rng.uniform(size=m) < 0.7
    got = np.asarray(modes.coincides_with_earlier(jnp.asarray(points), jnp.asarray(candidate)))
    close = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1) < modes.SAME_BOTTOM**2
    expected = (np.tril(close, k=-1) & candidate[None, :]).any(axis=1)
    np.testing.assert_array_equal(got, expected)
    assert 0 < expected.sum() < m
