"""`UpdateRegression`: is an update bad, or were its devices unlucky?

The question is asked again on every piece of evidence, minutes after it
exists, so the test must stay honest under repeated looks and small counts.
It is a mixture sequential probability ratio test for a binomial rate: the
likelihood of the KB's k affected devices among n installs under rates drawn
from Beta(1, b), over their likelihood at the baseline rate p0. By Ville's
inequality the chance that this ratio ever exceeds 1/alpha when the true
rate is p0 is at most alpha, however often it is checked. A verdict also
needs the effect to be large: at least `min_affected` devices and a rate at
least `min_rate_ratio` times the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.catalog import RegressionRule


@dataclass(frozen=True, slots=True)
class Verdict:
    """The test's numbers for one look."""

    affected: int
    installed: int
    rate: float
    baseline: float
    log_evidence: float  # log of the mixture likelihood ratio
    significant: bool


def baseline_rate(loops: int, exposure: int, rule: RegressionRule) -> float:
    """The fleet's own rate, pulled towards the configured prior while it is small."""
    return (loops + rule.prior_rate * rule.prior_weight) / (exposure + rule.prior_weight)


def log_mixture_ratio(affected: int, installed: int, baseline: float, mixture_b: float) -> float:
    """log of  B(1 + k, b + n - k) / B(1, b)  /  (p0^k (1 - p0)^(n - k))."""
    k, n = affected, installed
    log_mixture = _log_beta(1 + k, mixture_b + n - k) - _log_beta(1.0, mixture_b)
    log_null = k * math.log(baseline) + (n - k) * math.log1p(-baseline)
    return log_mixture - log_null


def judge(affected: int, installed: int, baseline: float, rule: RegressionRule) -> Verdict:
    """One look at one KB (or one cohort of it)."""
    installed = max(installed, affected)
    rate = affected / installed if installed else 0.0
    log_evidence = log_mixture_ratio(affected, installed, baseline, rule.mixture_b) if installed else 0.0
    significant = (
        affected >= rule.min_affected
        and rate >= rule.min_rate_ratio * baseline
        and log_evidence >= math.log(1.0 / rule.alpha)
    )
    return Verdict(affected, installed, rate, baseline, log_evidence, significant)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
