"""Graphs of a Pyro program: captured once through its effect handlers, compiled, replayed.

A built-in VAE's Pyro program has a static structure: the same sites, plates and shapes
every time it runs on a minibatch of one shape. ``make_fx``
(``torch.fx.experimental.proxy_tensor``) records what it computes as one graph of ATen
operations, following Pyro's handlers, distributions and the objective (and, for a training
step, the backward pass). It traces with fake tensors, so that no value is read: a branch on
a tensor's value (``.item()``, ``if x.sum() > 0``) fails the capture, with the line of the
program where it happened, instead of being baked into the graph. TorchInductor
(``torch.compile``) then compiles the graph: fused C++ loops on the CPU, Triton kernels
replayed as CUDA graphs on CUDA. The training step (:mod:`pyro_vae.training.compiled`) and the
importance-sampling chunk (:mod:`pyro_vae.inference.estimators.chunks`) are made this way.

Compiling costs seconds to tens of seconds (cached across runs by Inductor), so ``auto``
compiles only work whose eager time left is at least :data:`AUTO_SECONDS`.
"""

import contextlib
import traceback
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from pyro_vae.core.errors import PyroVAEError

#: ``auto`` compiles work whose eager run would take at least this many seconds more: about
#: four times a cold compile of the MNIST step on two cores, repaid at a 25 % faster step
AUTO_SECONDS = 120.0


class Uncompilable(PyroVAEError):
    """A program cannot be captured (``stage`` "capture") or compiled, or its compiled graph
    disagrees with it (``stage`` "compile"), or the eager step it is checked against gave a
    non-finite loss (``stage`` "diverged": the run's fault, not the graph's).

    ``done`` is the result of the work when it was nonetheless done (eagerly, by the check)."""

    def __init__(self, message: str, done: torch.Tensor | None = None, stage: str = "capture"):
        super().__init__(message)
        self.done, self.stage = done, stage


def owners(model, guide) -> list[nn.Module]:
    """The modules whose methods ``model`` and ``guide`` are (a VAE's, a ``PyroModule``'s)."""
    found: list[nn.Module] = []
    for fn in (model, guide):
        owner = getattr(fn, "__self__", fn)
        if isinstance(owner, nn.Module) and all(owner is not m for m in found):
            found.append(owner)
    return found


def inputs_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """What a graph of ``module`` takes as inputs: its parameters and :func:`buffers_of` it."""
    state: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
    return state | buffers_of(module)


def buffers_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers a graph of ``module`` takes as inputs: the floating-point ones.

    Integer buffers are the program's structure (an autoregressive flow's permutation, index
    tables), which it may read as Python numbers: they stay constants of the graph.
    """
    return {n: b for n, b in module.named_buffers() if b.is_floating_point()}


def capture(fn, example: list):
    """``fn(*example)`` recorded as a graph of ATen operations on fake tensors.

    :raises Uncompilable: saying what stopped it and where in the program.
    """
    try:
        return make_fx(fn, tracing_mode="fake", _allow_non_fake_inputs=True)(*example)
    except Exception as e:  # what does not trace: a branch on data, an unsupported operation
        raise Uncompilable(f"cannot be captured ({first_line(e)})") from e


def compile_graph(graph, static: list, device: torch.device):
    """``graph`` compiled by TorchInductor for ``device`` (at its first call).

    On CUDA it is replayed as CUDA graphs (``torch.compile``, ``mode="reduce-overhead"``),
    told which inputs keep their addresses from call to call (``static``: parameters, buffers,
    Adam's state, which it updates in place), so that only the others (the minibatch) are
    copied in. On the CPU the graph, already ATen operations, goes to Inductor's own entry
    point (``compile_fx``) rather than through ``torch.compile``, whose frame evaluation and
    guards cost 6 % of the MNIST step; its C++ is compiled with int64 arithmetic that wraps
    (:func:`_wrapping`), as torch's does; and the loops are vectorized 256 bits wide at most
    (set when the 512-bit code corrupted the heap, most likely by the same overflow).
    """
    if device.type == "cuda":
        for tensor in static:
            torch._dynamo.mark_static_address(tensor)
        return torch.compile(graph, fullgraph=True, dynamic=False, mode="reduce-overhead")
    return _Inductor(graph)


class _Inductor:
    """A graph compiled by ``compile_fx`` for the inputs of its first call."""

    def __init__(self, graph):
        self.graph = graph
        self.compiled: Callable | None = None

    def __call__(self, *inputs):
        if self.compiled is None:
            from torch._inductor import config
            from torch._inductor.compile_fx import compile_fx

            with config.patch(_cpu_options()), _wrapping():
                compiled = compile_fx(self.graph, list(inputs))
            assert callable(compiled)  # typed as a union of what its modes return
            self.compiled = compiled
        return self.compiled(*inputs)


@contextlib.contextmanager
def _wrapping():
    """Inductor's C++ compiled with ``-fwrapv`` (signed overflow wraps) while this is open.

    The keyed noise (:mod:`pyro_vae.inference.noise`) multiplies int64 counters by the
    golden gamma, wrapping as torch's int64 arithmetic does. Inductor folds ``arange(d) * γ``
    into the loop index, C++ ``(-7046029254386353131L)*x1``, which overflows from the second
    vector of coordinates on (latent dimension d > 8 at 256 bits, > 16 at 512): undefined
    behaviour in C++, from which g++ -O3 (``-faggressive-loop-optimizations``) bounds the
    loop's trip count and miscompiles it. The guide's kernel then stores a whole vector past
    the end of each (B, d) output, 16 bytes for the MNIST VAE's d = 20, and glibc aborts
    (``free(): invalid next size``, ``malloc_consolidate(): invalid chunk size``,
    ``munmap_chunk(): invalid pointer``) at a later allocation. With ``-fwrapv`` the C++
    means what the graph means. Inductor has no option for compiler flags, so its (private)
    flag list is extended for this compile only; the flags are part of its kernel cache key.
    """
    from torch._inductor import cpp_builder

    flags = getattr(cpp_builder, "_get_optimization_cflags", None)
    if flags is None:  # another torch: compile as it does (tests/test_compiled.py would fail)
        yield
        return

    def wrapping(*args, **kwargs):
        cflags, ldflags = flags(*args, **kwargs)
        return [*cflags, "fwrapv"], ldflags

    cpp_builder._get_optimization_cflags = wrapping
    try:
        yield
    finally:
        cpp_builder._get_optimization_cflags = flags


def _cpu_options() -> dict:
    from torch._inductor import cpu_vec_isa

    isa = cpu_vec_isa.pick_vec_isa()
    return {"cpp.simdlen": 256} if isa and isa.bit_width() > 256 else {}


def agree(compiled, eager, what: str = "value", how: str = "as a graph") -> None:
    """Refuse a graph whose outputs are not the eager program's: each tensor to a relative
    1e-3 of its scale (float32 rounding of reordered sums is far below; a graph that computes
    something else, far above)."""
    for i, (c, e) in enumerate(zip(compiled, eager, strict=True)):
        scale = e.abs().max().clamp(min=1e-30)
        err = ((c - e).abs().max() / scale).item()
        if not err <= 1e-3:
            raise Uncompilable(
                f"gives another {what} {i} {how} than eager (relative difference {err:.1e}): "
                + (
                    "a fault of the compiler, or of something the capture does not see"
                    if how == "compiled"
                    else "the program depends on something the capture does not see (Python state, "
                    "global parameters)"
                ),
                stage="compile" if how == "compiled" else "capture",
            )


def first_line(e: BaseException) -> str:
    """What stopped a capture, in a few words, with the line of the program where it happened."""
    from torch._subclasses.fake_tensor import DataDependentOutputException
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    if isinstance(e, GuardOnDataDependentSymNode | DataDependentOutputException):
        what = "a branch, index or size depends on a tensor's value (.item(), if x.sum() > 0, ...)"
    else:
        text = str(e).strip().splitlines()
        what = f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
    return what + _where(e)


def _where(e: BaseException) -> str:
    """``, at FILE:LINE in FUNCTION``: the innermost frame of the traceback in the user's code
    (outside torch, Pyro and pyro-vae), else the innermost outside torch and Pyro."""
    libraries = tuple(str(Path(str(m.__file__)).parent) for m in (torch, pyro))
    ours = str(Path(__file__).resolve().parents[1])
    frames = traceback.extract_tb(e.__traceback__)
    outside = [f for f in frames if not f.filename.startswith(libraries) and not f.filename.startswith("<")]
    users = [f for f in outside if not str(Path(f.filename).resolve()).startswith(ours)]
    if not outside:
        return ""
    f = (users or outside)[-1]
    return f", at {Path(f.filename).name}:{f.lineno} in {f.name}"
