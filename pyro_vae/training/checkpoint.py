"""Checkpoints: everything a run needs to continue exactly where it stopped, written safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts::

    format        "pyro-vae-checkpoint/2"
    config        the run's resolved config (Config.to_dict())
    custom_model  whether a user's own model/guide was trained (then ``model`` holds its
                  parameters by site name; else the VAE's state dict)
    model         the parameters
    step_path     how its steps ran: "compiled", "replayed" or "eager" (a resumed run keeps a
                  compiled path compiled and an uncompiled one uncompiled: pyro_vae.training.compiled)
    training      the training state (pyro_vae.training.loop.TrainState.state_dict(): epoch, step,
                  position within the epoch, optimizer, schedule, best epoch, seconds)
    rng           torch's generators (CPU, and every CUDA device), Python's and NumPy's
    checksum      SHA-256 of every tensor above, by its place in the dict

It is written to a temporary file, flushed to disk and renamed
(:func:`pyro_vae.core.files.atomic_write` with ``sync``), so that a crash or ``kill -9`` at any
moment leaves the previous checkpoint or the new one, never a torn one; and read with
``torch.load(..., weights_only=True)``, which unpickles no arbitrary objects. Loading
recomputes the checksum: a truncated or bit-flipped file is refused in one line.
"""

import hashlib
import io
import pickle
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from pyro_vae.core.errors import RunDirError
from pyro_vae.core.files import atomic_write

FORMAT = "pyro-vae-checkpoint/2"


def rng_state() -> dict:
    """Every random stream training draws from (Pyro draws from torch's)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert not isinstance(keys, str)  # the legacy state is (name, keys, pos, has_gauss, gauss)
    state: dict = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),  # (version 3, 625 ints, None)
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "gauss": [has_gauss, gauss]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], *numpy["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checksum(value, h=None, place: str = "") -> str:
    """SHA-256 over every tensor in a nested dict/list: its place, dtype, shape and bytes."""
    h = h or hashlib.sha256()
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{place}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            checksum(value[key], h, f"{place}/{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            checksum(item, h, f"{place}/{i}")
    return h.hexdigest()


def save_checkpoint(
    path: Path, *, config: dict, model: dict, training: dict, custom_model: bool, step_path: str = "eager"
) -> None:
    """Write a checkpoint of the current state (the RNG state is read here)."""
    payload = {
        "format": FORMAT,
        "config": config,
        "custom_model": custom_model,
        "model": model,
        "training": training,
        "step_path": step_path,
        "rng": rng_state(),
    }
    payload["checksum"] = checksum(payload)
    # serialized in memory, then written by Python: a short write (a full disk) is an OSError
    # naming its cause, where torch's own file writer reports a bare position mismatch
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()), sync=True)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read and verify a checkpoint; one line if it is absent, torn, altered or not one."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"no checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        struct.error,
        zipfile.BadZipFile,
        ValueError,
        OSError,  # a zip archive cut short
    ) as e:
        raise RunDirError(
            f"{str(path)!r} is not a readable pyro-vae checkpoint (torn or altered: {type(e).__name__})"
        ) from None
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("pyro-vae-checkpoint/"):
        raise RunDirError(f"{str(path)!r} is not a pyro-vae checkpoint")
    if payload["format"] != FORMAT:
        raise RunDirError(
            f"{str(path)!r} is a {payload['format']} checkpoint, from an older pyro-vae; "
            f"this one reads {FORMAT}: retrain the run"
        )
    saved = payload.pop("checksum", None)
    if saved != checksum(payload):
        raise RunDirError(f"{str(path)!r} is corrupt: its tensors do not match their checksum")
    return payload
