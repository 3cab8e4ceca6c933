"""pyro_vae.training.paths: ``train.compile = "auto"`` decides from the config and a resumed
run's record, never from a clock."""

import dataclasses

import pytest

from pyro_vae import VAE, Config
from pyro_vae.training import paths


@pytest.mark.parametrize(
    "seconds,recorded,target",
    [
        (paths.AUTO_SECONDS, None, "compiled"),
        (paths.AUTO_SECONDS - 1, None, "replayed"),
        (paths.REPLAY_SECONDS, None, "replayed"),
        (paths.REPLAY_SECONDS - 1, None, None),
        (0.0, "compiled", "compiled"),  # a resumed compiled run stays compiled
        (1e9, "replayed", "replayed"),  # an uncompiled one is never compiled
        (1e9, "eager", "replayed"),  # eager and replayed compute the same bits
        (1.0, "replayed", None),
    ],
)
def test_auto_decides_from_the_configs_estimate_and_the_recorded_path(seconds, recorded, target):
    assert paths.plan("auto", seconds, recorded)[0] == target
    assert paths.plan(True, seconds, recorded) == ("compiled", None)
    assert paths.plan(False, seconds, recorded)[0] is None
    if target is None:
        reason = paths.plan("auto", seconds, recorded)[1]
        assert f"would take about {seconds:.0f} s eager by the config's estimate" in reason


def test_the_cost_model_replays_the_default_run_and_compiles_a_long_mnist_run():
    """The default run (digits, 300 epochs of 17 steps, batch 100) replays; examples/
    binarized_mnist.toml's MLP (670424 parameters) compiles over 50 epochs of 500 steps and
    runs one epoch eager."""
    params = sum(p.numel() for p in VAE(dataclasses.replace(Config().model, data_dim=64)).parameters())
    digits = paths.eager_seconds(params, 100, 300 * 17, "cpu")
    assert digits == pytest.approx(300 * 17 * (4e-3 + 6 * params * 100 / 1e11))
    assert paths.plan("auto", digits)[0] == "replayed"
    mnist = lambda epochs: paths.eager_seconds(670424, 100, epochs * 500, "cpu")  # noqa: E731
    assert paths.plan("auto", mnist(50))[0] == "compiled"
    assert paths.plan("auto", mnist(1))[0] is None
