"""The plain autoencoder as a pyro-vae configuration: the ``delta`` guide and the ``autoencoder``
objective, and every place a guide with no density reaches (KL, ELBO, log p(x), training's
choice of best epoch, keyed noise, the compiled step, compare and evaluate)."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from torch.distributions import kl_divergence

from pyro_vae import VAE, Config, ConfigError, ModelConfig, compare, make_objective, train
from pyro_vae.cli.main import main
from pyro_vae.core.errors import NotDefined
from pyro_vae.core.registry import Spec
from pyro_vae.evaluation.evaluate import evaluate_run
from pyro_vae.inference.estimators import ais, estimate, importance_sampling
from pyro_vae.inference.measure import elbo_parts, measure
from pyro_vae.inference.noise import IndexedNoise
from pyro_vae.inference.objectives import paired_guide, parse_objective
from pyro_vae.models.kl import POINT_MASS, site_kl
from pyro_vae.training import callbacks as cb
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.run import read_metrics
from pyro_vae.training.step import Loss, TrainStep
from tests.training.test_capture import assert_same, captured_loss_and_grads
from tests.training.test_compiled import eager_loss_and_grads

B, D, Z = 6, 9, 3
TINY = {"model.encoder.hidden": [16], "model.decoder.hidden": [16]}
AE = {"model.guide.kind": "delta", "objective.kind": "autoencoder"}


def ae(likelihood: dict | None = None) -> VAE:
    return VAE(
        ModelConfig(
            latent_dim=Z,
            data_dim=D,
            guide={"kind": "delta"},
            likelihood=likelihood or {"kind": "bernoulli"},
            encoder={"kind": "mlp", "hidden": [8]},
            decoder={"kind": "mlp", "hidden": [8]},
        )
    )


def binary(n: int = B) -> torch.Tensor:
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(1)) > 0.5).to(torch.get_default_dtype())


def tiny_config(tmp_path, name="run", **overrides) -> Config:
    values = {**TINY, **AE, "train.epochs": 2, "train.run_dir": str(tmp_path / name), **overrides}
    return Config().override(values)


# ---------------------------------------------------------------------------------------------
# The guide and the objective


def test_the_delta_guide_draws_the_encoder_output_exactly():
    vae, x = ae(), binary()
    assert vae.q.param_features == Z and vae.encoder(x).shape == (B, Z)
    trace = poutine.trace(vae.guide).get_trace(x)
    z = trace.nodes["z"]["value"]
    assert torch.equal(z, vae.encoder(x))
    assert torch.equal(vae.encode(x), vae.encoder(x))
    # in a plate of particles every particle is the same point
    with pyro.plate("particles", 4, dim=-2):
        many = poutine.trace(vae.guide).get_trace(x).nodes["z"]["value"]
    assert many.shape == (4, B, Z) and torch.equal(many, vae.encoder(x).expand(4, B, Z))


def test_the_autoencoder_loss_is_the_binary_cross_entropy_and_its_gradient(f64):
    vae, x = ae(), binary()
    loss = make_objective("autoencoder").differentiable_loss(vae.model, vae.guide, x)
    logits = vae.decoder(vae.encoder(x))  # the decoder at the code z = f(x)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    torch.testing.assert_close(loss, bce, rtol=1e-12, atol=0)
    params = list(vae.parameters())
    ours = torch.autograd.grad(loss, params, allow_unused=True)
    theirs = torch.autograd.grad(bce, params, allow_unused=True)
    used = [(a, b) for a, b in zip(ours, theirs, strict=True) if b is not None]
    assert len(used) == len(list(vae.encoder.parameters())) + len(list(vae.decoder.parameters()))
    for a, b in used:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert all(a is None or not a.abs().sum() for a, b in zip(ours, theirs, strict=True) if b is None)
    # a dataset-size scale multiplies it from outside
    scaled = make_objective("autoencoder").differentiable_loss(
        poutine.scale(vae.model, scale=7.5), poutine.scale(vae.guide, scale=7.5), x
    )
    torch.testing.assert_close(scaled, 7.5 * bce, rtol=1e-12, atol=0)


def test_with_a_fixed_gaussian_it_is_the_squared_error(f64):
    sigma = 0.5
    vae, x = ae({"kind": "gaussian", "scale": sigma}), torch.randn(B, D)
    loss = make_objective("autoencoder").differentiable_loss(vae.model, vae.guide, x)
    mu = vae.decoder(vae.encoder(x))
    sse = F.mse_loss(mu, x, reduction="sum")
    expected = sse / (2 * sigma**2) + B * D * math.log(sigma * math.sqrt(2 * math.pi))
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)


def test_kl_warmup_and_free_bits_are_refused_for_the_autoencoder(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^objective\.kl_warmup = 3 is not allowed for autoencoder: it has no KL"
    ):
        make_objective("autoencoder", kl_warmup=3)
    with pytest.raises(ConfigError, match=r"'autoencoder:free_bits=0.5': objective\.free_bits = 0\.5 is not"):
        parse_objective("autoencoder:free_bits=0.5")
    make_objective("autoencoder", kl_warmup_unit="steps")  # a unit alone warms nothing up
    config = tiny_config(tmp_path, **{"objective.kl_warmup": 2})
    with pytest.raises(ConfigError, match=r"objective\.kl_warmup = 2 is not allowed"):
        train(config, quiet=True)
    assert not (tmp_path / "run").exists()


def test_an_objective_that_scores_under_q_refuses_the_delta_guide(tmp_path):
    config = tiny_config(tmp_path, **{"objective.kind": "iwae", "objective.particles": 2})
    with pytest.raises(
        ConfigError,
        match=r'objective\.kind = "iwae" needs the density of q\(z\|x\), which '
        r'model\.guide\.kind = "delta" does not have .* objective\.kind = "autoencoder"',
    ):
        train(config, quiet=True)
    assert not (tmp_path / "run").exists()
    # and one run straight through the objective, without training's check, refuses too
    with pytest.raises(NotDefined, match=r"importance weight .* not defined .* point mass"):
        make_objective("iwae", particles=2).differentiable_loss(ae().model, ae().guide, binary())


# ---------------------------------------------------------------------------------------------
# KL, ELBO and log p(x): not defined


def test_site_kl_refuses_a_point_mass_that_pyro_gives_a_finite_kl():
    v = torch.randn(B, Z)
    q, p = dist.Delta(v, event_dim=1), dist.Normal(0.0, 1.0).expand([Z]).to_event(1)
    # Pyro's KL(δ_v || p) is −log p(v): finite, and no KL (the true one is +∞)
    torch.testing.assert_close(kl_divergence(q, p), -p.log_prob(v))
    for closed_form in (True, False):
        with pytest.raises(NotDefined, match=r"KL.* not defined: q is a point mass") as e:
            site_kl(q, p, v, closed_form)
        assert e.value.reason == POINT_MASS


def test_the_elbo_and_kl_are_none_and_the_reconstruction_is_kept(f64):
    vae, x = ae(), binary(40)
    parts = elbo_parts(vae.model, vae.guide, x)
    bce = F.binary_cross_entropy_with_logits(vae.decoder(vae.encoder(x)), x, reduction="none").sum(-1)
    assert parts["elbo"] is None and parts["kl"] is None and parts["kl_estimator"] is None
    torch.testing.assert_close(parts["recon"], -bce, rtol=1e-12, atol=0)
    m = measure(vae.model, vae.guide, x, estimator="is", options={"samples": 5}, encode=vae.encode, seed=3)
    assert (m.elbo, m.elbo_stderr, m.kl, m.kl_estimator, m.log_px, m.marginal) == (None,) * 6
    assert m.recon == pytest.approx(-bce.mean().item(), rel=1e-12)
    assert m.log_px_absent == POINT_MASS and m.estimator == "is"
    assert m.active_units is not None  # the codes' spread is defined


@pytest.mark.parametrize("estimator", [importance_sampling, ais], ids=["is", "ais"])
def test_the_estimators_refuse_the_delta_guide(estimator):
    vae, x = ae(), binary()
    with pytest.raises(NotDefined) as e:
        estimator(vae.model, vae.guide, x, seed=0)
    name = "is" if estimator is importance_sampling else "ais"
    assert str(e.value).startswith(
        f"log p(x) by the estimator {name!r} is not defined for this guide: its site 'z' is a point mass"
    )
    assert "no density" in str(e.value) and e.value.reason == POINT_MASS
    with pytest.raises(NotDefined):
        estimate(name, vae.model, vae.guide, x, seed=0)


def test_keyed_noise_draws_nothing_for_the_delta_guide_and_says_nothing(capsys):
    vae, x = ae(), binary()
    missed = []
    with IndexedNoise(5, torch.arange(B), missed=missed.append):
        z = poutine.trace(vae.guide).get_trace(x).nodes["z"]["value"]
    assert missed == [] and torch.equal(z, vae.encoder(x))
    # a process of several warns for a site its noise cannot key: none here
    loss = Loss(make_objective("autoencoder"), *vae.programs(param_sites=False), [vae], warn=True)
    loss(x, torch.arange(B), 5)
    assert loss.unkeyed == set() and capsys.readouterr().err == ""

    def laplace_guide(x):  # the control: a reparameterized site it does not cover
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Laplace(vae.encoder(x), 1.0).to_event(1))

    Loss(make_objective("elbo"), vae.bare_model, laplace_guide, [vae], warn=True)(x, torch.arange(B), 5)
    assert "the guide's site 'z' is not a reparameterized Normal" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Training: metrics, best.pt and early stopping follow the reconstruction; every step path


@pytest.mark.slow
def test_training_rows_have_no_elbo_and_best_follows_the_reconstruction(tmp_path, monkeypatch, capsys):
    """The validation reconstruction is scripted (best at epoch 2, then worse): best.pt is
    epoch 2, and early stopping with patience 2 stops after epoch 4, in those words."""
    scripted, real, calls = [-50.0, -20.0, -10.0, -15.0, -12.0, -30.0], cb.measure, []

    def measured(*args, **kwargs):
        m = real(*args, **kwargs)
        calls.append(m)
        if len(calls) % 2 == 0:  # each row measures the train split, then the valid one
            m.recon = scripted[len(calls) // 2 - 1]
        return m

    monkeypatch.setattr(cb, "measure", measured)
    config = tiny_config(tmp_path, **{"train.epochs": 6, "train.patience": 2})
    run = train(config)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows == run.history and [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    for row in rows:
        for key in ("train_elbo", "valid_elbo", "train_kl", "valid_kl", "train_elbo_stderr", "kl_estimator"):
            assert row[key] is None, key
        assert isinstance(row["train_recon"], float) and math.isfinite(row["train_recon"])
    valid = [r["valid_recon"] for r in rows]
    assert valid == scripted[:5]
    best = max(range(1, len(rows)), key=lambda e: valid[e])
    assert best == 2
    kept = load_checkpoint(tmp_path / "run" / "best.pt")["training"]
    assert (kept["epoch"], kept["best_epoch"], kept["best_elbo"]) == (2, 2, -10.0)
    err = capsys.readouterr().err
    assert (
        "stopped early: the validation reconstruction has not improved for 2 epochs (best -10.00 at epoch 2"
        in err
    )
    assert "validation reconstruction -12.00 nats per point (untrained: -50.00)" in err
    assert "ELBO" not in err


@pytest.mark.slow
def test_a_trained_autoencoder_reconstructs_better_than_it_started(tmp_path):
    run = train(tiny_config(tmp_path, **{"train.epochs": 3}), quiet=True)
    first, last = run.history[0], run.history[-1]
    assert last["valid_recon"] > first["valid_recon"] + 100  # digits: about −1400 to −70 nats
    assert run.vae is not None and run.vae.config.guide.kind == "delta"


@pytest.mark.slow
def test_compile_false_auto_and_true_train_the_autoencoder(tmp_path):
    recon = {}
    for mode in (False, "auto", True):
        run = train(tiny_config(tmp_path, name=f"run-{mode}", **{"train.compile": mode}), quiet=True)
        recon[mode] = [r["valid_recon"] for r in run.history]
        # a run this short is not compiled by auto: eager (replayed or not, the same bits)
        assert run.history[-1]["step_path"] == ("compiled" if mode is True else "eager")
    assert recon["auto"] == recon[False]  # eager or replayed: bit for bit
    torch.testing.assert_close(torch.tensor(recon[True]), torch.tensor(recon[False]), rtol=1e-4, atol=0)


def test_the_captured_step_equals_eager_for_the_delta_guide():
    torch.manual_seed(0)
    vae, x = ae(), binary()
    model, guide = vae.programs(param_sites=False)
    step = TrainStep(
        make_objective("autoencoder"), model, guide, torch.optim.SGD(vae.parameters(), lr=0.01), seed=7
    )
    index = torch.arange(len(x))
    eager = eager_loss_and_grads(step, x, index, 11, {})
    assert_same(eager, captured_loss_and_grads(step, x, index, 11, {}), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# compare and evaluate


def test_paired_guide_gives_the_autoencoder_the_delta_guide_and_refuses_elbo_with_it():
    normal = Spec("normal")
    assert paired_guide({"kind": "autoencoder"}, normal) == Spec("delta")
    assert paired_guide({"kind": "elbo", "particles": 1}, normal) is normal
    with pytest.raises(ConfigError, match=r'objective\.kind = "elbo" needs the density'):
        paired_guide({"kind": "elbo", "particles": 1}, Spec("delta"))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae-compare") / "cmp"
    config = Config().override(TINY)
    result = compare(
        config, ["elbo", "autoencoder"], epochs=1, eval_samples=5, eval_points=20, out_dir=out, quiet=True
    )
    return result, out


@pytest.mark.slow
def test_compare_sets_a_plain_autoencoder_beside_the_vae(compared):
    result, out = compared
    saved = json.loads((out / "comparison.json").read_text())["runs"]
    assert saved == result.rows
    vae_row, ae_row = saved
    assert (vae_row["objective"], vae_row["guide"]) == ("elbo", "normal")
    assert vae_row["valid_elbo"] < vae_row["log_px"] < 0 and vae_row["log_px_absent"] is None
    assert (ae_row["objective"], ae_row["guide"]) == ("autoencoder (delta guide)", "delta")
    assert ae_row["log_px"] is None and ae_row["log_px_absent"] == POINT_MASS
    assert ae_row["valid_elbo"] is None and ae_row["valid_elbo_stderr"] is None and ae_row["kl"] is None
    assert math.isfinite(ae_row["recon"]) and ae_row["epochs"] == 1
    assert ae_row["run_dir"].endswith("autoencoder-seed0")
    assert Config.load(out / "runs" / "autoencoder-seed0" / "config.toml").model.guide.kind == "delta"
    assert Config.load(out / "runs" / "elbo-seed0" / "config.toml").model.guide.kind == "normal"
    assert [s["objective"] for s in result.summary] == ["elbo", "autoencoder (delta guide)"]


def test_compare_refuses_an_elbo_run_on_a_delta_base_config_before_training(tmp_path):
    config = Config().override({**TINY, "model.guide.kind": "delta"})
    with pytest.raises(ConfigError, match=r'objective\.kind = "elbo" needs the density'):
        compare(config, ["elbo", "autoencoder"], epochs=1, out_dir=tmp_path / "cmp", quiet=True)
    assert not (tmp_path / "cmp").exists()


def test_evaluate_says_log_px_is_not_defined_and_gives_the_reconstruction(compared, capsys):
    _, out = compared
    run_dir = out / "runs" / "autoencoder-seed0"
    with pytest.raises(
        NotDefined,
        match=r"log p\(x\) is not defined for the run .*the delta guide is a point "
        r"estimate: q\(z\|x\) has no density, so neither the estimator 'is' nor the ELBO",
    ) as e:
        evaluate_run(run_dir, points=20, options={"samples": 5})
    recon = float(str(e.value).split("log p(x | f(x)) is ")[1].split(" ")[0])
    row = json.loads((out / "comparison.json").read_text())["runs"][1]
    assert recon == pytest.approx(row["recon"], abs=0.006)  # the same 20 points, model and seed
    assert not list(run_dir.glob("evaluation-*.json"))
    assert main(["evaluate", str(run_dir), "--samples", "5", "--points", "20", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-vae: error: log p(x) is not defined for the run")
