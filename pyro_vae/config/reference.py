"""The configuration reference, written from the code so that it cannot drift from it.

:func:`configuration_reference` returns Markdown listing every key of every config
section with its type, default and ``#:`` comment, and every registered kind of every
family a config key chooses from (prior, likelihood, guide, network, objective, dataset)
with its options and the first paragraph of its docstring. Types are spelled by
:func:`pyro_vae.config.run_config.describe`, the words of the config's own error messages, and
values by :func:`pyro_vae.config.run_config.show`, as a TOML file writes them. ::

    python -m pyro_vae.config.reference > docs/configuration.md

``tests/test_reference.py`` fails when the committed file differs from this output.
"""

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import types
import typing

from pyro_vae.config.graph import GuideVariable, Variable
from pyro_vae.config.run_config import Config
from pyro_vae.core.options import describe, show
from pyro_vae.core.registry import Spec, get_registry

COMMAND = "python -m pyro_vae.config.reference > docs/configuration.md"

# Keys that choose from a registry without being a Spec field (whose family is in the field's
# metadata): the [objective] section is a Spec itself, data.name names a dataset,
# train.loggers experiment trackers, and the commands' --estimator an estimator of log p(x).
OTHER_FAMILIES = {
    "objective": "objective",
    "data.name": "dataset",
    "train.loggers": "logger",
    "pyro-vae evaluate --estimator": "estimator",
    "pyro-vae compare --estimator": "estimator",
    "model.variables.NAME.family": "family",
    "model.variables.NAME.network": "network",
    "guide.NAME.family": "guide",
    "guide.NAME.network": "network",
}


def configuration_reference() -> str:
    """The Markdown of ``docs/configuration.md``: every section key and every registered kind."""
    defaults = Config()
    top, sections = [], []
    families: dict[str, list[str]] = {}
    for f in dataclasses.fields(Config):
        value = getattr(defaults, f.name)
        if isinstance(value, Spec):
            sections.append(_spec_section(f.name, value))
        elif dataclasses.is_dataclass(value):
            sections.append(_section(f"[{f.name}]", value, skip=("variables",)))
        elif f.name != "guide":
            top.append(f.name)
    if top:
        sections.insert(0, _section("Top-level keys", defaults, only=top))
    sections.insert(2, _section("[model.variables.NAME]", Variable()))
    sections.insert(3, _section("[guide.NAME]", GuideVariable()))
    for key, family in _family_keys().items():
        families.setdefault(family, []).append(key)
    kinds = [_family(family, families[family]) for family in sorted(families)]
    parts = [_header(), *sections, "## Kinds", *kinds]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# What the code says
# ---------------------------------------------------------------------------------------------


def field_comments(cls) -> dict[str, str]:
    """The ``#:`` comment lines just above each field of a class, joined: ``{field: text}``."""
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    comments = {}
    class_def = tree.body[0]
    assert isinstance(class_def, ast.ClassDef)  # the source of a class is its class statement
    for node in class_def.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        i = node.lineno - 2  # the line before the field, 0-based
        while i >= 0 and lines[i].strip().startswith("#:"):
            above.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        if above:
            comments[node.target.id] = " ".join(above)
    return comments


def _family_keys() -> dict[str, str]:
    """Dotted config key -> the registry family it chooses from."""
    keys = {}
    for section in dataclasses.fields(Config):
        if dataclasses.is_dataclass(section.type) and section.type is not Spec:
            for f in dataclasses.fields(section.type):
                if "family" in f.metadata:
                    keys[f"{section.name}.{f.name}"] = f.metadata["family"]
    return {**keys, **OTHER_FAMILIES}


def type_words(annotation) -> str:
    """What a key accepts, in the config's own words; TOML has no null, so None is left out."""
    if annotation is typing.Any:
        return "any value"
    if dataclasses.is_dataclass(annotation) and annotation is not Spec:  # a table of its own
        hints = typing.get_type_hints(annotation, include_extras=True)
        keys = [f"`{f.name}` ({type_words(hints[f.name])})" for f in dataclasses.fields(annotation)]
        return "a table of " + ", ".join(keys)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(describe(a) for a in args)
    return describe(annotation)


def default_words(value) -> str:
    """A default as a config file spells it; an optional key left unset is "unset"."""
    if value is None:
        return "unset"
    to_dict = getattr(value, "to_dict", None)  # a Spec, or a table of its own
    if to_dict is not None:
        value = to_dict()
    return f"`{show(value)}`"


def docstring_paragraphs(entry, first_only: bool) -> list[str]:
    """An object's docstring as Markdown paragraphs (a literal block after ``::`` kept as code)."""
    paragraphs = (inspect.getdoc(entry) or "").split("\n\n")
    out = []
    for i, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            continue
        after_colons = i > 0 and paragraphs[i - 1].rstrip().endswith("::")
        if first_only and i > 0 and not (i == 1 and after_colons):
            break
        if paragraph.startswith(" ") or after_colons:  # an RST literal block
            out.append("```text\n" + textwrap.dedent(paragraph) + "\n```")
            continue
        text = " ".join(line.strip() for line in paragraph.splitlines())
        # "text::" introduces a literal block as "text:", and "text. ::" as "text."
        out.append(_markdown(re.sub(r"(\s?)::$", lambda m: "" if m[1] else ":", text)))
    return out


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _header() -> str:
    return f"""# Configuration reference

<!-- generated by `{COMMAND}`: edit the code, not this file -->

Every key a config file may set, with the values it accepts and its default, and every kind
that each registry offers, with its options. This file is generated from the code, and
`tests/test_reference.py` fails when it is out of date; regenerate it with

```bash
{COMMAND}
```

A config file names only what it changes. Any key can also be set on the command line as
`--SECTION.KEY VALUE` (`--train.epochs 5`, `--model.prior.kind normal`). A part chosen from a
registry is an inline table, `{{ kind = "...", option = ... }}`; its options are listed under
[Kinds](#kinds). Parts you register yourself (`pyro_vae.register_prior` and its siblings) are
configured the same way."""


def _section(title: str, section, only: list[str] | None = None, skip: tuple[str, ...] = ()) -> str:
    """A table of the keys of a section (``[train]``), or of the ``only`` keys of the whole config;
    ``skip`` keys are left out."""
    comments = field_comments(type(section))
    hints = typing.get_type_hints(type(section), include_extras=True)
    family_keys = _family_keys()
    rows = []
    for f in dataclasses.fields(section):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        family = family_keys.get(f"{title.strip('[]')}.{f.name}")
        if isinstance(getattr(section, f.name), Spec) or (family and Spec in typing.get_args(hints[f.name])):
            accepts = f"a {family}: `{{ kind = ... }}`, see [{family} kinds](#{family}-kinds)"
        elif family:
            accepts = f"{type_words(hints[f.name])}: a [{family}](#{family}-kinds) name"
        else:
            accepts = type_words(hints[f.name])
        comment = _markdown(comments.get(f.name, ""))
        rows.append((f"`{f.name}`", accepts, default_words(getattr(section, f.name)), comment))
    if only is None:
        heading, intro = f"## `{title}`", docstring_paragraphs(type(section), first_only=False)
    else:
        heading, intro = f"## {title}", ["Keys outside any table, written before the first `[section]`."]
    return "\n\n".join([heading, *intro, _table(("key", "type", "default", "meaning"), rows)])


def _spec_section(name: str, spec: Spec) -> str:
    """A section that is itself a registry choice (``[objective]``): ``kind`` and shared options."""
    family = _family_keys()[name]
    registry = get_registry(family)
    rows = [("`kind`", f"a name from [{family} kinds](#{family}-kinds)", default_words(spec.kind))]
    options = registry.options(spec.kind)
    rows += [_option_row(n, options[n]) for n in registry.shared_option_names()]
    text = [
        f"## `[{name}]`",
        f"A `kind` from [{family} kinds](#{family}-kinds), with that kind's options (listed there) "
        f"and the options below. The default, in full: `{show(spec.to_dict())}`.",
    ]
    if registry.shared_options is not None:
        text += docstring_paragraphs(registry.shared_options, first_only=True)
    return "\n\n".join([*text, _table(("key", "type", "default"), rows)])


def _family(family: str, keys: list[str]) -> str:
    registry = get_registry(family)
    chosen_by = ", ".join(f"`{key}`" for key in keys)
    names = ", ".join(f"`{n}`" for n in registry.names())
    text = [f"### `{family}` kinds", f"Chosen by {chosen_by}: {names}."]
    shared = set(registry.shared_option_names())
    if shared:
        text.append(f"Every {family} also takes {', '.join(f'`{n}`' for n in sorted(shared))}.")
    for kind in registry.names():
        options = {n: p for n, p in registry.options(kind).items() if n not in shared}
        text += [f"#### `{kind}`", *docstring_paragraphs(registry.get(kind), first_only=True)]
        if options:
            rows = [_option_row(n, p) for n, p in options.items()]
            text.append(_table(("option", "type", "default"), rows))
        else:
            text.append("No options.")
    return "\n\n".join(text)


def _option_row(name: str, option: inspect.Parameter) -> tuple[str, str, str]:
    default = "required" if option.default is option.empty else default_words(option.default)
    return (f"`{name}`", type_words(option.annotation), default)


def _table(header: tuple[str, ...], rows: typing.Sequence[tuple[str, ...]]) -> str:
    def cells(row):
        return "| " + " | ".join(c.replace("|", r"\|") for c in row) + " |"

    return "\n".join([cells(header), cells(tuple("---" for _ in header)), *(cells(r) for r in rows)])


def _markdown(text: str) -> str:
    """RST roles and literals to Markdown; characters Markdown would misread escaped outside code."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"``\1``", text)
    pieces = re.split(r"(``.+?``)", text)
    for i, piece in enumerate(pieces):
        if i % 2:
            pieces[i] = f"`{piece[2:-2]}`"
        else:
            piece = re.sub(r"([\\*`])", r"\\\1", piece)
            piece = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", piece)  # not an HTML tag
            pieces[i] = re.sub(r"(?<![^\W_])_|_(?![^\W_])", r"\_", piece)  # not inside a word
    return "".join(pieces)


if __name__ == "__main__":
    # typeshed types sys.stdout as TextIO, which has no reconfigure(); it is a TextIOWrapper
    typing.cast(io.TextIOWrapper, sys.stdout).reconfigure(encoding="utf-8")
    sys.stdout.write(configuration_reference())
