"""Residual diagnostics of a fit: are the residuals structured in a covariate, and are they normal?

Epoch's Chinchilla replication (Besiroglu et al. 2024) and OLMo's ladder read a fit's residuals
against each covariate; a law that leaves a trend or a bend in N or D is misspecified there, and
its extrapolation along that covariate is suspect. Per covariate this computes

- the Spearman rank correlation of the residuals with the covariate (a monotone trend), and
- an F-test of residual ~ 1 + z + z^2, z the standardised log covariate (trend or curvature),

and for the residuals as a whole a Shapiro-Wilk normality test (D'Agostino-Pearson above 5,000
points). A warning is raised for a covariate whose F-test p-value is below alpha / (number of
covariates) (Bonferroni), and for normality below alpha. Residuals are on the fitting scale (log
prediction - log observation for loss forms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import statsmodels.api as sm
from scipy import stats

DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class CovariateCheck:
    covariate: str
    spearman_rho: float
    spearman_p: float
    trend_f_p: float          # F-test of residual ~ 1 + z + z^2 (z = standardised log covariate)
    structured: bool

    def to_dict(self) -> dict:
        return {"covariate": self.covariate, "spearman_rho": self.spearman_rho, "spearman_p": self.spearman_p,
                "trend_f_p": self.trend_f_p, "structured": self.structured}


@dataclass(frozen=True)
class ResidualDiagnostics:
    n: int
    scale: str
    mean: float
    rms: float
    normality_test: str
    normality_p: float
    covariates: tuple[CovariateCheck, ...]
    alpha: float
    warnings: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"n": self.n, "scale": self.scale, "mean": self.mean, "rms": self.rms,
                "normality_test": self.normality_test, "normality_p": self.normality_p,
                "covariates": [c.to_dict() for c in self.covariates], "alpha": self.alpha,
                "warnings": list(self.warnings)}

    def lines(self) -> list[str]:
        out = [f"residuals ({self.scale}, {self.n} points): rms {self.rms:.4g}, mean {self.mean:+.3g}; "
               f"{self.normality_test} p = {_p(self.normality_p)}"]
        for c in self.covariates:
            out.append(f"  vs {c.covariate}: Spearman rho {c.spearman_rho:+.3f} (p = {_p(c.spearman_p)}), "
                       f"trend/curvature F-test p = {_p(c.trend_f_p)}" + ("  <- structure" if c.structured else ""))
        out += [f"WARNING: {w}" for w in self.warnings]
        return out


def _p(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _covariate_check(name: str, residuals: np.ndarray, values: np.ndarray, threshold: float) -> CovariateCheck | None:
    values = np.asarray(values, dtype=np.float64)
    if np.unique(values).size < 3:
        return None
    x = np.log(values) if np.all(values > 0) else values
    z = (x - x.mean()) / x.std()
    rho, rho_p = stats.spearmanr(z, residuals)
    design = sm.add_constant(np.column_stack([z, z ** 2]))
    fit = sm.OLS(residuals, design).fit()
    f_p = float(fit.f_pvalue) if np.isfinite(fit.f_pvalue) else math.nan
    return CovariateCheck(name, float(rho), float(rho_p), f_p, bool(np.isfinite(f_p) and f_p < threshold))


def residual_diagnostics(residuals, covariates: Mapping[str, np.ndarray], scale: str = "log",
                         alpha: float = DEFAULT_ALPHA) -> ResidualDiagnostics | None:
    """Diagnostics of `residuals` against each numeric covariate (same length); None for fewer
    than 8 points (too few to test anything)."""
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.size < 8 or not np.all(np.isfinite(residuals)):
        return None
    numeric = {k: np.asarray(v) for k, v in covariates.items() if np.asarray(v).dtype.kind in "fiu"}
    threshold = alpha / max(len(numeric), 1)
    checks = tuple(c for c in (_covariate_check(k, residuals, v, threshold) for k, v in numeric.items())
                   if c is not None)
    if np.ptp(residuals) == 0:
        test, p = "no spread", math.nan
    elif residuals.size <= 5000:
        test, p = "Shapiro-Wilk", float(stats.shapiro(residuals).pvalue)
    else:
        test, p = "D'Agostino-Pearson", float(stats.normaltest(residuals).pvalue)
    warnings = [f"residuals show structure in {c.covariate} (trend/curvature F-test p = {_p(c.trend_f_p)} < "
                f"{threshold:.3g}): the form may be misspecified along {c.covariate}; extrapolate in it with care"
                for c in checks if c.structured]
    if math.isfinite(p) and p < alpha:
        warnings.append(f"residuals are not normal ({test} p = {_p(p)} < {alpha:g}): outliers or a misfit; "
                        "intervals that assume normal errors do not hold (the bootstrap ones do not assume it)")
    return ResidualDiagnostics(int(residuals.size), scale, float(np.mean(residuals)),
                               float(np.sqrt(np.mean(residuals ** 2))), test, p, checks, alpha, tuple(warnings))


def from_dict(data: Mapping) -> ResidualDiagnostics:
    """The diagnostics stored in a law file (options.diagnostics)."""
    nan = lambda v: math.nan if v is None else float(v)  # noqa: E731  (JSON null for NaN)
    checks = tuple(CovariateCheck(c["covariate"], nan(c["spearman_rho"]), nan(c["spearman_p"]), nan(c["trend_f_p"]),
                                  bool(c["structured"])) for c in data.get("covariates", []))
    return ResidualDiagnostics(int(data["n"]), str(data["scale"]), nan(data["mean"]), nan(data["rms"]),
                               str(data["normality_test"]), nan(data["normality_p"]), checks, float(data["alpha"]),
                               tuple(data.get("warnings", [])))


def lines_from_dict(data: Mapping) -> list[str]:
    return from_dict(data).lines()
