"""An estimator's options as flags of ``pyro-vae evaluate``: ``--samples 5000`` for the option
``samples``, and the library's refusal of an option in the words of the flag that set it.

The options, their types and defaults are the registered estimators' own
(:mod:`pyro_vae.inference.estimators`), and they are checked in one place,
:func:`pyro_vae.inference.estimators.base.check_estimator`; this module only names them.
"""

import argparse

from pyro_vae.cli.arguments import key_values
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import checkable, describe, parse_value, show
from pyro_vae.inference.estimators.base import ESTIMATORS, EstimatorOptionError, check_estimator


def names() -> list[str]:
    """Every registered estimator, a plugin's included: the choices of ``--estimator``."""
    return ESTIMATORS.names()


def flag(option: str) -> str:
    """``step_size`` -> ``--step-size``."""
    return f"--{option.replace('_', '-')}"


def _flags() -> dict[str, tuple[str, str]]:
    """Every option of every registered estimator that a flag can set: flag -> (option, help)."""
    flags: dict[str, tuple[str, list[str], str]] = {}
    for name in ESTIMATORS.names():
        for option, param in ESTIMATORS.options(name).items():
            if checkable(param.annotation):
                _, users, _ = flags.setdefault(flag(option), (option, [], describe(param.annotation)))
                users.append(name)
    return {flag: (option, f"{', '.join(users)}: {words}") for flag, (option, users, words) in flags.items()}


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each option of the estimators, its value kept as ``opt_OPTION`` (None when
    not given)."""
    group = parser.add_argument_group("estimator options (see below for each estimator's)")
    for name, (option, words) in _flags().items():
        group.add_argument(name, dest=f"opt_{option}", metavar="VALUE", help=words)


def epilog() -> str:
    lines = ["estimators and their options (defaults):"]
    for name in ESTIMATORS.names():
        options = ESTIMATORS.options(name)
        shown = [f"{flag(k)} {show(p.default)}" for k, p in options.items() if checkable(p.annotation)]
        lines.append(f"  {name}: {' '.join(shown) or '(no options)'}")
    return "\n".join(lines)


def chosen_options(args: argparse.Namespace) -> dict:
    """The options of ``args.estimator`` that ``--option KEY=VALUE`` and the option flags give
    (a flag wins), checked, with the rest at their defaults.

    :raises ConfigError: naming the flag: ``--samples = 0 is not allowed: expected an integer >= 1``.
    """
    options = key_values(args.option, "--option")
    given = {k[4:]: parse_value(v) for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    options.update(given)
    try:
        return check_estimator(args.estimator, options)
    except EstimatorOptionError as e:
        raise ConfigError(_in_flags(e)) from None


def _in_flags(error: EstimatorOptionError) -> str:
    """The library's refusal of an option, the option named by its flag."""
    if not error.unknown:
        return error.words(flag(error.option))
    known = ", ".join(
        flag(o) for o, p in ESTIMATORS.options(error.estimator).items() if checkable(p.annotation)
    )
    return (
        f"unknown key --estimator.{error.option} for estimator {show(error.estimator)}; "
        f"allowed: {known or 'none'}"
    )
