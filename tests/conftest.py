"""Shared test setup: seeds, isolated Pyro state, registries left as found, devices, the shared
data directory, no internet."""

import contextlib
import os
import urllib.error
import urllib.parse
from pathlib import Path

import pyro
import pytest
import torch

from pyro_vae.core.registry import REGISTRIES
from pyro_vae.training.callbacks import Figures
from tests.helpers import DRAW_FIGURES


def pytest_configure(config):
    """Under pytest-xdist (``-n 2``, as pyproject.toml sets) each worker has one core of its own:
    one torch thread in it and in the processes its tests start, so that the workers do not
    fight over both cores (the small models here gain nothing from a second thread)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, requires_cuda]),
]


@pytest.fixture(scope="session", autouse=True)
def _no_run_figures():
    """A run's pictures at the end of training (samples, reconstructions, curves: about a second
    of matplotlib each time) are drawn only in the tests marked ``figures``, which look at them;
    every other run, in a test or a fixture, ends without them, as a run whose parameters are
    not finite does. Processes started through tests/stop_after.py do the same unless
    ``FIGURES=1``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figures, "on_end", lambda self, state: None)
        yield


@pytest.fixture(autouse=True)
def _run_figures(request, monkeypatch):
    """The pictures of the runs that a test marked ``figures`` trains (:func:`_no_run_figures`)."""
    if request.node.get_closest_marker("figures") is not None:
        monkeypatch.setattr(Figures, "on_end", DRAW_FIGURES)


@pytest.fixture(autouse=True)
def _isolate():
    """Every test starts from the same seed with an empty param store and validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """No test reaches the internet (only loopback and file URLs open) or the user's dataset
    cache (an empty directory of its own stands in; tests that fetch set their own)."""
    from pyro_vae.data import downloads

    real = downloads.open_url

    def loopback_only(url: str, timeout: float):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "file" and parts.hostname not in ("127.0.0.1", "localhost"):
            raise urllib.error.URLError("tests stay off the internet")
        return real(url, timeout)

    monkeypatch.setattr(downloads, "open_url", loopback_only)
    monkeypatch.setenv(downloads.DATA_ENV, str(tmp_path_factory.mktemp("no-cache")))
    monkeypatch.delenv(downloads.MIRROR_ENV, raising=False)


@pytest.fixture
def scoped_registries():
    """Parts the test registers, in any family (priors ... datasets, loggers), are gone after it:
    every registry is left exactly as it was, entries it replaced restored, and plugin files the
    test imported are forgotten, so that a later test naming one imports (registers) it anew."""
    from pyro_vae.core import plugins

    imported = dict(plugins._IMPORTED)
    with contextlib.ExitStack() as stack:
        for registry in REGISTRIES.values():
            stack.enter_context(registry.scoped())
        yield
    plugins._IMPORTED.clear()
    plugins._IMPORTED.update(imported)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def binarized_mnist() -> Path:
    path = SHARED_DATA / "binarized_mnist.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (it sits beside the project in CI)")
    return path


@pytest.fixture
def f64():
    """Float64 as the default dtype for the test (precision checks, closed forms)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written in, even by root: immutable (``chattr +i``) when
    running as root, whom permission bits do not stop, else mode 0o500. Undone in teardown,
    so that pytest can remove tmp_path. Skips where ``chattr`` is absent or refused."""
    import os
    import shutil
    import subprocess

    path = tmp_path / "read-only"
    path.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        chattr = shutil.which("chattr")
        if chattr is None:
            pytest.skip("chattr is not installed (needed to make a directory read-only for root)")
        made = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"chattr +i failed here: {made.stderr.strip()}")
    else:
        path.chmod(0o500)
    try:
        yield path
    finally:
        if as_root:
            subprocess.run([chattr, "-i", str(path)], check=True)
        else:
            path.chmod(0o700)


@pytest.fixture(scope="session")
def digits_run_dir(tmp_path_factory) -> Path:
    """One tiny run trained on the digits (3 epochs, hidden layers of 16), trained once per
    process for the tests that only measure or draw from a trained run (evaluate, sample,
    interpolate). They may write their own outputs into it, never change what training left."""
    from pyro_vae.cli.main import main

    run_dir = tmp_path_factory.mktemp("digits") / "run"
    argv = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]", "--quiet"]
    assert main(["train", "--train.epochs", "3", "--train.run_dir", str(run_dir), *argv]) == 0
    return run_dir
