"""pyro_vae.inference.noise: counter-based standard normals and batch-independent draws."""

import math

import torch
from ppca import ppca

from pyro_vae.inference.noise import IndexedNoise, indexed_normal
from pyro_vae.inference.traces import local_terms

N = 10**5


def test_indexed_normal_is_a_function_of_its_indices():
    p, s, c = torch.arange(6), torch.arange(4), torch.arange(5)
    grid = indexed_normal(3, p[:, None, None], s[None, :, None], c)  # (6, 4, 5)
    assert grid.shape == (6, 4, 5)
    pp, ss, cc = torch.meshgrid(p, s, c, indexing="ij")
    flat = indexed_normal(3, pp.reshape(-1), ss.reshape(-1), cc.reshape(-1))
    assert torch.equal(flat.reshape(6, 4, 5), grid)
    assert torch.equal(indexed_normal(3, p[2:4, None, None], s[None, 1:, None], c[3:]), grid[2:4, 1:, 3:])
    assert indexed_normal(3, torch.tensor(5), 2, 1) == grid[5, 2, 1]  # scalar indices
    assert not torch.equal(indexed_normal(4, p[:, None, None], s[None, :, None], c), grid)


def test_indexed_normal_moments():
    x = indexed_normal(7, torch.arange(N), 0, 0, dtype=torch.float64)
    assert abs(x.mean()) < 4 / math.sqrt(N)
    assert abs(x.var() - 1) < 4 * math.sqrt(2 / N)
    assert torch.isfinite(x).all()


def _corr(a, b):
    return torch.corrcoef(torch.stack([a, b]))[0, 1]


def test_indexed_normal_uncorrelated_across_indices():
    points = torch.arange(N)
    x = indexed_normal(7, points, 0, 0, dtype=torch.float64)
    others = {
        "seed": indexed_normal(8, points, 0, 0, dtype=torch.float64),
        "sample": indexed_normal(7, points, 1, 0, dtype=torch.float64),
        "coord": indexed_normal(7, points, 0, 1, dtype=torch.float64),
    }
    for name, y in others.items():
        assert abs(_corr(x, y)) < 4 / math.sqrt(N), name
    assert abs(_corr(x[:-1], x[1:])) < 4 / math.sqrt(N - 1)  # neighbouring points


def _log_w(vae, x, seed, first_point, first_sample, particles):
    with IndexedNoise(seed, first_point=first_point, first_sample=first_sample):
        return local_terms(vae.model, vae.guide, x, particles=particles, nesting=1).log_w


def test_indexed_noise_makes_log_w_independent_of_the_batch_split(f64):
    vae, x, *_ = ppca(torch.device("cpu"), shift=0.2)
    whole = _log_w(vae, x, 11, 0, 0, 6)
    assert whole.shape == (6, len(x))
    by_points = torch.cat([_log_w(vae, x[:15], 11, 0, 0, 6), _log_w(vae, x[15:], 11, 15, 0, 6)], dim=1)
    by_samples = torch.cat([_log_w(vae, x, 11, 0, 0, 2), _log_w(vae, x, 11, 0, 2, 4)], dim=0)
    torch.testing.assert_close(by_points, whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(by_samples, whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_log_w(vae, x, 11, 0, 0, 6), whole, rtol=0, atol=0)  # global RNG unused
    assert not torch.allclose(_log_w(vae, x, 12, 0, 0, 6), whole)  # the seed matters
    shifted = _log_w(vae, x[1:], 11, 0, 0, 6)  # the wrong first_point gives other draws
    assert not torch.allclose(shifted, whole[:, 1:])
