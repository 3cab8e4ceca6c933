"""The programs built from each example graph against the same model and guide written out by
hand in Pyro: equal log joints on one fixed trace, to 1e-5."""

from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_vae.config.run_config import load_config
from pyro_vae.models.graph.program import GraphProgram

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "graphs"
D, B, C = 16, 7, 10  # 4×4 binary images, points, classes


def rows(labels: torch.Tensor | None = None) -> torch.Tensor:
    x = torch.bernoulli(torch.full((B, D), 0.4))
    return x if labels is None else torch.cat([x, labels.float().unsqueeze(1)], 1)


def built(example: str, **families) -> GraphProgram:
    """The example's graph on 4×4 binary images, its observed families made Bernoulli (the test
    is of the graph's wiring; the families are tested in tests/models/test_likelihoods.py)."""
    overrides = {f"model.variables.{n}.family": "bernoulli" for n in families.get("bernoulli", [])}
    overrides |= {"model.data_dim": D, "model.image_shape": "[4, 4]"}
    config = load_config(EXAMPLES / f"{example}.toml", overrides)
    variables = dict(config.model.variables)
    for name, v in variables.items():
        if v.data == "label" and v.classes is None:
            variables[name] = type(v)(**{**v.__dict__, "classes": C})
    model = config.model.__class__(**{**config.model.__dict__, "variables": variables})
    return GraphProgram.from_config(model, config.guide)


def bern(logits: torch.Tensor) -> dist.Distribution:
    return dist.Bernoulli(logits=logits).to_event(1)


def normal(out: torch.Tensor) -> dist.Distribution:
    loc, raw = out.chunk(2, -1)
    return dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-4).to_event(1)


def std_normal(size: int) -> dist.Distribution:
    return dist.Normal(torch.zeros(size), torch.ones(size)).to_event(1)


def log_joints(program: GraphProgram, hand_model, hand_guide, row: torch.Tensor) -> None:
    """The graph's guide draws one trace; both pairs are scored on it."""
    guide_trace = poutine.trace(program.guide).get_trace(row)
    for ours, theirs in ((program.model, hand_model), (program.guide, hand_guide)):
        a = poutine.trace(poutine.replay(ours, trace=guide_trace)).get_trace(row)
        b = poutine.trace(poutine.replay(theirs, trace=guide_trace)).get_trace(row)
        torch.testing.assert_close(a.log_prob_sum(), b.log_prob_sum(), rtol=1e-5, atol=1e-5)
    # the site values the hand-written programs read are the graph's own
    assert {n for n, s in guide_trace.nodes.items() if s["type"] == "sample"} >= set(program.guide_order)


def test_m2_is_kingmas_m2_with_labels_observed_where_known():
    p = built("m2_semi_supervised", bernoulli=["x"])
    label = torch.tensor([3, -1, 0, -1, 9, -1, -1])
    row = rows(label)
    known = label >= 0

    def model(row):
        x = row[:, :D]
        with pyro.plate("data", B):
            y = pyro.sample("y", dist.OneHotCategorical(logits=torch.zeros(C)))
            z = pyro.sample("z", std_normal(16))
            pyro.sample("x", bern(p.nets["x"](torch.cat([y, z], -1))), obs=x)

    def guide(row):
        x = row[:, :D]
        with pyro.plate("data", B):
            logits = p.q_nets["y"](x)
            point = torch.full_like(logits, -torch.inf)
            point[known, label[known]] = 0.0  # the label, where the row has one
            y = pyro.sample("y", dist.OneHotCategorical(logits=torch.where(known[:, None], point, logits)))
            pyro.sample("z", normal(p.q_nets["z"](torch.cat([x, y], -1))))

    log_joints(p, model, guide, row)
    trace = poutine.trace(p.guide).get_trace(row)
    assert (trace.nodes["y"]["value"][known].argmax(-1) == label[known]).all()


def test_cvae_label_conditions_on_every_rows_class():
    p = built("cvae_label", bernoulli=["x"])
    label = torch.randint(0, C, (B,))
    row = rows(label)

    def model(row):
        x, y = row[:, :D], torch.nn.functional.one_hot(label, C).float()
        with pyro.plate("data", B):
            z = pyro.sample("z", std_normal(8))
            pyro.sample("x", bern(p.nets["x"](torch.cat([z, y], -1))), obs=x)

    def guide(row):
        x, y = row[:, :D], torch.nn.functional.one_hot(label, C).float()
        with pyro.plate("data", B):
            pyro.sample("z", normal(p.q_nets["z"](torch.cat([x, y], -1))))

    log_joints(p, model, guide, row)


def test_cvae_completion_reads_the_top_half_and_models_the_bottom():
    p = built("cvae_completion", bernoulli=["bottom"])
    row = rows()
    image = row.reshape(B, 4, 4)

    def model(row):
        top, bottom = image[:, :2].reshape(B, 8), image[:, 2:].reshape(B, 8)
        with pyro.plate("data", B):
            z = pyro.sample("z", normal(p.nets["z"](top)))
            pyro.sample("bottom", bern(p.nets["bottom"](torch.cat([z, top], -1))), obs=bottom)

    def guide(row):
        top, bottom = image[:, :2].reshape(B, 8), image[:, 2:].reshape(B, 8)
        with pyro.plate("data", B):
            pyro.sample("z", normal(p.q_nets["z"](torch.cat([top, bottom], -1))))

    log_joints(p, model, guide, row)


def test_gmvae_draws_z_from_its_cluster():
    p = built("gmvae", bernoulli=["x"])
    row = rows()

    def model(row):
        with pyro.plate("data", B):
            y = pyro.sample("y", dist.OneHotCategorical(logits=torch.zeros(C)))
            z = pyro.sample("z", normal(p.nets["z"](y)))
            pyro.sample("x", bern(p.nets["x"](z)), obs=row)

    def guide(row):
        with pyro.plate("data", B):
            y = pyro.sample("y", dist.OneHotCategorical(logits=p.q_nets["y"](row)))
            pyro.sample("z", normal(p.q_nets["z"](torch.cat([row, y], -1))))

    log_joints(p, model, guide, row)


def test_two_layer_graph_is_the_chain():
    p = built("two_layer")
    row = rows()

    def model(row):
        with pyro.plate("data", B):
            z2 = pyro.sample("z2", std_normal(50))
            z1 = pyro.sample("z1", normal(p.nets["z1"](z2)))
            pyro.sample("x", bern(p.nets["x"](z1)), obs=row)

    def guide(row):
        with pyro.plate("data", B):
            z1 = pyro.sample("z1", normal(p.q_nets["z1"](row)))
            pyro.sample("z2", normal(p.q_nets["z2"](z1)))

    log_joints(p, model, guide, row)


@pytest.mark.parametrize(
    "example", ["m2_semi_supervised", "cvae_label", "cvae_completion", "gmvae", "two_layer"]
)
def test_every_example_states_its_paper(example):
    text = (EXAMPLES / f"{example}.toml").read_text()
    assert text.startswith("#") and any(str(year) in text.split("\n\n")[0] for year in range(2013, 2020))
