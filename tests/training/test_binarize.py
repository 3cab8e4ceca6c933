"""data.binarize = "dynamic": every epoch a fresh Bernoulli draw of each training point, keyed by
(seed, epoch, point), whatever the batches, the processes or a resume."""

import contextlib
import json
import signal

import numpy as np
import pytest
import torch

from pyro_vae import Config, DataConfig, load_data, train
from pyro_vae.core import interrupts
from pyro_vae.core.distributed import World
from pyro_vae.core.interrupts import Interrupted, Signals
from pyro_vae.training import trainer
from pyro_vae.training.binarize import DynamicBinarization, dynamic_binarization, fresh_bits
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.loop import TrainState, fit
from pyro_vae.training.run import CHECKPOINT, METRICS
from pyro_vae.training.step import TrainStep


def within(observed: float, p: float, n: int, errors: float = 4.0) -> bool:
    """Whether a mean of ``n`` Bernoulli(p) bits lies within ``errors`` standard errors of p."""
    return abs(observed - p) <= errors * (p * (1 - p) / n) ** 0.5


def test_the_mean_of_the_draws_is_the_grey_value():
    levels = torch.tensor([0.0, 0.02, 0.3, 0.5, 0.77, 0.99, 1.0])
    probs = levels.repeat(2000, 1)  # (2000, 7): a column per grey level
    index = torch.arange(2000)
    bits = torch.stack([fresh_bits(probs, index, seed=3, epoch=e) for e in range(5)])  # (5, 2000, 7)
    assert set(torch.unique(bits).tolist()) == {0.0, 1.0} and bits.dtype == torch.float32
    means = bits.mean(dim=(0, 1))
    assert means[0] == 0 and means[-1] == 1  # grey 0 and 1 are drawn as themselves, always
    for p, mean in zip(levels[1:-1].tolist(), means[1:-1].tolist(), strict=True):
        assert within(mean, p, 10_000), (p, mean)


@pytest.mark.parametrize(
    "other", [dict(seed=3, epoch=1), dict(seed=4, epoch=0)], ids=["another-epoch", "another-seed"]
)
def test_another_epoch_or_seed_draws_independently(other):
    probs, index = torch.full((1000, 40), 0.3), torch.arange(1000)
    a = fresh_bits(probs, index, seed=3, epoch=0)
    b = fresh_bits(probs, index, **other)
    n = a.numel()
    assert within((a * b).mean().item(), 0.3 * 0.3, n)  # P(both 1) = p² for independent draws
    assert within((a == b).float().mean().item(), 0.3**2 + 0.7**2, n)
    # within a draw, neighbouring pixels and points are independent too
    assert within((a[:, 1:] * a[:, :-1]).mean().item(), 0.09, a[:, 1:].numel())
    assert within((a[1:] * a[:-1]).mean().item(), 0.09, a[1:].numel())


def test_a_points_bits_do_not_depend_on_the_batch_the_order_or_the_process():
    probs = torch.rand(97, 20, generator=torch.Generator().manual_seed(0))
    binarize = DynamicBinarization(probs, seed=11)
    whole = binarize(torch.zeros(97, 20), torch.arange(97), 2)
    order = torch.randperm(97, generator=torch.Generator().manual_seed(1))
    for batch in order.split(7):  # batches of 7 in another order, each shared by 2 processes
        for rank in range(2):
            share = World(rank=rank, size=2).share(batch)
            assert torch.equal(binarize(torch.zeros(len(share), 20), share, 2), whole[share])
    assert not torch.equal(binarize(torch.zeros(97, 20), torch.arange(97), 3), whole)


def test_fit_trains_each_step_on_the_hooks_minibatch():
    probs = torch.rand(10, 6, generator=torch.Generator().manual_seed(0))
    seen = {}

    def step(x, *, index, epoch, step):
        for i, row in zip(index.tolist(), x, strict=True):
            seen.setdefault((batch_size, int(epoch)), {})[i] = row.clone()
        return x.sum()

    for batch_size in (3, 10):
        state = TrainState(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
        fit(state, step, probs, epochs=2, batch_size=batch_size, minibatch=DynamicBinarization(probs, 5))
    for epoch in range(2):
        expected = fresh_bits(probs, torch.arange(10), 5, epoch)
        for batch_size in (3, 10):
            got = torch.stack([seen[batch_size, epoch][i] for i in range(10)])
            assert torch.equal(got, expected), (batch_size, epoch)


def test_only_dynamic_data_gets_the_hook(tmp_path):
    path = tmp_path / "grey.npz"
    np.savez(path, train=np.full((6, 4), 0.25), valid=np.full((2, 4), 0.75))
    assert dynamic_binarization(load_data(DataConfig(path=str(path))), seed=0) is None
    data = load_data(DataConfig(path=str(path), binarize="dynamic"))
    hook = dynamic_binarization(data, seed=4)
    assert isinstance(hook, DynamicBinarization) and hook.seed == 4 and hook.probs is data.train_probs


# ---------------------------------------------------------------------------------------------
# Training: fresh bits every epoch, and a resumed run is the uninterrupted one, bitwise
# ---------------------------------------------------------------------------------------------

TINY = {
    "model.encoder.hidden": [16],
    "model.decoder.hidden": [16],
    "model.likelihood": {"kind": "bernoulli"},  # refused on grey digits: only bits reach it
    "data.binarize": "dynamic",
    "train.epochs": 2,
    "train.compile": False,
    "train.device": "cpu",
}
TIMED = {"seconds", "epoch_seconds", "items_per_second"}


def same_values(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a if k not in TIMED)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_train_gives_the_loop_the_fresh_draws_of_its_seed(monkeypatch, tmp_path):
    passed = {}

    def fake_fit(state, step, train, **options):
        passed.update(options, train=train)
        return state

    monkeypatch.setattr(trainer, "fit", fake_fit)
    config = Config().override({**TINY, "train.seed": 9, "train.run_dir": str(tmp_path / "run")})
    train(config, quiet=True)
    hook, data = passed["minibatch"], load_data(config.data)
    assert isinstance(hook, DynamicBinarization) and hook.seed == 9
    assert torch.equal(hook.probs, data.train_probs) and torch.equal(passed["train"], data.train)


@pytest.mark.slow
def test_a_resumed_dynamic_run_equals_the_uninterrupted_one(monkeypatch, tmp_path):
    grey = load_data(DataConfig()).train  # digits in [0, 1]: 200 to train on, 60 to validate
    path = tmp_path / "grey.npz"
    np.savez(path, train=grey[:200].numpy(), valid=grey[200:260].numpy())
    tiny = {**TINY, "data.path": str(path), "train.batch_size": 50}  # 4 steps an epoch
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    train(Config().override({**tiny, "train.run_dir": str(reference)}), quiet=True)
    # SIGINT as it reaches the loop after step 6: 2 steps into the second epoch
    signals, steps, step = Signals(), [], TrainStep.__call__

    def counting_step(self, x, **kwargs):
        steps.append(kwargs["step"])
        if len(steps) == 6:
            signals.received = signal.SIGINT
        return step(self, x, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(interrupts, "catching", lambda: contextlib.nullcontext(signals))
        patch.setattr(TrainStep, "__call__", counting_step)
        with pytest.raises(Interrupted, match="interrupted by SIGINT in epoch 2 at step 6"):
            train(Config().override({**tiny, "train.run_dir": str(run_dir)}), quiet=True)
    assert load_checkpoint(run_dir / CHECKPOINT)["training"]["batch"] == 2
    train(resume=run_dir, quiet=True)
    a, b = load_checkpoint(run_dir / CHECKPOINT), load_checkpoint(reference / CHECKPOINT)
    for part in ("model", "training", "rng"):
        assert same_values(a[part], b[part]), part
    rows = [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and same_values(rows, expected)
