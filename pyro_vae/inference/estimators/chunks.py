"""One importance-sampling chunk: the log weights of k samples for B points, eager or compiled.

    log w[k, n] = log p(x_n, z_kn) − log q(z_kn | x_n),      z_kn from the keyed noise

(:func:`pyro_vae.inference.traces.local_terms` under :class:`~pyro_vae.inference.noise.IndexedNoise`),
which :mod:`pyro_vae.inference.estimators.importance` sums chunk by chunk.

Memory: a chunk's largest tensors are ``(k, B, D)`` (the decoder's output and the
likelihood's terms). Blocks larger than glibc's mmap threshold (at most 32 MB) are mapped
from the kernel when allocated and unmapped when freed, so chunks of such tensors fault in
every page anew each time: with k = 500, B = 100 and D = 784 (157 MB per tensor) an
evaluation spent 40 % of its time in the kernel. :func:`chunk_length` keeps ``k·B·D`` at
:data:`ELEMENTS` or below, where the allocator reuses its blocks.

Compiling: ``auto`` times the second chunk (the first warms up) and, when the chunks left would take
:data:`~pyro_vae.inference.graphs.AUTO_SECONDS` or more, captures the chunk as one graph
(:mod:`pyro_vae.inference.graphs`) with the parameters, points, first sample and seed as inputs,
compiles it and checks its first result against the eager chunk's. Chunks of another shape
(a last, partial batch of points) run eager.
"""

import time
from collections.abc import Callable

import torch
from torch import nn

from pyro_vae.inference.graphs import (
    AUTO_SECONDS,
    Uncompilable,
    agree,
    capture,
    compile_graph,
    inputs_of,
    owners,
)
from pyro_vae.inference.noise import IndexedNoise
from pyro_vae.inference.traces import local_terms

#: the most values a chunk's (k, B, D) tensors hold: 8 MB of float32, under glibc's mmap threshold
ELEMENTS = 2**21


def chunk_length(samples: int, chunk_size: int, points: int, width: int) -> int:
    """Samples per chunk: at most ``chunk_size`` and ``ELEMENTS / (points · width)``, and where
    one is near, a divisor of ``samples`` so that every chunk has one shape."""
    k = max(1, min(chunk_size, samples, ELEMENTS // max(1, points * width)))
    return next((d for d in range(k, max(1, k // 2) - 1, -1) if samples % d == 0), k)


class LogWeights(nn.Module):
    """``forward(x, points, first_sample, seed, particles)``: log w, ``(particles, B)``; its
    ``parts`` are the modules that hold the model's and guide's parameters."""

    def __init__(self, model, guide, *, nesting: int, plate: str):
        super().__init__()
        self.model, self.guide, self.nesting, self.plate = model, guide, nesting, plate
        self.parts = nn.ModuleList(owners(model, guide))

    def forward(self, x, points, first_sample, seed, particles: int) -> torch.Tensor:
        with IndexedNoise(seed, points, first_sample, plate=self.plate):
            terms = local_terms(
                self.model, self.guide, x, particles=particles, nesting=self.nesting, plate=self.plate
            )
        return terms.log_w


class Chunks:
    """Log weights chunk by chunk (see the module docstring): ``chunks(x, first_point,
    first_sample, k)``.

    :param mode: ``"auto"``, ``True`` or ``False``: compile the chunk.
    :param planned: the number of chunks the estimate will take, for ``auto``.
    """

    def __init__(self, model, guide, *, seed: int, nesting: int, plate: str, mode, planned: int):
        self.weights = LogWeights(model, guide, nesting=nesting, plate=plate)
        self.seed, self.mode, self.planned = seed, mode, planned
        self.done = 0
        self.key: tuple | None = None
        self.program: Callable | None = None
        self.state: dict[str, torch.Tensor] = {}
        self._scalars: tuple[torch.Tensor, ...] | None = None  # the graph's first sample and seed
        #: why the chunks run eager, once that is settled
        self.reason: str | None = None if mode else "not asked to compile"

    def __call__(self, x: torch.Tensor, first_point: int, first_sample: int, k: int) -> torch.Tensor:
        points = torch.arange(first_point, first_point + len(x), device=x.device)
        key = (x.shape, x.dtype, x.device, k)
        self.done += 1
        if self.program is not None and key == self.key:
            return self.program(*self._inputs(x, points, first_sample))[0]
        if self.key is None:
            self.key = key  # the shape to compile for: the first one
            if self.mode:
                self.state = inputs_of(self.weights)
                self.program = self._cache().get(self._cache_key(key))
                if self.program is not None:  # made by an earlier estimate in this process
                    return self.program(*self._inputs(x, points, first_sample))[0]
        if self.reason is not None or key != self.key or self.done <= 2:
            return self._timed(x, points, first_sample, k, key)
        return self._compiled(x, points, first_sample, k)

    def _timed(self, x, points, first_sample, k, key) -> torch.Tensor:
        """An eager chunk; after the second (the first warms up), ``auto`` decides from its time."""
        timed = self.done == 2 and self.mode == "auto"
        if timed and x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        log_w = self.weights(x, points, first_sample, self.seed, k)
        if timed:
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            left = (time.perf_counter() - start) * (self.planned - 2)
            if left < AUTO_SECONDS:
                self.reason = (
                    f"would take about {left:.0f} s more eager, under the {AUTO_SECONDS:.0f} s that "
                    "repay compiling"
                )
        return log_w

    def _inputs(self, x, points, first_sample) -> list:
        if self._scalars is None or self._scalars[0].device != x.device:
            self._scalars = torch.tensor([0, self.seed], dtype=torch.int64, device=x.device).unbind()
        start, seed = self._scalars
        start.fill_(first_sample)  # a scalar kernel argument: no host-to-device copy per chunk
        return [*self.state.values(), x, points, start, seed]

    def _compiled(self, x, points, first_sample, k) -> torch.Tensor:
        """The chunk compiled: captured and compiled now, checked against the eager chunk."""
        self.state = inputs_of(self.weights)
        names, n = list(self.state), len(self.state)

        def chunk(*flat):
            state = dict(zip(names, flat[:n], strict=True))
            x, points, start, seed = flat[n:]
            return (
                torch.func.functional_call(self.weights, state, (x, points, start, seed, k), strict=False),
            )

        example = self._inputs(x, points, first_sample)
        try:
            graph = capture(chunk, example)
            program = compile_graph(graph, list(self.state.values()), x.device)
            log_w = program(*example)[0]
        except Uncompilable as e:
            return self._give_up(str(e), x, points, first_sample, k)
        except Exception as e:
            return self._give_up(f"cannot be compiled ({e})", x, points, first_sample, k)
        eager = self.weights(x, points, first_sample, self.seed, k)
        try:
            agree([log_w], [eager], what="log weight")
        except Uncompilable as e:
            return self._give_up(str(e), x, points, first_sample, k, eager)
        self.program = self._cache()[self._cache_key(self.key)] = program
        return log_w

    def _cache(self) -> dict:
        """Graphs made earlier in this process for these modules, kept on the first of them (so
        that they live as long as it does): another estimate on the same model compiles nothing."""
        parts = list(self.weights.parts)
        return parts[0].__dict__.setdefault("_pyro_vae_chunk_graphs", {}) if parts else {}

    def _cache_key(self, key) -> tuple:
        programs = tuple(getattr(f, "__func__", f) for f in (self.weights.model, self.weights.guide))
        state = tuple((n, t.shape, t.dtype, t.device) for n, t in self.state.items())
        return programs, self.weights.nesting, self.weights.plate, key, state

    def _give_up(self, reason, x, points, first_sample, k, done=None) -> torch.Tensor:
        if self.mode is True:
            raise Uncompilable(f"compile = true, but the importance-sampling chunk {reason}")
        self.reason = reason
        return done if done is not None else self.weights(x, points, first_sample, self.seed, k)
