"""Fetching datasets by name: a loopback HTTP server stands in for the mirrors; what is fetched,
checked, cached and refused (with which line), the ``pyro-vae data`` commands, and the real
binarized MNIST and MNIST entries on files rebuilt from the shared data."""

import hashlib
import io
import json
import math
import os
import re
import socket
import types
from pathlib import Path

import loopback
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from pyro_vae import DataConfig, DataError, Download, RemoteFile, load_data, register_download
from pyro_vae.cli.main import main
from pyro_vae.data import downloads
from pyro_vae.data.catalog import get_download, read_idx_splits

ROOT = Path(__file__).resolve().parents[2]
MNIST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the first ten of t10k-labels-idx1-ubyte


@pytest.fixture
def server():
    """A mirror on 127.0.0.1 (:func:`loopback.serve`): ``files`` served, ``requests`` logged; a
    path in ``stall`` answers only after the test ends (a mirror that times out)."""
    with loopback.serve() as mirror:
        yield mirror


def refused_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def remote(name: str, body: bytes, *mirrors: str, algorithm: str = "sha256") -> RemoteFile:
    return RemoteFile(name, len(body), f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}", mirrors)


TRAIN = np.arange(80, dtype=np.uint8).reshape(20, 4)
VALID = np.arange(80, 100, dtype=np.uint8).reshape(5, 4)


@pytest.fixture
def tiny(server, scoped_registries):
    """A fetched dataset ``tiny_test`` of two .npy files (one checked by sha256, one by md5),
    served at ``/a/``; unregistered afterwards."""
    bodies = {"tiny_train.npy": npy_bytes(TRAIN), "tiny_valid.npy": npy_bytes(VALID)}
    for name, body in bodies.items():
        server.files[f"/a/{name}"] = body
    files = (
        remote("tiny_train.npy", bodies["tiny_train.npy"], f"{server.url}/a/"),
        remote("tiny_valid.npy", bodies["tiny_valid.npy"], f"{server.url}/a/", algorithm="md5"),
    )

    def read(where: Path) -> dict:
        return {"train": np.load(where / "tiny_train.npy"), "valid": np.load(where / "tiny_valid.npy")}

    entry = register_download(Download("tiny_test", files, read, "Two tiny arrays."))
    return types.SimpleNamespace(entry=entry, bodies=bodies)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Fetching one file
# ---------------------------------------------------------------------------------------------


def test_a_fetched_file_is_checked_kept_and_not_fetched_again(server, tmp_path):
    body = b"0123456789" * 1000
    server.files["/m/f.bin"] = body
    file = remote("f.bin", body, f"{server.url}/m/")
    path = downloads.fetch(file, tmp_path / "cache")
    assert path == tmp_path / "cache" / "f.bin" and path.read_bytes() == body
    assert server.requests == ["/m/f.bin"]
    assert downloads.fetch(file, tmp_path / "cache") == path
    assert server.requests == ["/m/f.bin"]  # the cache answered
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["f.bin"]


def test_a_fetched_file_is_readable_as_the_umask_allows(server, tmp_path):
    """A cache shared by a group (umask 002) or everyone (022) stays readable by them."""
    server.files["/m/g.bin"] = body = b"abc" * 10
    old = os.umask(0o022)
    try:
        path = downloads.fetch(remote("g.bin", body, f"{server.url}/m/"), tmp_path / "cache")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "served, reason",
    [
        (b"x" * 999 + b"y", r"sha256 [0-9a-f]{64} is not the published [0-9a-f]{64}"),
        (b"x" * 999, "999 bytes, not the published 1000"),
        (b"x" * 1001, "more than the published 1000 bytes"),
    ],
    ids=["wrong-checksum", "too-short", "too-long"],
)
def test_a_wrong_file_is_refused_in_one_line_and_leaves_nothing(server, tmp_path, served, reason):
    server.files["/m/f.bin"] = served
    file = remote("f.bin", b"x" * 1000, f"{server.url}/m/")
    with pytest.raises(DataError, match=rf"could not fetch f\.bin: {server.url}/m/f\.bin \({reason}\)$") as e:
        downloads.fetch(file, tmp_path)
    one_line(e)
    assert list(tmp_path.iterdir()) == []  # not the file, not its temporary


def test_http_error_refused_connection_and_timeout_each_name_url_and_reason(server, tmp_path):
    body = b"z" * 10
    server.files["/slow/f.bin"] = body
    server.stall.add("/slow/f.bin")
    refused = refused_url()
    file = remote("f.bin", body, f"{server.url}/missing/", refused, f"{server.url}/slow/")
    with pytest.raises(DataError) as e:
        downloads.fetch(file, tmp_path, timeout=0.3)
    assert one_line(e) == (
        f"could not fetch f.bin: {server.url}/missing/f.bin (HTTP 404 Not Found); "
        f"{refused}f.bin (connection refused); {server.url}/slow/f.bin (timed out after 0.3 s)"
    )
    assert list(tmp_path.iterdir()) == []


def test_mirrors_are_tried_in_order_until_one_serves_the_file(server, tmp_path):
    body = b"abc" * 7
    server.files["/second/f.bin"] = body
    file = remote("f.bin", body, f"{server.url}/first/", f"{server.url}/second/", f"{server.url}/third/")
    assert downloads.fetch(file, tmp_path).read_bytes() == body
    assert server.requests == ["/first/f.bin", "/second/f.bin"]


def test_the_users_mirrors_come_first_laid_out_as_the_cache(server, tmp_path, monkeypatch):
    body = b"abc" * 7
    server.files["/own/f.bin"] = body
    server.files["/user/tiny/f.bin"] = body
    monkeypatch.setenv(downloads.MIRROR_ENV, f"{refused_url()} {server.url}/user/")
    file = remote("f.bin", body, f"{server.url}/own/")
    downloads.fetch(file, tmp_path, folder="tiny")
    assert server.requests == ["/user/tiny/f.bin"]


def test_a_file_url_mirror_serves_a_copy_on_disk(tmp_path, monkeypatch):
    body = b"on disk"
    (tmp_path / "copy" / "tiny").mkdir(parents=True)
    (tmp_path / "copy" / "tiny" / "f.bin").write_bytes(body)
    monkeypatch.setenv(downloads.MIRROR_ENV, (tmp_path / "copy").as_uri())
    file = remote("f.bin", body, refused_url())
    assert downloads.fetch(file, tmp_path / "cache", folder="tiny").read_bytes() == body


def test_a_file_already_there_is_used_as_it_is_and_one_of_the_wrong_size_refused(server, tmp_path):
    file = remote("f.bin", b"published", f"{server.url}/m/")
    (tmp_path / "f.bin").write_bytes(b"same size")  # not checksummed again: a size check only
    assert downloads.fetch(file, tmp_path).read_bytes() == b"same size"
    (tmp_path / "f.bin").write_bytes(b"short")
    with pytest.raises(DataError, match=r"f\.bin has 5 bytes, not the published 9: remove it") as e:
        downloads.fetch(file, tmp_path)
    one_line(e)
    assert server.requests == [] and (tmp_path / "f.bin").read_bytes() == b"short"


def test_cache_dir_flag_then_environment_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(downloads.DATA_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert downloads.cache_dir() == tmp_path / "home" / ".cache" / "pyro-vae"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert downloads.cache_dir() == tmp_path / "xdg" / "pyro-vae"
    monkeypatch.setenv(downloads.DATA_ENV, str(tmp_path / "env"))
    assert downloads.cache_dir() == tmp_path / "env"
    assert downloads.cache_dir(tmp_path / "flag") == tmp_path / "flag"
    assert list(tmp_path.iterdir()) == []  # naming a directory creates none


def test_a_password_in_a_mirror_url_is_sent_and_never_shown(server, tmp_path):
    body = b"private" * 3
    server.files["/private/f.bin"] = body
    server.auth["/private/"] = "user:secret"
    base = server.url.replace("http://", "http://user:{}@")
    file = remote("f.bin", body, base.format("wrong") + "/private/", base.format("secret") + "/missing/")
    with pytest.raises(DataError) as e:
        downloads.fetch(file, tmp_path)
    shown = server.url.replace("http://", "http://user:***@")
    assert one_line(e) == (
        f"could not fetch f.bin: {shown}/private/f.bin (HTTP 401 Unauthorized); "
        f"{shown}/missing/f.bin (HTTP 404 Not Found)"
    )
    good = remote("f.bin", body, base.format("secret") + "/private/")
    assert downloads.fetch(good, tmp_path).read_bytes() == body  # sent as basic authentication


def test_a_failed_fetch_leaves_no_folder_it_created_and_keeps_one_it_found(server, tmp_path):
    file = remote("f.bin", b"abc", f"{server.url}/missing/")
    with pytest.raises(DataError, match="HTTP 404"):
        downloads.fetch(file, tmp_path / "cache" / "dataset")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its parent
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match="HTTP 404"):
        downloads.fetch(file, tmp_path / "mine")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_a_mirror_that_trickles_for_ever_is_given_up_in_one_line(server, tmp_path, monkeypatch):
    """Under MIN_RATE bytes/s over RATE_WINDOW s is no progress; the mirror trickles at most
    100 bytes/s, far under the limit however fast the machine, and never times out."""
    body = b"t" * 100_000
    server.files["/slow/f.bin"] = body
    server.trickle.add("/slow/f.bin")
    monkeypatch.setattr(downloads, "MIN_RATE", 1e6)
    monkeypatch.setattr(downloads, "RATE_WINDOW", 0.05)
    with pytest.raises(DataError) as e:
        downloads.fetch(remote("f.bin", body, f"{server.url}/slow/"), tmp_path / "cache")
    assert (
        one_line(e)
        == f"could not fetch f.bin: {server.url}/slow/f.bin (stalled: under 1e+06 bytes/s over 0.05 s)"
    )
    assert list(tmp_path.iterdir()) == []  # no temporary file, no folder


# ---------------------------------------------------------------------------------------------
# Datasets by name
# ---------------------------------------------------------------------------------------------


def test_load_data_fetches_a_named_dataset_into_the_cache(tiny, server, tmp_path, monkeypatch):
    monkeypatch.setenv(downloads.DATA_ENV, str(tmp_path))
    data = load_data(DataConfig(name="tiny_test"))
    assert torch.equal(data.train, torch.from_numpy(TRAIN).float())
    assert torch.equal(data.valid, torch.from_numpy(VALID).float())
    assert sorted(p.name for p in (tmp_path / "tiny_test").iterdir()) == ["tiny_train.npy", "tiny_valid.npy"]
    load_data(DataConfig(name="tiny_test"))
    assert len(server.requests) == 2  # the second load read the cache


def test_building_a_config_fetches_and_creates_nothing(tmp_path, monkeypatch):
    from pyro_vae import Config

    def no_network(url, timeout):
        raise AssertionError(f"opened {url}")

    monkeypatch.setattr(downloads, "open_url", no_network)
    monkeypatch.setenv(downloads.DATA_ENV, str(tmp_path / "cache"))
    Config.load(ROOT / "examples" / "binarized_mnist.toml")
    DataConfig(name="mnist")
    assert not (tmp_path / "cache").exists()


def test_a_missing_dataset_without_network_says_how_to_get_it(tiny, server, tmp_path, monkeypatch):
    server.files.clear()
    monkeypatch.setenv(downloads.DATA_ENV, str(tmp_path))
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="tiny_test"))
    line = one_line(e)
    url = f"{server.url}/a/tiny_train.npy"
    assert line.startswith(f'data.name = "tiny_test": could not fetch tiny_train.npy: {url} (HTTP 404')
    assert line.endswith(
        f"get it with `pyro-vae data get tiny_test` where the network is reachable, or put "
        f"tiny_train.npy, tiny_valid.npy (from {server.url}/a/) in {tmp_path / 'tiny_test'}"
    )


def test_data_get_and_data_list(tiny, tmp_path, capsys):
    assert main(["data", "list", "--dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"binarized_mnist", "mnist", "fashion_mnist", "kmnist", "tiny_test"} <= set(rows)
    assert rows["tiny_test"].split()[3:] == ["not", "cached", str(tmp_path / "tiny_test")]
    assert rows["binarized_mnist"].split()[1:3] == ["110", "MB"]

    assert main(["data", "get", "tiny_test", "--dir", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'tiny_test'}\n"
    assert (tmp_path / "tiny_test" / "tiny_valid.npy").read_bytes() == tiny.bodies["tiny_valid.npy"]
    (tmp_path / "tiny_test" / "tiny_valid.npy").unlink()
    assert main(["data", "list", "--dir", str(tmp_path)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("tiny_test "))
    assert row.split()[3:] == ["1", "of", "2", "files", str(tmp_path / "tiny_test")]


def test_data_get_refuses_an_unknown_name_before_fetching_anything(tiny, server, tmp_path, capsys):
    assert main(["data", "get", "tiny_test", "digits", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('pyro-vae: error: "digits" is not a dataset pyro-vae can fetch; allowed: ')
    assert err.count("\n") == 1 and server.requests == []


def test_data_get_reports_a_failed_fetch_in_one_line(tiny, server, tmp_path, capsys):
    server.files.clear()
    assert main(["data", "get", "tiny_test", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    url = f"{server.url}/a/tiny_train.npy"
    assert err == f"pyro-vae: error: could not fetch tiny_train.npy: {url} (HTTP 404 Not Found)\n"


def cache_problem(kind: str, root: Path) -> tuple[Path, str]:
    """A cache that cannot take the dataset ``tiny_test``, and the start of the line saying why."""
    if kind == "cache-is-a-file":
        (root / "cache").write_bytes(b"")
        return root / "cache", f"cannot fetch into {root / 'cache' / 'tiny_test'}: {root / 'cache'} is a file"
    (root / "cache").mkdir()
    (root / "cache" / "tiny_test").write_bytes(b"")
    return (
        root / "cache",
        f"cannot fetch into {root / 'cache' / 'tiny_test'}: {root / 'cache' / 'tiny_test'} is a file",
    )


MOVE = "move it away, or use another cache (PYRO_VAE_DATA=DIR, or `pyro-vae data get --dir DIR`)"


@pytest.mark.slow  # train's first call in a process loads the training modules
@pytest.mark.parametrize("kind", ["cache-is-a-file", "folder-is-a-file"])
def test_a_file_in_the_way_of_the_cache_is_one_line_naming_it(tiny, tmp_path, monkeypatch, capsys, kind):
    cache, start = cache_problem(kind, tmp_path)
    assert main(["data", "get", "tiny_test", "--dir", str(cache), "--quiet"]) == 2
    assert capsys.readouterr().err == f"pyro-vae: error: {start}, not a directory; {MOVE}\n"
    monkeypatch.setenv(downloads.DATA_ENV, str(cache))
    assert (
        main(["train", "--data.name", "tiny_test", "--train.run_dir", str(tmp_path / "run"), "--quiet"]) == 2
    )
    err = capsys.readouterr().err
    assert err == f'pyro-vae: error: data.name = "tiny_test": {start}, not a directory; {MOVE}\n'
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # train's first call in a process loads the training modules
def test_a_read_only_cache_is_one_line_naming_it(tiny, read_only_dir, tmp_path, monkeypatch, capsys):
    writable = "use another cache (PYRO_VAE_DATA=DIR, or `pyro-vae data get --dir DIR`)"
    assert main(["data", "get", "tiny_test", "--dir", str(read_only_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    reason = r"(permission denied|operation not permitted|read-only file system)"
    where = re.escape(str(read_only_dir / "tiny_test"))
    assert re.fullmatch(
        rf"pyro-vae: error: cannot create {where}: {reason}; make it writable, or {re.escape(writable)}\n",
        err,
    )
    monkeypatch.setenv(downloads.DATA_ENV, str(read_only_dir))
    assert (
        main(["train", "--data.name", "tiny_test", "--train.run_dir", str(tmp_path / "run"), "--quiet"]) == 2
    )
    assert re.fullmatch(
        rf'pyro-vae: error: data.name = "tiny_test": cannot create {where}: {reason}; .*\n',
        capsys.readouterr().err,
    )
    with pytest.raises(
        DataError, match=rf"^cannot write in {re.escape(str(read_only_dir))}: {reason}; make it writable"
    ):
        downloads.fetch(tiny.entry.files[0], read_only_dir)  # a folder there already
    assert list(read_only_dir.iterdir()) == []


PLUGIN = """
import numpy as np
from pyro_vae import Download, RemoteFile, register_download

register_download(
    Download("plugged", (RemoteFile("p.npy", {size}, "sha256:{sha256}", ("{url}/p/",)),),
             lambda folder: {{"data": np.load(folder / "p.npy")}}, "A plugin's dataset.")
)
"""


def test_data_get_and_list_know_the_datasets_a_plugin_registers(server, tmp_path, capsys, scoped_registries):
    body = npy_bytes(TRAIN)
    server.files["/p/p.npy"] = body
    plugin = tmp_path / "plugged.py"
    plugin.write_text(PLUGIN.format(size=len(body), sha256=hashlib.sha256(body).hexdigest(), url=server.url))
    cache = tmp_path / "cache"
    assert main(["data", "list", "--dir", str(cache), "--plugins", str(plugin)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("plugged "))
    assert row.split()[3:] == ["not", "cached", str(cache / "plugged")]
    assert main(["data", "get", "plugged", "--dir", str(cache), "--quiet", "--plugins", str(plugin)]) == 0
    assert capsys.readouterr().out == f"{cache / 'plugged'}\n"
    assert (cache / "plugged" / "p.npy").read_bytes() == body

    server.files.clear()  # what train says when it cannot fetch a plugin's dataset: the flag too
    with pytest.raises(
        DataError, match=rf"get it with `pyro-vae data get plugged --plugins {re.escape(str(plugin))}`"
    ):
        load_data(DataConfig(name="plugged"))


# ---------------------------------------------------------------------------------------------
# The real entries, on files rebuilt from the shared data and served over loopback
# ---------------------------------------------------------------------------------------------


def amat_bytes(values: np.ndarray) -> bytes:
    """Larochelle's text layout of 0/1 rows: values separated by single spaces, a newline each."""
    lines = np.full((len(values), 2 * values.shape[1]), ord(" "), np.uint8)
    lines[:, 0::2] = values + ord("0")
    lines[:, -1] = ord("\n")
    return lines.tobytes()


@pytest.mark.slow
def test_binarized_mnist_is_fetched_checked_loaded_and_trained_on(
    binarized_mnist, server, tmp_path, monkeypatch
):
    """The train and valid files rebuilt from the shared copy match the published sizes and
    sha256, so they pass as the real ones; the shared copy has no test split, so the valid
    file stands in for it, put in the cache by hand (a file there is used as it is)."""
    with np.load(binarized_mnist) as raw:
        shared = {"train": raw["train"], "valid": raw["valid"]}
    for split, values in shared.items():
        server.files[f"/binarized_mnist/binarized_mnist_{split}.amat"] = amat_bytes(values)
    cache = tmp_path / "cache"
    (cache / "binarized_mnist").mkdir(parents=True)
    (cache / "binarized_mnist" / "binarized_mnist_test.amat").write_bytes(amat_bytes(shared["valid"]))
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url)
    monkeypatch.setenv(downloads.DATA_ENV, str(cache))

    assert main(["data", "get", "binarized_mnist", "--quiet"]) == 0
    fetched = [f"/binarized_mnist/binarized_mnist_{split}.amat" for split in ("train", "valid")]
    assert sorted(server.requests) == fetched
    data = load_data(DataConfig(name="binarized_mnist"))
    assert data.image_shape == (28, 28) and data.test is not None
    assert torch.equal(data.train, torch.from_numpy(shared["train"]).float())
    assert torch.equal(data.valid, torch.from_numpy(shared["valid"]).float())

    run = tmp_path / "run"
    tiny = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]", "--train.batch_size", "500"]
    config = str(ROOT / "examples" / "binarized_mnist.toml")
    words = ["train", "--config", config, "--train.epochs", "1", *tiny, "--train.device", "cpu"]
    assert main([*words, "--train.run_dir", str(run), "--quiet"]) == 0
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    elbo = [r["valid_elbo"] for r in rows]
    # 784 Bernoulli pixels: the untrained model is near 784 log 2 ≈ 543 nats, one epoch far better
    assert all(math.isfinite(v) for v in elbo) and -700 < elbo[0] < -400 and elbo[1] > elbo[0] + 100
    assert len(server.requests) == 2  # training read the cache


def test_mnist_test_files_match_the_published_checksums_and_read(
    server, tmp_path, monkeypatch, scoped_registries
):
    """The shared t10k files pass the mnist entry's published sizes and sha256 over loopback;
    copies of them standing in for the train files show how the entry reads and splits."""
    shared = SHARED_DATA / "mnist"
    if not (shared / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{shared} is absent (it sits beside the project in CI)")
    monkeypatch.setenv(downloads.MIRROR_ENV, server.url)
    t10k = [f for f in get_download("mnist").files if f.name.startswith("t10k")]
    for file in t10k:
        server.files[f"/mnist/{file.name}"] = (shared / file.name).read_bytes()
    where = tmp_path / "mnist_t10k"
    downloads.fetch_all(t10k, where, folder="mnist")
    assert sorted(server.requests) == sorted(f"/mnist/{f.name}" for f in t10k)
    for file in t10k:
        (where / file.name.replace("t10k", "train")).write_bytes((where / file.name).read_bytes())

    arrays = read_idx_splits(where)
    assert arrays["test"].shape == (10000, 28, 28) and arrays["test"].dtype == np.float32
    assert arrays["test_labels"][:10].tolist() == MNIST_TEST_LABELS
    assert arrays["test"].min() == 0 and arrays["test"].max() == 1
    levels = arrays["test"] * 255
    assert np.array_equal(levels, np.round(levels))  # k / 255, correctly rounded

    # an entry with nothing to fetch, reading that folder as the mnist entry reads its own
    monkeypatch.setenv(downloads.DATA_ENV, str(tmp_path))
    register_download(Download("mnist_t10k", (), read_idx_splits, "MNIST's test files, twice."))
    data = load_data(DataConfig(name="mnist_t10k", valid_fraction=0.1))
    assert data.train.shape == (9000, 784) and data.valid.shape == (1000, 784)  # valid_fraction of train
    assert data.test is not None and data.test.shape == (10000, 784)
    assert data.image_shape == (28, 28)
