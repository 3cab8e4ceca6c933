"""What of a data row a declared variable is bound to.

A graph's programs take one row per data point: the point's D values, then, where a variable
is bound to ``"label"``, one more column holding its class (−1 where the label is hidden, so
that a hidden label never reaches training). ``"x"`` is the D values; ``"x.top"``, ``"x.bottom"``,
``"x.left"``, ``"x.right"`` and the quadrants ``"x.top_left"`` … are the pixels of that part of
each image (every channel), in the image's own order.
"""

import torch

from pyro_vae.core.errors import ConfigError


def part_columns(part: str, image_shape: tuple[int, ...] | None, data_dim: int) -> torch.Tensor:
    """The columns of a flattened image that ``x.<part>`` names, as an index tensor."""
    if image_shape is None:
        raise ConfigError(
            f'data = "x.{part}" needs images: the data have {data_dim} values per point and no '
            "data.image_shape"
        )
    shape = tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)
    _, h, w = shape
    words = part.split("_")
    rows = {"top": slice(0, h // 2), "bottom": slice(h // 2, h)}
    cols = {"left": slice(0, w // 2), "right": slice(w // 2, w)}
    keep = torch.zeros(shape, dtype=torch.bool)
    r = next((rows[word] for word in words if word in rows), slice(0, h))
    c = next((cols[word] for word in words if word in cols), slice(0, w))
    keep[:, r, c] = True
    return keep.flatten().nonzero().flatten()


def label_column(row: torch.Tensor, data_dim: int) -> torch.Tensor:
    """The rows' classes (−1 where hidden), as integers: ``(B,)``."""
    return row[..., data_dim].round().long()
