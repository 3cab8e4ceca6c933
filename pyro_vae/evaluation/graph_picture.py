"""What ``pyro-vae graph CONFIG`` draws: a config's model and guide as graphs of their sites.

Pyro's ``render_model`` traces each program once on a few data rows and draws its sample sites,
their plates and the dependencies it sees (with the distributions named), through Graphviz: the
Python package ``graphviz`` (``pip install "pyro-vae[graph]"``) and, to draw a picture, Graphviz's
``dot`` program (``apt install graphviz``). ``--out FILE.gv`` writes the DOT source, which needs
only the package. The model is drawn to ``FILE`` and the guide beside it, ``FILE-guide``.
"""

import importlib.util
import shutil
import sys
from pathlib import Path

import pyro
import torch

from pyro_vae.config.run_config import Config
from pyro_vae.core.errors import ConfigError, PyroVAEError
from pyro_vae.data import catalog
from pyro_vae.data.datasets import Data, load_data
from pyro_vae.models.graph.program import GraphProgram
from pyro_vae.models.programs import build_program
from pyro_vae.models.vae import VAE
from pyro_vae.training.build import graph_data
from pyro_vae.training.resolve import resolve_config

FORMATS = (".png", ".svg", ".pdf", ".gv")


def graph_pictures(config: Config, out) -> list[Path]:
    """Draw ``config``'s model to ``out`` and its guide to ``out``'s name + ``-guide``."""
    out = Path(out)
    if out.suffix not in FORMATS:
        raise ConfigError(f"--out {str(out)!r}: unknown format {out.suffix!r}; allowed: {', '.join(FORMATS)}")
    if importlib.util.find_spec("graphviz") is None:
        raise PyroVAEError('pyro-vae graph needs the graphviz package: pip install "pyro-vae[graph]"')
    if out.suffix != ".gv" and shutil.which("dot") is None:
        raise PyroVAEError(
            f"drawing {out.suffix} needs Graphviz's dot program (apt install graphviz); "
            "--out FILE.gv writes the graph's DOT source without it"
        )
    data = _data_or_stand_in(config)
    config = resolve_config(config, data, run_dir="unused")
    module = _programs(config)
    rows = graph_data(config, data).train[:3]
    written = []
    for name, program in (("", module.model), ("-guide", module.guide)):
        path = out.with_name(out.stem + name + out.suffix)
        with torch.no_grad():
            drawing = pyro.render_model(program, model_args=(rows,), render_distributions=True)
        if out.suffix == ".gv":
            path.write_text(drawing.source)
        else:
            drawing.render(outfile=path, cleanup=True)
        written.append(path)
    return written


def _data_or_stand_in(config: Config) -> Data:
    """The config's data where they are at hand (built in, or in the cache); else three labelled
    28×28 stand-ins, said on stderr: the graph's shape does not depend on the values."""
    name = config.data.name
    if config.data.path is not None or name not in catalog.downloads() or _cached(name):
        return load_data(config.data)
    print(
        f"pyro-vae: drawn for 28×28 images with 10 classes: data.name = {name!r} is not in the cache",
        file=sys.stderr,
    )
    x, labels = torch.zeros(3, 784), torch.arange(3)
    return Data(
        name=config.data.label,
        train=x,
        valid=x,
        train_labels=labels,
        valid_labels=labels,
        image_shape=(28, 28),
    )


def _cached(name: str) -> bool:
    return all((catalog.folder(name) / f.name).is_file() for f in catalog.get_download(name).files)


def _programs(config: Config):
    if config.model.variables is not None:
        return GraphProgram.from_config(config.model, config.guide)
    if config.model.program is not None:
        return build_program(config.model)
    return VAE(config.model)
