"""Importance sampling in chunks (:mod:`pyro_vae.inference.estimators.chunks`): chunks of one
shape that keep their tensors small, and the compiled chunk giving the eager estimate."""

import pytest
import torch

import pyro_vae
from pyro_vae.inference.estimators import chunks
from pyro_vae.inference.estimators.chunks import ELEMENTS, chunk_length
from tests.models.test_parts_grid import build


@pytest.mark.slow
def test_compiled_importance_sampling_equals_eager_per_point(monkeypatch):
    made = []
    real = chunks.compile_graph
    monkeypatch.setattr(chunks, "compile_graph", lambda *a: made.append(a) or real(*a))
    torch.manual_seed(0)
    vae = build("normal", "iaf", "bernoulli")
    x = (torch.rand(37, 6) > 0.5).float()  # batches of 16, 16 and 5: the last one eager
    estimates = {
        mode: pyro_vae.importance_sampling(
            vae.model, vae.guide, x, seed=3, batch_size=16, samples=60, chunk_size=20, compile=mode
        )
        for mode in (True, False)
    }
    torch.testing.assert_close(estimates[True].log_px, estimates[False].log_px, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(estimates[True].ess, estimates[False].ess, rtol=1e-4, atol=1e-4)
    assert len(made) == 1  # one graph, for the (16, 6) batches' chunks of 20


def test_chunks_keep_their_tensors_small_and_of_one_shape():
    # binarized MNIST, K = 5000 in chunks of at most 500, 100 points: 25 samples, 200 chunks
    assert chunk_length(5000, 500, 100, 784) == 25
    assert chunk_length(1000, 500, 100, 784) == 25
    assert chunk_length(7, 500, 100, 784) == 7  # all in one
    assert chunk_length(1000, 10, 100, 784) == 10  # the asked bound holds
    for samples, width in [(997, 784), (5000, 64), (30, 10_000)]:
        k = chunk_length(samples, 500, 100, width)
        assert 1 <= k <= 500 and (k * 100 * width <= ELEMENTS or k == 1)
