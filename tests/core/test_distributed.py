"""Several processes (torchrun, gloo on the CPU) train and measure what one process does.

Each job is real: ``python -m torch.distributed.run`` starts the processes, on the loopback
address, from this test; the one-process references run in this process. Parameters after
training agree with the one-process run to a relative 1e-5 of their scale (the all-reduce's
sum order is the only difference), metrics rows agree alike, and evaluation is per point the
same.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae.cli.main import main
from pyro_vae.core import distributed
from pyro_vae.core.errors import ConfigError
from pyro_vae.data.catalog import digits
from pyro_vae.inference.objectives import make_objective, parse_objective
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.step import Loss, check_synchronised, declared_params, owners
from tests import one_factor
from tests.ppca import ppca
from tests.torchrun_jobs import HOOK, ROOT, SMALL, TIMEOUT, finish, free_port, our_lines, run_job, torchrun

pytestmark = pytest.mark.slow

# KL warm-up over the first 2 epochs and free bits of 0.25 nats per dimension, for each objective
OBJECTIVES = [
    "elbo:kl_warmup=2,free_bits=0.25",
    "meanfield:kl_warmup=2,free_bits=0.25",
    "iwae:k=5,kl_warmup=2,free_bits=0.25",
]
EPOCHS = 3
TIMED = {"seconds", "items_per_second"}


def assert_same_run(a: Path, b: Path, rtol: float = 1e-5) -> None:
    """Parameters within ``rtol`` of each tensor's scale; metrics rows alike; the same steps."""
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert (
        ca["training"]["step"] == cb["training"]["step"]
        and ca["training"]["epoch"] == cb["training"]["epoch"]
    )
    assert ca["model"].keys() == cb["model"].keys()
    for name, p in ca["model"].items():
        assert_close_to_scale(p, cb["model"][name], rtol, name)
    # Adam's moments carry the gradients' scale, which its updates do not: a sum, not a mean
    moments_a, moments_b = ca["training"]["optimizer"]["state"], cb["training"]["optimizer"]["state"]
    assert moments_a.keys() == moments_b.keys()
    for i, state in moments_a.items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert_close_to_scale(state[key], moments_b[i][key], rtol, f"{key} {i}")
    rows_a = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert len(rows_a) == len(rows_b) == ca["training"]["epoch"] + 1
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra.keys() == rb.keys()
        for key, value in ra.items():
            if key in TIMED or not isinstance(value, float):
                assert key in TIMED or value == rb[key], key
            else:
                assert rb[key] == pytest.approx(value, rel=rtol, abs=rtol), (ra["epoch"], key)


def assert_close_to_scale(p: torch.Tensor, q: torch.Tensor, rtol: float, what: str) -> None:
    scale = p.abs().max().item()
    assert (p - q).abs().max().item() <= rtol * scale, what


def one_process(run_dir: Path, *args) -> Path:
    assert main(["train", *SMALL, "--train.run_dir", str(run_dir), *args, "--quiet"]) == 0
    return run_dir


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """``compare`` on 2 processes: each objective's run trained on both, in turn."""
    out = tmp_path_factory.mktemp("compare")
    args = ["compare", "--objectives", *OBJECTIVES, "--epochs", str(EPOCHS), "--eval-samples", "10"]
    run_job([*args, "--eval-points", "60", "--out", str(out), *SMALL])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_two_processes_train_the_one_process_model(compared, tmp_path, objective):
    kind, _, options = objective.partition(":")
    overrides = ["--objective.kind", kind, "--train.epochs", str(EPOCHS)]
    for pair in options.split(","):
        key, _, value = pair.partition("=")
        overrides += [f"--objective.{'particles' if key == 'k' else key}", value]
    reference = one_process(tmp_path / "one", *overrides)
    name = objective.replace(":", "_")
    assert_same_run(compared / "runs" / f"{name}-seed0", reference)


def test_compare_on_two_processes_writes_its_table(compared):
    table = json.loads((compared / "comparison.json").read_text())
    assert [row["objective"] for row in table["summary"]] == OBJECTIVES
    assert all(row["epochs"] == EPOCHS for row in table["runs"])


@pytest.mark.slow
def test_evaluate_on_two_processes_equals_one_process_per_point(compared, tmp_path):
    run = compared / "runs" / f"{OBJECTIVES[2].replace(':', '_')}-seed0"
    for estimator in (
        ["--estimator", "is", "--samples", "30"],
        ["--estimator", "ais", "--chains", "3", "--steps", "4"],
    ):
        args = ["evaluate", str(run), *estimator, "--points", "130", "--batch-size", "40", "--device", "cpu"]
        run_job([*args, "--out", str(tmp_path / "two.json")])
        assert main([*args, "--out", str(tmp_path / "one.json"), "--quiet"]) == 0
        two, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("two", "one"))
        assert len(two["log_px_per_point"]) == 130
        torch.testing.assert_close(
            torch.tensor(two["log_px_per_point"]), torch.tensor(one["log_px_per_point"]), rtol=1e-5, atol=1e-5
        )
        # k̂ and the errors pooled over all 130 points, not over each process's share
        for key in ("pareto_k_per_point", "mc_stderr_per_point"):
            if one[key] is None:  # AIS with 3 chains: no tail to fit
                assert two[key] is None
                continue
            a, b = (torch.tensor([math.nan if v is None else v for v in r[key]]) for r in (two, one))
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)
        assert two["elbo"] == pytest.approx(one["elbo"], rel=1e-6)


@pytest.mark.slow
def test_resume_two_processes_on_one_and_one_on_two(tmp_path):
    reference = one_process(tmp_path / "reference", "--train.epochs", str(EPOCHS))
    # two processes, SIGINT to rank 1 alone after step 20 (within epoch 2): both stop, one checkpoint
    cut = tmp_path / "cut"
    env = {"STOP_AFTER": "20", "STOP_SIGNAL": "SIGINT", "STOP_RANK": "1"}
    code, _, err = finish(
        torchrun(["train", *SMALL, "--train.epochs", str(EPOCHS), "--train.run_dir", str(cut)], env=env)
    )
    assert code != 0 and "interrupted by SIGINT in epoch 2" in err, err[-2000:]
    assert load_checkpoint(cut / "checkpoint.pt")["training"]["batch"] in (4, 5)  # voted one step late
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0  # one process
    assert_same_run(cut, reference)
    # one process stopped after step 30, resumed on two
    again = tmp_path / "again"
    hooked = subprocess.run(
        [
            sys.executable,
            str(HOOK),
            "train",
            *SMALL,
            "--train.epochs",
            str(EPOCHS),
            "--train.run_dir",
            str(again),
            "--quiet",
        ],
        env={**os.environ, "STOP_AFTER": "30", "STOP_SIGNAL": "SIGTERM"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert hooked.returncode == 143, hooked.stderr[-2000:]
    run_job(["train", "--resume", str(again)])
    assert_same_run(again, reference)


@pytest.mark.slow
def test_processes_given_different_configs_are_refused(tmp_path):
    env = {"RANK_ARGS_1": "--train.lr 0.01"}
    code, _, err = finish(
        torchrun(["train", *SMALL, "--train.epochs", "1", "--train.run_dir", str(tmp_path / "r")], env=env)
    )
    lines = our_lines(err)
    assert code != 0 and len(lines) == 1, err[-3000:]
    assert "process 1 was given another config than process 0 (train.lr = 0.001 → 0.01)" in lines[0]
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_two_nodes_on_the_loopback_address_train_the_one_process_model(tmp_path):
    port = free_port()
    nodes = [
        torchrun(
            ["train", *SMALL, "--train.epochs", "2", "--train.run_dir", str(tmp_path / "two-nodes")],
            launcher=[
                "--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}",
                "--master-addr=127.0.0.1", f"--master-port={port}",
            ],
        )
        for rank in (0, 1)
    ]  # fmt: skip
    for job in nodes:
        code, _, err = finish(job)
        assert code == 0, err[-3000:]
    assert_same_run(tmp_path / "two-nodes", one_process(tmp_path / "one", "--train.epochs", "2"))


# -- global minibatches with empty shares -----------------------------------------------------

#: (train.batch_size, data.valid_fraction): the digits' 1797 points (from a file: the processes
#: need not load scikit-learn) hold out round(f·1797), so the training points are 13, 13, 102
#: and 1617; each run's last minibatch (or every one, at batch 1, and at batch 2 on 3 processes)
#: leaves some processes' shares empty
SHORT = {1: 0.9928, 2: 0.9928, 101: 0.9433, 1616: 0.1}
SHORT_ARGS = ["--train.epochs", "1", "--objective.free_bits", "0.25", "--train.eval_batch_size", "2000"]
#: trains one run per argument (a JSON list of override words) in one torchrun job, its figures
#: not drawn: several trainings in one process group
TRAIN_MANY = """
import json, sys
import pyro_vae.training.callbacks
from pyro_vae.cli.arguments import overrides
from pyro_vae.config.run_config import load_config
from pyro_vae.core import distributed
from pyro_vae.training.trainer import train

pyro_vae.training.callbacks.Figures.on_end = lambda self, state: None
try:
    for words in sys.argv[1:]:
        train(load_config(None, overrides(json.loads(words))), quiet=True)
finally:
    distributed.leave()
"""


def short_args(batch: int, data: Path) -> list[str]:
    fraction = ["--data.valid_fraction", str(SHORT[batch]), "--data.path", str(data)]
    return [*SHORT_ARGS, *fraction, "--train.batch_size", str(batch)]


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """``runs(nproc)``: the run directories, by batch size, of one torchrun job of ``nproc``
    processes training every run of :data:`SHORT`; ``runs(1)`` those of one process."""
    out, done = tmp_path_factory.mktemp("short"), {}
    script, data = out / "train_many.py", out / "digits.npy"
    script.write_text(TRAIN_MANY)
    np.save(data, digits()["data"])

    def runs(nproc: int) -> dict[int, Path]:
        if nproc not in done:
            dirs = {batch: out / f"{nproc}-{batch}" for batch in SHORT}
            if nproc == 1:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr("pyro_vae.training.callbacks.Figures.on_end", lambda self, state: None)
                    for batch, run_dir in dirs.items():
                        one_process(run_dir, *short_args(batch, data))
            else:
                words = [
                    json.dumps([*SMALL, *short_args(batch, data), "--train.run_dir", str(run_dir)])
                    for batch, run_dir in dirs.items()
                ]
                job = subprocess.Popen(
                    [sys.executable, "-m", "torch.distributed.run", "--standalone",
                     f"--nproc-per-node={nproc}", str(script), *words],
                    env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                code, _, err = finish(job)
                assert code == 0, err[-3000:]
            done[nproc] = dirs
        return done[nproc]

    return runs


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 3])
@pytest.mark.parametrize("batch", sorted(SHORT))
def test_processes_with_empty_shares_train_the_one_process_model(short_runs, nproc, batch):
    """A rank with no points of a minibatch still joins DDP's all-reduce, free bits' sum, the
    loss's sum and the vote, adding nothing: the model is the one-process model."""
    assert_same_run(short_runs(nproc)[batch], short_runs(1)[batch])


# -- in this process: the pieces -------------------------------------------------------------


def test_blocks_cover_every_point_once_in_whole_batches():
    for n, unit, size in [(130, 40, 2), (10, 100, 3), (1000, 7, 4), (5, 1, 8)]:
        blocks = [distributed.World(rank, size).block(n, unit) for rank in range(size)]
        assert [i for lo, hi in blocks for i in range(lo, hi)] == list(range(n))
        assert all(lo % unit == 0 for lo, hi in blocks if hi > lo)


def test_shares_of_a_global_batch_are_contiguous_and_cover_it():
    batch = torch.arange(7)
    shares = [distributed.World(rank, 3).share(batch) for rank in range(3)]
    assert [s.tolist() for s in shares] == [[0, 1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize("objective", ["elbo", "meanfield", "iwae:k=5", "iwae_dreg:k=3", "elbo_stl"])
def test_keyed_noise_makes_a_batchs_loss_the_sum_of_its_shares(objective):
    """The identity several processes rest on: with each point's noise keyed by its dataset
    index, the loss of a batch is the sum of the losses of any split of it, in any order."""
    vae, x, *_ = ppca("cpu", shift=0.3, scale_factor=0.7)  # not the exact posterior: draws matter

    loss = Loss(make_objective(**parse_objective(objective)[1]), *vae.programs(param_sites=False))
    index = torch.arange(len(x))
    whole = loss(x, index, 123)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    a, b = order[: len(x) // 3], order[len(x) // 3 :]
    split = loss(x[a], index[a], 123) + loss(x[b], index[b], 123)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-4)
    assert abs(loss(x, index, 124).item() - whole.item()) > 1e-3  # another step, other draws


def test_parameters_in_the_global_param_store_are_refused_for_several_processes():
    x = one_factor.data(20, 5).train
    params = declared_params(one_factor.model, one_factor.guide, make_objective("elbo"), x)
    with pytest.raises(
        ConfigError, match=r"'w'.* live in Pyro's global param store, which several processes"
    ):
        check_synchronised(params, owners(one_factor.model, one_factor.guide))
    vae, *_ = ppca("cpu")
    model, guide = vae.programs(param_sites=False)
    check_synchronised(dict(vae.named_parameters()), owners(model, guide))  # a module's own: fine


def test_nccl_without_cuda_names_the_fix(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r'train.backend = "nccl" needs CUDA .* use train.backend = "gloo"'):
        distributed.join(torch.device("cpu"), "nccl")


def test_a_guide_site_the_keyed_noise_cannot_cover_is_named_once(capsys):
    import pyro
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5 * torch.ones(x.shape[0])))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x[:, 0])

    def guide(x):
        p = pyro.param("p", torch.tensor(0.3))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(p.expand(x.shape[0])))

    loss = Loss(make_objective("tracegraph"), model, guide, warn=True)
    x = torch.randn(8, 1)
    for step in range(3):
        loss(x, torch.arange(8), step)
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1 and "the guide's site 'c' is not a reparameterized Normal" in lines[0]
