"""The dilation path: closed-form density and score, rescaled coordinates, schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from numpyro_dilation import path


def mixture_log_prob(x):
    """A skewed 2-component mixture in any dimension (not centred on the origin)."""
    means = jnp.stack([jnp.full(x.shape, -1.0), jnp.full(x.shape, 2.5)])
    comps = jnp.sum(norm.logpdf(x, means, jnp.array([[0.7], [1.3]])), axis=-1)
    return logsumexp(jnp.log(jnp.array([0.3, 0.7])) + comps)


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("t", [1e-3, 0.1, 0.7, 1.0])
def test_closed_form_score_equals_autodiff(d, t):
    key = jax.random.PRNGKey(d)
    x, center = jax.random.normal(key, (2, d)) * jnp.array([[0.3], [1.5]])
    autodiff = jax.grad(lambda z: path.log_density(mixture_log_prob, z, t, center))(x)
    closed = path.score(jax.grad(mixture_log_prob), x, t, center)
    np.testing.assert_allclose(closed, autodiff, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [0.01, 0.2, 1.0])
def test_log_density_integrates_to_same_constant_1d(t):
    center = jnp.array([0.4])
    # the level-t density lives on a sqrt(t)-scaled copy of the target: integrate on it
    half_width = 12.0 * np.sqrt(t) + 1.0
    grid = np.linspace(0.4 - half_width, 0.4 + half_width, 40001)
    logp = jax.vmap(lambda z: path.log_density(mixture_log_prob, z[None], t, center))(grid)
    integral = np.trapezoid(np.exp(np.asarray(logp, dtype=np.float64)), grid)
    np.testing.assert_allclose(integral, 1.0, rtol=1e-4)


@pytest.mark.parametrize("t", [0.05, 0.5, 1.0])
def test_log_density_integrates_to_same_constant_2d(t):
    center = jnp.array([-0.5, 1.0])
    half_width = 9.0 * np.sqrt(t) + 0.5
    axes = [np.linspace(c - half_width, c + half_width, 601) for c in np.asarray(center)]
    xx, yy = np.meshgrid(*axes, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=1), dtype=jnp.float32)
    logp = jax.vmap(lambda z: path.log_density(mixture_log_prob, z, t, center))(pts)
    dens = np.exp(np.asarray(logp, dtype=np.float64)).reshape(xx.shape)
    integral = np.trapezoid(np.trapezoid(dens, axes[1], axis=1), axes[0])
    np.testing.assert_allclose(integral, 1.0, rtol=2e-3)


@pytest.mark.parametrize("t,t_next", [(1e-3, 2e-3), (0.3, 0.35), (0.9, 1.0)])
def test_rescaled_update_equals_direct_update(t, t_next):
    """A Langevin step of size h on p_t is a step of size h/t on p in y = c + (x-c)/sqrt(t)."""
    key_x, key_xi = jax.random.split(jax.random.PRNGKey(0))
    d = 3
    center = jnp.array([0.5, -1.0, 2.0])
    x = center + jnp.sqrt(t) * jax.random.normal(key_x, (d,))
    xi = jax.random.normal(key_xi, (d,))
    h = 0.3 * t**0.75
    grad_log_p = jax.grad(mixture_log_prob)

    direct = x + h * path.score(grad_log_p, x, t, center) + jnp.sqrt(2 * h) * xi

    y = path.to_rescaled(x, t, center)
    y_new = y + (h / t) * grad_log_p(y) + jnp.sqrt(2 * h / t) * xi
    np.testing.assert_allclose(path.from_rescaled(y_new, t, center), direct, rtol=1e-5, atol=1e-6)
    # moving to the next level is the contraction of the rescaled point
    np.testing.assert_allclose(
        path.contract(y_new, t, t_next, center),
        path.to_rescaled(direct, t_next, center),
        rtol=1e-5,
        atol=1e-5,
    )


def test_step_size_rule():
    # the paper's h = eps * t**alpha on p_t is h / t in rescaled coordinates, in units of 1 / L
    assert path.rescaled_step_size(0.5, 0.5, 0.25, 1.0) == pytest.approx(0.25 / 0.25)
    assert path.rescaled_step_size(0.5, 0.75, 1.0, 2.0) == pytest.approx(0.5 / 2.0)


def test_named_schedules_run_from_t_min_to_one():
    for name in ("geometric", "linear"):
        levels = path.make_schedule(name, 0.01)
        assert float(levels(0.0)) == pytest.approx(0.01)
        assert float(levels(1.0)) == pytest.approx(1.0)
        u = jnp.linspace(0, 1, 11)
        assert np.all(np.diff(np.asarray(levels(u))) > 0)
    geo = path.make_schedule("geometric", 0.01)
    # geometric: equal steps in log t
    np.testing.assert_allclose(np.diff(np.log(np.asarray(geo(jnp.linspace(0, 1, 5))))), np.log(100) / 4, rtol=1e-5)


def test_callable_schedule_is_checked():
    path.check_schedule(lambda u: 0.05 + 0.95 * u**2)
    with pytest.raises(ValueError, match="reach t = 1"):
        path.check_schedule(lambda u: 0.1 + 0.5 * u)
    with pytest.raises(ValueError, match="non-decreasing"):
        path.check_schedule(lambda u: jnp.where(u < 0.5, 0.8, 0.2 + 0.8 * u))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        path.check_schedule(lambda u: u)
    with pytest.raises(ValueError, match="one of"):
        path.check_schedule("cosine")
    with pytest.raises(TypeError, match="callable"):
        path.check_schedule(3)
