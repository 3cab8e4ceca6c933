"""``python tests/stop_after.py ARGS...``: the ``pyro-vae`` command line, stopped on purpose.

A test hook, run in a subprocess by tests/training/test_resume.py:

* ``STOP_AFTER=N STOP_SIGNAL=SIGINT|SIGTERM``: the process sends itself the signal right after
  its N-th training step, as Ctrl-C or ``kill`` would at that moment;
* ``AUTO_PATH=replayed|compiled``: ``train.compile = "auto"`` decides that path whatever the
  run's length (its thresholds moved), as it would for a longer run;
* ``KILL_IN_SAVE=N``: the N-th checkpoint write stops half-way through writing its temporary
  file and the process kills itself with SIGKILL, as a power cut or ``kill -9`` would;
* under torchrun, ``STOP_RANK=R`` stops only the process of rank R, and ``RANK_ARGS_R="..."``
  gives the process of rank R these arguments more (a process given another command);
  ``STOP_SIGNAL=ERROR`` makes the N-th step fail with an error of pyro-vae's instead (a full
  disk, say);
* ``FIGURES=1``: the run's pictures are drawn at its end; without it they are not, as in the
  tests of this process (tests/conftest.py).
"""

import os
import signal
import sys

import pyro_vae.core.files
import pyro_vae.training.callbacks
import pyro_vae.training.checkpoint
import pyro_vae.training.compiled
import pyro_vae.training.paths
from pyro_vae.cli.main import main
from pyro_vae.core.errors import RunDirError

counts = {"steps": 0, "saves": 0}

rank = os.environ.get("RANK", "0")
argv = sys.argv[1:] + os.environ.get(f"RANK_ARGS_{rank}", "").split()

if "STOP_AFTER" in os.environ and os.environ.get("STOP_RANK", rank) == rank:
    stop_after, how = int(os.environ["STOP_AFTER"]), os.environ["STOP_SIGNAL"]
    step = pyro_vae.training.compiled.CompiledStep.__call__  # every step, eager or a graph

    def counting_step(self, x, **kwargs):
        loss = step(self, x, **kwargs)
        counts["steps"] += 1
        if counts["steps"] == stop_after:
            if how == "ERROR":
                raise RunDirError(
                    f"cannot write 'somewhere': no space left on device (test, step {stop_after})"
                )
            os.kill(os.getpid(), getattr(signal, how))
        return loss

    pyro_vae.training.compiled.CompiledStep.__call__ = counting_step

if os.environ.get("FIGURES") != "1":
    pyro_vae.training.callbacks.Figures.on_end = lambda self, state: None

if os.environ.get("AUTO_PATH") == "compiled":
    pyro_vae.training.paths.AUTO_SECONDS = 0.0
elif os.environ.get("AUTO_PATH") == "replayed":
    pyro_vae.training.paths.AUTO_SECONDS, pyro_vae.training.paths.REPLAY_SECONDS = float("inf"), 0.0

if "KILL_IN_SAVE" in os.environ:
    kill_in_save = int(os.environ["KILL_IN_SAVE"])
    write_file = pyro_vae.training.checkpoint.atomic_write

    def dying_write(path, write, **kwargs):
        counts["saves"] += 1
        if counts["saves"] != kill_in_save:
            return write_file(path, write, **kwargs)
        tmp = pyro_vae.core.files.temporary(path)
        write(tmp)
        with open(tmp, "r+b") as f:
            f.truncate(os.path.getsize(tmp) // 2)  # half of it reached the disk
        os.kill(os.getpid(), signal.SIGKILL)

    pyro_vae.training.checkpoint.atomic_write = dying_write

sys.exit(main(argv))
