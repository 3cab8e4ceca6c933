"""The configuration reference: current, complete, and true to the code's defaults."""

import dataclasses
import difflib
import inspect
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyro_vae import Config, ConfigError
from pyro_vae.config.graph import GuideVariable, Variable
from pyro_vae.config.reference import COMMAND, configuration_reference, docstring_paragraphs, field_comments
from pyro_vae.config.run_config import PositiveInt, Spec
from pyro_vae.core.registry import get_registry

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"


def headings(text: str, level: int) -> dict[str, str]:
    """``{title: body}`` for the headings of exactly ``level`` in ``text``, in order."""
    parts = re.split(rf"^{'#' * level} (.+)$", text, flags=re.MULTILINE)
    return {title: body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def table(body: str) -> dict[str, list[str]]:
    """The rows of the first Markdown table in ``body``: ``{name in backticks: [other cells]}``."""
    rows = {}
    for line in body.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1:]
        elif rows:
            break
    return rows


def parse_default(cell: str):
    if cell == "unset":
        return None
    assert cell.startswith("`") and cell.endswith("`"), cell
    return tomllib.loads(f"v = {cell[1:-1]}")["v"]


def config_families() -> dict[str, list[str]]:
    """Family -> the config keys choosing from it, found here independently of the module."""
    keys = {
        "objective": ["objective"],
        "dataset": ["data.name"],
        "logger": ["train.loggers"],
        "estimator": ["pyro-vae evaluate --estimator", "pyro-vae compare --estimator"],
    }
    for section in ("model", "train", "data"):
        for f in dataclasses.fields(getattr(Config(), section)):
            if "family" in f.metadata:
                keys.setdefault(f.metadata["family"], []).append(f"{section}.{f.name}")
    # a declared graph's variables and guide (pyro_vae.config.graph) choose from three more
    keys["family"] = ["model.variables.NAME.family"]
    keys["network"] += ["model.variables.NAME.network", "guide.NAME.network"]
    keys["guide"] += ["guide.NAME.family"]
    return keys


def builtin_kinds(registry) -> list[str]:
    """The kinds pyro-vae registers itself (other tests register their own in this process)."""
    return [n for n in registry.names() if registry.get(n).__module__.startswith("pyro_vae.")]


@pytest.fixture(params=["generated", "committed"])
def reference(request) -> str:
    """The reference as this process generates it, and as committed (stale: regenerate it)."""
    if request.param == "generated":
        return configuration_reference()
    if not REFERENCE.is_file():
        pytest.fail(f"docs/configuration.md is missing; generate it with `{COMMAND}`")
    return REFERENCE.read_text(encoding="utf-8")


@pytest.mark.slow
def test_committed_reference_is_current():
    # A fresh process: other tests register parts of their own in this one.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    generated = subprocess.run(
        [sys.executable, "-m", "pyro_vae.config.reference"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=True,
    ).stdout.decode()
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    if committed != generated:
        diff = difflib.unified_diff(
            committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm="", n=1
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/configuration.md is out of date; regenerate it with `{COMMAND}`\n{shown}")


def test_every_section_key_is_listed_with_its_default(reference):
    sections = headings(reference, 2)
    defaults = Config().to_dict()
    tables = {name: values for name, values in defaults.items() if isinstance(values, dict)}
    top = {name: value for name, value in defaults.items() if name not in tables}
    listed = {f"`[{name}]`": values for name, values in tables.items() if name != "objective"}
    if top:
        listed["Top-level keys"] = top
    # a declared graph's two tables, every key unset or empty by default
    listed["`[model.variables.NAME]`"] = {f.name: None for f in dataclasses.fields(Variable)} | {"given": []}
    listed["`[guide.NAME]`"] = {f.name: None for f in dataclasses.fields(GuideVariable)}
    assert set(listed) | {"`[objective]`", "Kinds"} == set(sections)
    # a user's program (model.program) is unset by default, and an unset key is not written
    listed["`[model]`"] = {**listed["`[model]`"], "program": None}
    for title, values in listed.items():
        rows = table(sections[title])
        assert list(rows) == list(values), title  # every key, in the dataclass's order
        for key, (_type, default, _meaning) in rows.items():
            assert parse_default(default) == values[key], f"{title} {key}"
    objective = table(sections["`[objective]`"])
    shared = get_registry("objective").shared_option_names()
    assert list(objective) == ["kind", *shared]
    assert {k: parse_default(cells[1]) for k, cells in objective.items()} == {
        k: v for k, v in defaults["objective"].items() if k in objective
    }


def test_types_use_the_words_of_the_config_errors(reference):
    rows = {name: table(body) for name, body in headings(reference, 2).items()}
    assert rows["`[train]`"]["epochs"][0] == "an integer >= 1"
    assert rows["`[model]`"]["data_dim"][0] == "an integer >= 1"  # optional: unset, never "none"
    assert rows["`[data]`"]["valid_fraction"][0] == "a number > 0 and < 1"
    with pytest.raises(ConfigError, match=re.escape(f"expected {rows['`[train]`']['lr'][0]}")):
        Config().override({"train.lr": 0})
    with pytest.raises(ConfigError, match=re.escape(f"expected {rows['`[data]`']['shuffle'][0]}")):
        Config().override({"data.shuffle": 1})


def test_every_registered_kind_and_option_is_listed(reference):
    families = headings(headings(reference, 2)["Kinds"], 3)
    expected = config_families()
    assert set(families) == {f"`{family}` kinds" for family in expected}
    for family, keys in expected.items():
        body = families[f"`{family}` kinds"]
        assert all(f"`{key}`" in body.split("\n\n")[1] for key in keys), family  # "Chosen by ..."
        registry = get_registry(family)
        kinds = headings(body, 4)
        listed = [title.strip("`") for title in kinds]
        assert listed == sorted(listed), family
        assert set(builtin_kinds(registry)) <= set(listed), family
        shared = registry.shared_option_names()
        for kind in builtin_kinds(registry):
            options = {n: p for n, p in registry.options(kind).items() if n not in shared}
            rows = table(kinds[f"`{kind}`"])
            assert list(rows) == list(options), f"{family} {kind}"
            if not options:
                assert "No options." in kinds[f"`{kind}`"]
            for name, (_type, default) in rows.items():
                given = options[name].default
                if given is inspect.Parameter.empty:
                    assert default == "required"
                else:
                    want = list(given) if isinstance(given, tuple) else given
                    assert parse_default(default) == want, f"{family} {kind}.{name}"


def test_links_point_at_headings(reference):
    # GitHub's anchors: lower case, punctuation other than - and _ dropped, spaces as hyphens.
    titles = re.findall(r"^#+ (.+)$", reference, flags=re.MULTILINE)
    anchors = {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}
    links = set(re.findall(r"\]\(#([^)]+)\)", reference))
    assert links and links <= anchors


@dataclass(frozen=True)
class Commented:
    #: one line
    a: int = 1
    b: PositiveInt = 2
    #: first line,
    #: second line
    c: str = ""
    # a plain comment is not documentation
    d: float = 0.0
    e: Spec = dataclasses.field(default_factory=lambda: Spec("normal"))  #: same-line comments are not read


def test_field_comments_are_the_hash_colon_lines_above_a_field():
    assert field_comments(Commented) == {"a": "one line", "c": "first line, second line"}


def rst_docstring():
    """The bound of :class:`~pyro_vae.inference.objectives.LocalBound` at ``k = 5``, for f_θ(z)_d < 1::

        L(x) = E[log w] <= log p(x),

    not this paragraph.
    """


def expanded_literal():
    """Regenerate it with <command> and a *star*. ::

    python -m pyro_vae.config.reference
    """


def test_docstrings_become_markdown():
    assert docstring_paragraphs(rst_docstring, first_only=True) == [
        r"The bound of `LocalBound` at `k = 5`, for f_θ(z)\_d < 1:",
        "```text\nL(x) = E[log w] <= log p(x),\n```",
    ]
    assert docstring_paragraphs(rst_docstring, first_only=False)[-1] == "not this paragraph."
    assert docstring_paragraphs(expanded_literal, first_only=True) == [
        r"Regenerate it with &lt;command> and a \*star\*.",
        "```text\npython -m pyro_vae.config.reference\n```",
    ]
