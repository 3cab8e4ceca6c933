"""The error classes: what each one also is, so that callers' ``except`` clauses catch them."""

import pytest

from pyro_vae.core.errors import ConfigError, DataError, NotDefined, PyroVAEError, RunDirError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ConfigError, ValueError),
        (DataError, ValueError),
        (RunDirError, FileExistsError),
        (NotDefined, ValueError),
    ],
    ids=["config", "data", "run-dir", "not-defined"],
)
def test_each_error_is_a_pyro_vae_error_and_the_builtin_it_stands_for(error, builtin):
    with pytest.raises(PyroVAEError) as info:
        raise error("bad")
    assert isinstance(info.value, builtin) and str(info.value) == "bad"


def test_not_defined_keeps_a_short_reason_and_falls_back_to_the_message():
    assert NotDefined("log p(x) needs a guide density", reason="point guide").reason == "point guide"
    assert NotDefined("no KL").reason == "no KL"
