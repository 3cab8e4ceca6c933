"""Plugins: a file or module imported once, named by a stable key, its failures named in one line."""

import sys

import pytest

from pyro_vae.core import plugins
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.plugins import import_plugin, import_plugins, plugin_key


@pytest.fixture(autouse=True)
def _forget_plugins(monkeypatch):
    monkeypatch.setattr(plugins, "_IMPORTED", {})


def test_a_file_is_keyed_by_its_absolute_path_and_a_module_by_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plugin_key("mine.py") == str(tmp_path.resolve() / "mine.py")
    cfg = tmp_path / "cfg"
    assert plugin_key("sub/mine.py", relative_to=cfg) == str(cfg.resolve() / "sub/mine.py")
    assert plugin_key("/abs/mine.py", relative_to=tmp_path) == "/abs/mine.py"
    assert plugin_key("package.module") == "package.module"


def test_a_file_runs_once_however_often_it_is_named(tmp_path):
    counter = tmp_path / "count.txt"
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        f"import pathlib\np = pathlib.Path({str(counter)!r})\np.write_text(p.read_text() + '.')\n"
    )
    counter.write_text("")
    assert import_plugins([str(plugin), str(plugin)]) == [str(plugin.resolve())] * 2
    assert counter.read_text() == "."


def test_a_module_is_imported_by_name(tmp_path, monkeypatch):
    (tmp_path / "my_parts_module.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_plugin("my_parts_module") == "my_parts_module"
    assert sys.modules["my_parts_module"].VALUE == 7


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["missing.py"], "plugins: 'missing.py' does not exist"),
        (["no_such_module_here"], "plugins: importing 'no_such_module_here' failed: ModuleNotFoundError"),
        ("x.py", 'plugins = "x.py" is not allowed: expected a list of strings'),
        ([1], "plugins = [1] is not allowed"),
    ],
    ids=["missing-file", "missing-module", "not-a-list", "not-strings"],
)
def test_bad_plugins_are_named(tmp_path, monkeypatch, names, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        import_plugins(names)


def test_a_file_that_raises_is_reported_with_the_error(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('half-written')\n")
    with pytest.raises(ConfigError, match=r"importing '.*broken.py' failed: RuntimeError: half-written"):
        import_plugin(str(plugin))
    assert plugins._IMPORTED == {}
