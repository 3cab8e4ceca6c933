"""The result every estimator of log p(x) returns, its summaries against their formulas, and
the refusal of a guide without a density (check_estimator: test_check_estimator.py)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.core.errors import NotDefined
from pyro_vae.inference.estimators.base import MarginalLikelihood, require_density


def test_the_summaries_of_an_estimate(f64):
    log_px = torch.tensor([-90.0, -100.0, -95.0, -85.0])
    mc = torch.tensor([0.3, float("nan"), 0.4, 1.2])
    result = MarginalLikelihood(log_px, ess=torch.ones(4), mc_stderr=mc, num_samples=10)
    assert result.mean == -92.5
    # sample standard deviation over points / √N: √(Σ (x − x̄)² / 3) / 2
    spread = math.sqrt((2.5**2 + 7.5**2 + 2.5**2 + 7.5**2) / 3)
    assert result.stderr == pytest.approx(spread / 2, rel=1e-12)
    # √(0.3² + 0.4² + 1.2²) / 4, the untrusted point left out of the sum but not of N
    assert result.mc_stderr_of_mean == pytest.approx(1.3 / 4, rel=1e-12)
    assert result.trusted.tolist() == [True, False, True, True]
    one = MarginalLikelihood(log_px[:1], ess=torch.ones(1), mc_stderr=mc[:1], num_samples=10)
    assert math.isnan(one.stderr)  # no spread from a single point


def test_untrusted_points_are_named_with_their_reason(f64):
    mc = torch.tensor([0.3, math.nan, 0.4, math.nan])
    k = torch.tensor([0.2, 0.93, 0.71, math.nan])  # the third's error was reported: trusted
    result = MarginalLikelihood(torch.zeros(4), torch.ones(4), mc, num_samples=100, pareto_k=k)
    assert result.why_untrusted() == {
        1: "its weights' tail is too heavy: k̂ = 0.93 > 0.7",
        3: "its weights underflow: no error can be computed from them",
    }
    assert result.no_error is None


def test_one_sample_per_point_has_no_error_rather_than_an_error_of_zero(f64):
    nan = torch.full((3,), math.nan)
    result = MarginalLikelihood(torch.zeros(3), torch.ones(3), nan, num_samples=1, pareto_k=nan)
    assert result.no_error == "1 sample per point has no spread to estimate an error from"
    assert result.why_untrusted() == {}  # not untrusted: there is nothing to trust
    assert math.isnan(result.mc_stderr_of_mean)  # was 0.0: √(Σ over no point) / N


def test_a_guide_without_a_density_is_refused_naming_the_estimator_and_the_site():
    def point_guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Delta(x[:, :2]).to_event(1))

    def normal_guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x[:, :2], 1.0).to_event(1))

    x = torch.zeros(3, 4)
    with pytest.raises(
        NotDefined, match=r"log p\(x\) by the estimator 'is'.*'z'.*is weighs its samples by q's density"
    ):
        require_density(point_guide, x, "is")
    require_density(normal_guide, x, "is")  # nothing to refuse
