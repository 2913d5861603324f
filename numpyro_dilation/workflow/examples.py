"""The bundled example models and their data, for ``numpyro-dilation compare NAME``.

Each :class:`Example` holds a NumPyro model, a function building its data, the
settings of a comparison that shows what the example is about, and, where the
answer is known, a reference (exact draws or moments) to judge the samplers
against.  The registry only describes the examples:
:func:`~numpyro_dilation.workflow.comparison.compare_example` runs one.  The
runnable scripts in the repository's ``examples/`` folder import these and add
their own figures.

=========================  ====================================================================
``mixture``                2-D mixture of four Gaussians with weights 0.1, 0.2, 0.3, 0.4
``ring``                   2-D ring: a prior observed through a noisy squared radius
``banana``                 2-D banana (twisted Gaussian)
``funnel``                 Neal's funnel, centred parameterisation, 10 dimensions
``eight_schools``          eight schools, non-centred (posteriordb reference)
``logistic_regression``    Bayesian logistic regression on scikit-learn's breast-cancer data
``gaussian_mixture``       Bayesian 1-D Gaussian mixture, three components: label switching
``stochastic_volatility``  stochastic volatility of 80 simulated daily returns
``tempered``               p(theta) p(y | theta)**w for w in (0.05, 0.25, 1), with handlers.scale
=========================  ====================================================================

The synthetic data sets are drawn from fixed seeds, so they are the same on
every machine; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import NUTS

from numpyro_dilation.kernel import DilationLangevin


class MissingDependencyError(ImportError):
    """An example needs an optional package that is not installed.

    Attributes
    ----------
    package : str
        The package's name on PyPI.
    """

    def __init__(self, message: str, package: str):
        super().__init__(message)
        self.package = package


@dataclass(frozen=True)
class Run:
    """One comparison of an example: a label, the model's arguments and a reference."""

    label: str
    args: tuple
    kwargs: dict
    reference: Mapping[str, Any] | None


@dataclass(frozen=True)
class Example:
    """A bundled example: a model, its data and the settings that show its point.

    Attributes
    ----------
    name : str
        Name used by ``numpyro-dilation compare NAME``.
    title : str
        One-line description.
    description : str
        What the example shows and what to look at in the report.
    model : callable
        The NumPyro model.
    data : callable
        ``data() -> (args, kwargs)``: the model's arguments.
    num_chains, num_warmup, num_samples : int
        Default settings of the comparison.
    var_names : tuple of str, optional
        Variables shown in the tables and figures (default: all).
    mode_fn : callable, optional
        ``mode_fn(draw) -> label`` for multimodal posteriors (``draw`` maps
        variable names to one draw's values).
    reference : callable, optional
        ``reference(*args, **kwargs) -> mapping``: reference draws or moments
        (see :func:`~numpyro_dilation.compare`) for the model with these arguments.
    annealing_chains : int, optional
        ``annealing_chains`` of :func:`~numpyro_dilation.compare`: the particles of
        the annealing figure (``None``: the run's own chains, if 16 or more).
    sweep : tuple of (str, dict)
        Several comparisons, each with a label and keyword arguments added to
        the model's (empty: one comparison).
    requires : tuple of str
        Optional packages the example's data need (import names).
    samplers : callable, optional
        ``samplers(model, num_chains) -> dict`` of name to kernel: the samplers
        compared (default :func:`~numpyro_dilation.compare`'s, DilationLangevin
        and NUTS).
    """

    name: str
    title: str
    description: str
    model: Callable
    data: Callable[[], tuple[tuple, dict]]
    num_chains: int = 4
    num_warmup: int = 1000
    num_samples: int = 1000
    var_names: tuple[str, ...] | None = None
    mode_fn: Callable[[Mapping[str, np.ndarray]], Any] | None = None
    reference: Callable[..., Mapping[str, Any]] | None = None
    annealing_chains: int | None = None
    sweep: tuple[tuple[str, dict], ...] = ()
    requires: tuple[str, ...] = field(default=())
    samplers: Callable[[Callable, int], dict] | None = None

    def check_available(self) -> None:
        """Raise :class:`MissingDependencyError` if an optional package is missing."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                package = {"sklearn": "scikit-learn"}.get(module, module)
                raise MissingDependencyError(
                    f"example {self.name!r} needs the {package} package: "
                    f'pip install "numpyro-dilation[examples]" (or pip install {package})',
                    package,
                )

    def runs(self) -> list[Run]:
        """The comparisons of this example, with their data and references."""
        self.check_available()
        args, kwargs = self.data()
        sweep = self.sweep or ((self.name, {}),)
        out = []
        for label, extra in sweep:
            label = label if label == self.name else f"{self.name} ({label})"
            run_kwargs = {**kwargs, **extra}
            reference = self.reference(*args, **run_kwargs) if self.reference else None
            out.append(Run(label, args, run_kwargs, reference))
        return out


# ---------------------------------------------------------------- helpers


def _grid_reference(log_density: Callable, lim: float, n_grid: int = 500, n_draws: int = 20000):
    """Approximately exact draws from a 2-D density by inverse-CDF on a fine grid.

    Cells of a ``n_grid x n_grid`` grid over ``[-lim, lim]^2`` are drawn with
    probability proportional to the density at their centres, then a point
    uniformly within the cell: accurate to the grid's resolution for a density
    whose mass lies inside the square.
    """
    edges = np.linspace(-lim, lim, n_grid + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    x1, x2 = np.meshgrid(centres, centres, indexing="ij")
    logp = log_density(x1, x2)
    p = np.exp(logp - logp.max()).ravel()
    p /= p.sum()
    rng = np.random.default_rng(20240620)
    cells = rng.choice(p.size, size=n_draws, p=p)
    width = edges[1] - edges[0]
    i, j = np.unravel_index(cells, x1.shape)
    jitter = rng.uniform(-0.5, 0.5, size=(n_draws, 2)) * width
    return np.stack([centres[i], centres[j]], axis=1) + jitter


# ---------------------------------------------------------------- mixture

MIXTURE_WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4])
MIXTURE_MEANS = np.array([[9.0, 0.0], [1.0, 8.0], [-7.0, 0.0], [1.0, -8.0]])


def mixture_model():
    """Four unit Gaussians in 2-D with unequal weights: one latent site ``x``."""
    components = dist.MultivariateNormal(jnp.asarray(MIXTURE_MEANS), scale_tril=jnp.eye(2))
    mixing = dist.Categorical(jnp.asarray(MIXTURE_WEIGHTS))
    numpyro.sample("x", dist.MixtureSameFamily(mixing, components))


def mixture_mode(draw: Mapping[str, np.ndarray]) -> str:
    """Label of the mixture component nearest to the draw, by its weight."""
    k = int(np.argmin(((np.asarray(draw["x"]) - MIXTURE_MEANS) ** 2).sum(-1)))
    return f"w={MIXTURE_WEIGHTS[k]:g}"


def _mixture_reference():
    rng = np.random.default_rng(1)
    k = rng.choice(len(MIXTURE_WEIGHTS), size=20000, p=MIXTURE_WEIGHTS)
    return {"x": MIXTURE_MEANS[k] + rng.normal(size=(20000, 2))}


# ---------------------------------------------------------------- ring and banana

RING_RADIUS = 3.0


def ring_model(y=RING_RADIUS**2):
    """A broad prior seen through a noisy squared radius: the posterior is a thin ring.

    ``x ~ Normal(0, 5)`` in 2-D and ``y ~ Normal(|x|^2, 1)`` observed at
    ``y = 9``: the mass lies on the circle of radius 3, with a width of about
    1/6.
    """
    x = numpyro.sample("x", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(jnp.sum(x**2), 1.0), obs=y)


def _ring_log_density(x1, x2, y=RING_RADIUS**2):
    return -0.5 * (x1**2 + x2**2) / 25.0 - 0.5 * (x1**2 + x2**2 - y) ** 2


def _ring_reference(y=RING_RADIUS**2):
    return {"x": _grid_reference(lambda a, b: _ring_log_density(a, b, y), lim=4.5)}


BANANA_SCALE = 2.0
BANANA_BEND = 0.75


def banana_model():
    """A twisted Gaussian: ``x1 ~ N(0, 2)``, ``x2 | x1 ~ N(0.75 (x1^2 - 4), 1)``."""
    x1 = numpyro.sample("x1", dist.Normal(0.0, BANANA_SCALE))
    numpyro.sample("x2", dist.Normal(BANANA_BEND * (x1**2 - BANANA_SCALE**2), 1.0))


def _banana_reference():
    rng = np.random.default_rng(2)
    x1 = rng.normal(0.0, BANANA_SCALE, size=20000)
    x2 = BANANA_BEND * (x1**2 - BANANA_SCALE**2) + rng.normal(size=20000)
    return {"x1": x1, "x2": x2}


# ---------------------------------------------------------------- funnel


def funnel_model(dim: int = 9):
    """Neal's funnel, centred: ``v ~ N(0, 3)``, ``x_i ~ N(0, exp(v / 2))``, i = 1..dim."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([dim]).to_event(1))


def _funnel_reference(dim: int = 9):
    rng = np.random.default_rng(3)
    v = rng.normal(0.0, 3.0, size=20000)
    return {"v": v, "x": rng.normal(size=(20000, dim)) * np.exp(v / 2)[:, None]}


# ---------------------------------------------------------------- eight schools

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
#: Mean and sd of the posteriordb reference draws of ``eight_schools-eight_schools_noncentered``
#: (10 x 1000 draws of long Stan NUTS runs; the files are in the repository's
#: ``benchmarks/posteriordb``).
EIGHT_SCHOOLS_REFERENCE = {
    "mu": (4.411, 3.309),
    "tau": (3.602, 3.198),
    "theta": (
        np.array([6.151, 4.940, 3.906, 4.796, 3.614, 4.051, 6.317, 4.884]),
        np.array([5.616, 4.646, 5.281, 4.771, 4.615, 4.796, 5.003, 5.318]),
    ),
}


def eight_schools_model(sigma, y=None):
    """Eight schools, non-centred (as posteriordb's ``eight_schools_noncentered``)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", sigma.shape[0]):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def _eight_schools_data():
    return (jnp.asarray(EIGHT_SCHOOLS_SIGMA),), {"y": jnp.asarray(EIGHT_SCHOOLS_Y)}


# ---------------------------------------------------------------- logistic regression


def logistic_regression_model(X, y=None):
    """``y ~ Bernoulli(sigmoid(a + X @ beta))`` with ``a, beta ~ Normal(0, 1)``."""
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("patient", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=intercept + X @ beta), obs=y)


@cache
def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    X = np.asarray(data.data, float)
    X = (X - X.mean(0)) / X.std(0)
    return X, np.asarray(data.target, float)


def _logistic_data():
    X, y = _breast_cancer()
    return (jnp.asarray(X),), {"y": jnp.asarray(y)}


# ---------------------------------------------------------------- Gaussian mixture

GMM_LOCS = np.array([-3.0, 0.5, 4.0])


def gaussian_mixture_model(y):
    """Three-component 1-D Gaussian mixture with exchangeable priors (label switching).

    ``w ~ Dirichlet(1, 1, 1)``, ``mu_k ~ Normal(0, 5)``, ``sigma_k ~ HalfNormal(2)``,
    ``y_i ~ sum_k w_k Normal(mu_k, sigma_k)``.  Permuting the components leaves the
    posterior unchanged, so it has 3! = 6 modes of equal mass, one per labelling.
    """
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([3]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([3]).to_event(1))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample(
            "y", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, sigma)), obs=y
        )


def gaussian_mixture_mode(draw: Mapping[str, np.ndarray]) -> str:
    """The labelling: the order of the component means, e.g. ``"mu0<mu2<mu1"``."""
    order = np.argsort(np.asarray(draw["mu"]))
    return "<".join(f"mu{k}" for k in order)


def _gaussian_mixture_data():
    rng = np.random.default_rng(4)
    k = rng.choice(3, size=120, p=[0.3, 0.3, 0.4])
    y = GMM_LOCS[k] + 0.7 * rng.normal(size=120)
    return (jnp.asarray(y),), {}


# ---------------------------------------------------------------- stochastic volatility

SV_T = 80


def stochastic_volatility_model(returns):
    """Stochastic volatility, non-centred: log-variance ``h`` follows a stationary AR(1).

    ``h_1 = mu + s z_1``, ``h_t = mu + phi (h_{t-1} - mu) + sigma z_t`` with
    ``sigma = s sqrt(1 - phi^2)`` (so that ``s`` is the stationary sd of ``h``),
    ``z_t ~ Normal(0, 1)``, ``returns_t ~ Normal(0, exp(h_t / 2))``; priors
    ``mu ~ Normal(0, 2)``, ``(phi + 1) / 2 ~ Beta(20, 1.5)``, ``s ~ HalfNormal(1)``.
    Parameterising by ``s`` rather than ``sigma`` keeps the first state's scale
    bounded as ``phi`` approaches 1.
    """
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    phi_raw = numpyro.sample("phi_raw", dist.Beta(20.0, 1.5))
    phi = numpyro.deterministic("phi", 2.0 * phi_raw - 1.0)
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    sigma = numpyro.deterministic("sigma", s * jnp.sqrt(1.0 - phi**2))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([returns.shape[0]]).to_event(1))

    def step(h_prev, z_t):
        h_t = mu + phi * (h_prev - mu) + sigma * z_t
        return h_t, h_t

    h1 = mu + s * z[0]
    _, rest = jax.lax.scan(step, h1, z[1:])
    h = numpyro.deterministic("h", jnp.concatenate([h1[None], rest]))
    numpyro.sample("returns", dist.Normal(0.0, jnp.exp(h / 2)).to_event(1), obs=returns)


def _sv_data():
    rng = np.random.default_rng(5)
    mu, phi, sigma = -1.0, 0.95, 0.25
    h = np.empty(SV_T)
    h[0] = mu + sigma / np.sqrt(1 - phi**2) * rng.normal()
    for t in range(1, SV_T):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * rng.normal()
    returns = np.exp(h / 2) * rng.normal(size=SV_T)
    return (jnp.asarray(returns),), {}


# ---------------------------------------------------------------- tempered posterior

TEMPERED_WEIGHTS = (0.05, 0.25, 1.0)


def tempered_model(y, w=1.0):
    """``p(theta) p(y | theta)**w`` with ``y_i ~ Normal(theta_1 theta_2, 1)``.

    Only the product ``theta_1 theta_2`` is identified, so at ``w = 1`` the
    posterior lies on the two branches of a hyperbola (two modes, one with
    ``theta_1 > 0``, one with ``theta_1 < 0``, of equal mass); at small ``w``
    it is close to the prior ``theta ~ Normal(0, 2)``.  The weight enters
    through :func:`numpyro.handlers.scale`.
    """
    theta = numpyro.sample("theta", dist.Normal(0.0, 2.0).expand([2]).to_event(1))
    with handlers.scale(scale=w), numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(theta[0] * theta[1], 1.0), obs=y)


def tempered_mode(draw: Mapping[str, np.ndarray]) -> str:
    """Which branch: the sign of ``theta[0]``."""
    return "theta0>0" if float(np.asarray(draw["theta"])[0]) > 0 else "theta0<0"


def _tempered_data():
    rng = np.random.default_rng(6)
    return (jnp.asarray(2.0 + rng.normal(size=20)),), {}


def _tempered_reference(y, w=1.0):
    y = np.asarray(y)

    def log_density(a, b):
        prod = a * b
        loglik = -0.5 * (np.sum(y**2) - 2 * prod * np.sum(y) + y.size * prod**2)
        return -0.5 * (a**2 + b**2) / 4.0 + w * loglik

    return {"theta": _grid_reference(log_density, lim=8.0, n_grid=800)}


# ---------------------------------------------------------------- registry


def _with_ensemble(model: Callable, num_chains: int) -> dict:
    # ensemble mode is what weighs the modes right: shown beside the default kernel
    # (it needs at least 4 vectorised chains)
    samplers = {"DilationLangevin": DilationLangevin(model)}
    if num_chains >= 4:
        samplers["DilationLangevin (ensemble)"] = DilationLangevin(model, ensemble=True)
    return {**samplers, "NUTS": NUTS(model)}


EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example(
            name="mixture",
            title="2-D mixture of four Gaussians with weights 0.1, 0.2, 0.3, 0.4",
            description=(
                "Four well-separated modes. Each NUTS chain stays in the mode it starts in;"
                " DilationLangevin's annealing spreads its chains over the modes, and with"
                " ensemble=True population moves carry chains between modes, so that the"
                " fraction of draws per mode matches the weights. Compare those fractions"
                " with the weights, and how many modes each chain visited. The reference is"
                " 20000 exact draws."
            ),
            model=mixture_model,
            data=lambda: ((), {}),
            num_chains=64,
            num_warmup=1000,
            num_samples=500,
            mode_fn=mixture_mode,
            reference=lambda *a, **kw: _mixture_reference(),
            samplers=_with_ensemble,
        ),
        Example(
            name="ring",
            title="2-D ring: a broad prior seen through a noisy squared radius",
            description=(
                "All the mass on a thin circle of radius 3. Curved, but one connected"
                " mode: both samplers should agree with the reference (grid-exact draws)."
            ),
            model=ring_model,
            data=lambda: ((), {}),
            num_chains=8,
            num_warmup=1000,
            num_samples=1000,
            reference=lambda *a, **kw: _ring_reference(),
            annealing_chains=256,
        ),
        Example(
            name="banana",
            title="2-D banana (twisted Gaussian)",
            description=(
                "x1 ~ N(0, 2), x2 | x1 ~ N(0.75 (x1^2 - 4), 1): a curved ridge whose scale"
                " changes along it. The reference is 20000 exact draws."
            ),
            model=banana_model,
            data=lambda: ((), {}),
            num_chains=8,
            num_warmup=1000,
            num_samples=1000,
            reference=lambda *a, **kw: _banana_reference(),
            annealing_chains=256,
        ),
        Example(
            name="funnel",
            title="Neal's funnel, centred parameterisation (10 dimensions)",
            description=(
                "v ~ N(0, 3), x_i ~ N(0, exp(v / 2)): the scale of x changes by orders of"
                " magnitude with v, so no single step size fits. Look at the divergences,"
                " r_hat and the error of v's mean and sd against the exact reference: a"
                " sampler that misses the neck under-covers negative v."
            ),
            model=funnel_model,
            data=lambda: ((), {}),
            num_chains=4,
            num_warmup=1000,
            num_samples=1000,
            var_names=("v", "x"),
            reference=lambda *a, **kw: _funnel_reference(),
            annealing_chains=128,
        ),
        Example(
            name="eight_schools",
            title="Eight schools, non-centred (posteriordb reference)",
            description=(
                "The classic hierarchical model; tau has a heavy right tail. Judged against"
                " posteriordb's reference moments (long Stan runs)."
            ),
            model=eight_schools_model,
            data=_eight_schools_data,
            num_chains=4,
            num_warmup=1000,
            num_samples=1000,
            var_names=("mu", "tau", "theta"),
            reference=lambda *a, **kw: EIGHT_SCHOOLS_REFERENCE,
        ),
        Example(
            name="logistic_regression",
            title="Bayesian logistic regression, breast-cancer data (569 x 30)",
            description=(
                "scikit-learn's bundled Wisconsin breast-cancer data, standardised features,"
                " Normal(0, 1) priors: 31 correlated coefficients. Unimodal; the question is"
                " efficiency (ESS per gradient evaluation) and agreement between samplers."
            ),
            model=logistic_regression_model,
            data=_logistic_data,
            num_chains=4,
            num_warmup=1000,
            num_samples=1000,
            var_names=("intercept", "beta"),
            requires=("sklearn",),
        ),
        Example(
            name="gaussian_mixture",
            title="Bayesian Gaussian mixture with label switching (3 components, 120 points)",
            description=(
                "Exchangeable priors make the posterior invariant to relabelling the"
                " components: 6 modes of exactly equal mass. A sampler that stays in one"
                " labelling reports a clean, identified posterior; one that switches"
                " labels shows the symmetric one. The mode table counts labellings."
            ),
            model=gaussian_mixture_model,
            data=_gaussian_mixture_data,
            num_chains=16,
            num_warmup=1000,
            num_samples=500,
            var_names=("w", "mu", "sigma"),
            mode_fn=gaussian_mixture_mode,
        ),
        Example(
            name="stochastic_volatility",
            title="Stochastic volatility of 80 simulated daily returns",
            description=(
                "An AR(1) log-variance behind the returns, non-centred: 83 dimensions with"
                " strong dependence between phi, sigma and the latent path."
            ),
            model=stochastic_volatility_model,
            data=_sv_data,
            num_chains=4,
            num_warmup=1000,
            num_samples=1000,
            var_names=("mu", "phi", "sigma", "s"),
        ),
        Example(
            name="tempered",
            title="Tempered posterior p(theta) p(y | theta)**w, w in (0.05, 0.25, 1)",
            description=(
                "numpyro.handlers.scale raises the likelihood to the power w. At w = 0.05"
                " the posterior is close to the prior; at w = 1 it splits into two branches"
                " of equal mass (only theta_1 theta_2 is identified). The reference is"
                " grid-exact draws at each w."
            ),
            model=tempered_model,
            data=_tempered_data,
            num_chains=32,
            num_warmup=1000,
            num_samples=500,
            mode_fn=tempered_mode,
            reference=_tempered_reference,
            sweep=tuple((f"w={w:g}", {"w": w}) for w in TEMPERED_WEIGHTS),
        ),
    )
}

#: Examples run by ``numpyro-dilation demo``.
DEMO_EXAMPLES: tuple[str, ...] = ("mixture", "eight_schools")


def get_example(name: str) -> Example:
    """The bundled example called ``name``.

    Raises
    ------
    ValueError
        If there is no such example (the message lists the valid names).
    """
    try:
        return EXAMPLES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}"
        ) from None


__all__ = [
    "DEMO_EXAMPLES",
    "EXAMPLES",
    "Example",
    "MissingDependencyError",
    "Run",
    "banana_model",
    "eight_schools_model",
    "funnel_model",
    "gaussian_mixture_model",
    "get_example",
    "logistic_regression_model",
    "mixture_model",
    "ring_model",
    "stochastic_volatility_model",
    "tempered_model",
]
