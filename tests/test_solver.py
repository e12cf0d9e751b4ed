"""analysis.solver.minimize_batch against scipy.optimize on problems with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from analysis.solver import minimize_batch


def _solve(fun, starts, data=None, shared_data=True, **kwargs):
    with jax.enable_x64(True):
        x, f, converged, iterations = jax.jit(
            lambda x0, d: minimize_batch(fun, x0, d, shared_data, **kwargs))(jnp.asarray(starts, jnp.float64), data)
        return np.asarray(x), np.asarray(f), np.asarray(converged), int(iterations)


def test_rosenbrock_from_several_starts_reaches_scipy_bfgs_minimum():
    def rosenbrock(x, _):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    starts = np.array([[-1.2, 1.0, -0.5, 0.3], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    x, f, converged, _ = _solve(rosenbrock, starts, max_iter=2000)
    for start, xi, fi in zip(starts, x, f):
        ref = optimize.minimize(optimize.rosen, start, jac=optimize.rosen_der, method="BFGS", options={"gtol": 1e-10})
        assert fi == pytest.approx(ref.fun, abs=1e-12)
        np.testing.assert_allclose(xi, ref.x, atol=1e-5)
    np.testing.assert_allclose(x, 1.0, atol=1e-5)
    assert converged.all()


def test_quadratic_per_start_data_matches_the_linear_solve():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 6, 6))
    hessians = m @ np.transpose(m, (0, 2, 1)) + 6 * np.eye(6)   # positive definite, one per start
    linear = rng.normal(size=(5, 6))

    def quadratic(x, data):
        h, b = data
        return 0.5 * x @ h @ x - b @ x

    with jax.enable_x64(True):
        data = (jnp.asarray(hessians), jnp.asarray(linear))
    x, f, converged, iterations = _solve(quadratic, np.zeros((5, 6)), data, shared_data=False)
    for i in range(5):
        exact = np.linalg.solve(hessians[i], linear[i])
        ref = optimize.minimize(lambda z: 0.5 * z @ hessians[i] @ z - linear[i] @ z, np.zeros(6),
                                jac=lambda z: hessians[i] @ z - linear[i], method="BFGS", options={"gtol": 1e-10})
        np.testing.assert_allclose(x[i], exact, rtol=1e-7, atol=1e-9)
        assert f[i] == pytest.approx(ref.fun, rel=1e-10)
    assert converged.all() and iterations <= 50   # BFGS on a 6-d quadratic: a few dozen steps at most


def test_huber_regression_matches_scipy_least_squares_with_huber_loss():
    rng = np.random.default_rng(1)
    x_data = np.linspace(0, 3, 40)
    y = 1.5 + 0.7 * x_data + rng.normal(0, 0.05, 40)
    y[::9] += 3.0                                              # outliers the Huber loss discounts
    delta = 0.1

    def huber_objective(theta, _):
        r = theta[0] + theta[1] * jnp.asarray(x_data) - jnp.asarray(y)
        a = jnp.abs(r)
        return jnp.sum(jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)))

    x, f, converged, _ = _solve(huber_objective, np.array([[0.0, 0.0], [5.0, -2.0]]), max_iter=500)
    # scipy's 'huber' loss is rho(z) = z if z <= 1 else 2 sqrt(z) - 1 on z = (r / f_scale)^2, which is
    # 2 / delta^2 times the Huber loss above with f_scale = delta: the same minimiser.
    ref = optimize.least_squares(lambda t: t[0] + t[1] * x_data - y, [0.0, 0.0], loss="huber", f_scale=delta,
                                 xtol=1e-15, ftol=1e-15, gtol=1e-15)
    for xi in x:
        np.testing.assert_allclose(xi, ref.x, atol=1e-6)
    assert np.allclose(f, f.min(), rtol=1e-9) and converged.all()
    assert abs(x[0][1] - 0.7) < 0.05   # the outliers did not drag the slope


def test_a_start_with_a_non_finite_objective_is_left_alone_and_not_converged():
    def log_barrier(x, _):
        return jnp.sum((x - 2.0) ** 2) - jnp.sum(jnp.log(x))

    x, f, converged, _ = _solve(log_barrier, np.array([[-1.0, 1.0], [1.0, 1.0]]))
    assert not np.isfinite(f[0]) and not converged[0] and np.array_equal(x[0], [-1.0, 1.0])
    root = (2.0 + np.sqrt(6.0)) / 2.0            # d/dx (x-2)^2 - log x = 0
    np.testing.assert_allclose(x[1], [root, root], rtol=1e-8)
    assert converged[1]
