"""Where weights come from (npmobilenet.models.weights.resolve_weights) and the download cache
(npmobilenet.io.hub): the argument, the environment, the cache, then a checked download.

Downloads go to a file server started on 127.0.0.1 in the test; nothing here touches the
internet.
"""

import dataclasses
import hashlib
import http.server
import io
import socket
import threading
import urllib.request
from collections import OrderedDict

import numpy as np
import pytest
from checkpoint_helpers import assert_same_state, listing

from npmobilenet.errors import WeightsError
from npmobilenet.io import cache_dir, download_weights, load_npz, save_npz, save_torch_checkpoint
from npmobilenet.models.weights import DEFAULT_WEIGHTS, WEIGHTS, resolve_weights


# --- where weights come from -----------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache in tmp_path, and no NPMOBILENET_WEIGHTS."""
    directory = tmp_path / "home"
    monkeypatch.setenv("NPMOBILENET_HOME", str(directory))
    monkeypatch.delenv("NPMOBILENET_WEIGHTS", raising=False)
    return directory


@pytest.fixture
def offline(monkeypatch):
    """A network that fails the test if anything tries to use it."""

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"the network was used: {url}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def marked_state(value):
    """A tiny state dict whose one value says where it came from."""
    return {"marker": np.array([value], dtype=np.float32)}


def came_from(state):
    return float(state["marker"][0])


def test_cache_dir_is_created_on_demand(tmp_path, monkeypatch):
    monkeypatch.setenv("NPMOBILENET_HOME", str(tmp_path / "a" / "b"))
    assert cache_dir() == tmp_path / "a" / "b" and cache_dir().is_dir()
    monkeypatch.delenv("NPMOBILENET_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "npmobilenet" and cache_dir().is_dir()


def test_cached_weights_are_used_without_the_network(home, offline):
    save_npz(marked_state(1), cache_dir() / "mobilenet_v2-b0353104.npz")
    save_npz(marked_state(2), cache_dir() / "mobilenet_v2-7ebf99e0.npz")
    state, spec = resolve_weights()
    assert came_from(state) == 1 and spec is WEIGHTS["IMAGENET1K_V1"]
    state, spec = resolve_weights("IMAGENET1K_V2")
    assert came_from(state) == 2 and spec is WEIGHTS["IMAGENET1K_V2"]


def test_environment_beats_cache_and_argument_beats_environment(home, offline, tmp_path, monkeypatch):
    save_npz(marked_state(1), cache_dir() / "mobilenet_v2-b0353104.npz")
    save_npz(marked_state(2), cache_dir() / "mobilenet_v2-7ebf99e0.npz")
    from_env = tmp_path / "from_env-7ebf99e0.npz"
    save_npz(marked_state(3), from_env)
    argument = tmp_path / "argument.pth"
    save_torch_checkpoint(marked_state(4), argument)

    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(from_env))
    state, spec = resolve_weights()
    assert came_from(state) == 3 and spec is WEIGHTS["IMAGENET1K_V2"]  # its name carries V2's hash

    for given in (argument, str(argument)):
        state, spec = resolve_weights(given)
        assert came_from(state) == 4 and spec is WEIGHTS[DEFAULT_WEIGHTS]
    state, spec = resolve_weights("IMAGENET1K_V2")
    assert came_from(state) == 2

    monkeypatch.setenv("NPMOBILENET_WEIGHTS", "IMAGENET1K_V2")
    state, spec = resolve_weights()
    assert came_from(state) == 2 and spec is WEIGHTS["IMAGENET1K_V2"]

    monkeypatch.setenv("NPMOBILENET_WEIGHTS", "")  # empty means unset
    state, spec = resolve_weights()
    assert came_from(state) == 1 and spec is WEIGHTS["IMAGENET1K_V1"]


def test_resolve_errors_name_the_path_or_the_variable(home, offline, tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="does not exist") as info:
        resolve_weights(str(tmp_path / "missing.pth"))
    assert "missing.pth" in str(info.value)
    with pytest.raises(WeightsError, match="unknown weights 'IMAGENET1K_V9'") as info:
        resolve_weights("IMAGENET1K_V9")
    assert "IMAGENET1K_V1" in str(info.value)
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(tmp_path / "gone.npz"))
    with pytest.raises(WeightsError, match="NPMOBILENET_WEIGHTS=") as info:
        resolve_weights()
    assert "gone.npz" in str(info.value) and "does not exist" in str(info.value)


def test_a_damaged_cache_file_says_to_delete_it(home, offline):
    damaged = cache_dir() / "mobilenet_v2-b0353104.npz"
    damaged.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(WeightsError, match="delete it") as info:
        resolve_weights("IMAGENET1K_V1")
    assert str(damaged) in str(info.value)


# --- downloads, from a server on 127.0.0.1 ---------------------------------------------------------


class FileServer:
    """Serves ``routes[path] = (body, announced_length)`` over HTTP on 127.0.0.1 from a thread.

    When ``announced_length`` is larger than the body, the server sends the body and closes the
    connection, as a dropped download looks to the client.
    """

    def __init__(self):
        self.routes = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, announced = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server.server_address[1]

    def add(self, path, body, announced=None):
        """Serve ``body`` at ``path``; return its URL."""
        self.routes[path] = (body, len(body) if announced is None else announced)
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(monkeypatch):
    """A FileServer, reached directly even where a proxy is configured for the internet."""
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    server = FileServer()
    yield server
    server.close()


def tiny_checkpoint(torch):
    """A small torch.save file, its state dict, and the first 8 hex digits of its SHA-256."""
    state = OrderedDict([("features.0.0.weight", torch.randn(4, 3, 3, 3)), ("features.0.1.num_batches_tracked", torch.tensor(9))])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = buffer.getvalue()
    return body, state, hashlib.sha256(body).hexdigest()[:8]


def served_spec(server, body, prefix, announced=None, sha256_prefix=None):
    """A registry entry for a file served under a name that carries ``prefix``, as torchvision names its files."""
    file_name = f"tiny-{prefix}.pth"
    return dataclasses.replace(
        WEIGHTS["IMAGENET1K_V1"],
        name="TINY",
        url=server.add(f"/models/{file_name}", body, announced),
        file_name=file_name,
        sha256_prefix=sha256_prefix or prefix,
    )


def test_download_checks_the_hash_and_caches_an_npz(torch, home, server, capsys):
    body, state, prefix = tiny_checkpoint(torch)
    spec = served_spec(server, body, prefix)
    path = download_weights(spec, progress=True)
    assert path == home / f"tiny-{prefix}.npz"
    assert listing(home) == [path.name]  # the .pth is gone, no temporary file is left
    assert_same_state(load_npz(path), state, owns_memory=False)
    progress = capsys.readouterr().err
    assert "100%" in progress and "MB" in progress
    download_weights(spec, progress=False)
    assert capsys.readouterr().err == ""


def test_resolve_downloads_once_then_uses_the_cache(torch, home, server, monkeypatch):
    body, state, prefix = tiny_checkpoint(torch)
    spec = served_spec(server, body, prefix)
    downloaded, returned_spec = resolve_weights(spec, progress=False)
    assert_same_state(downloaded, state, owns_memory=False)
    assert returned_spec is spec
    monkeypatch.setattr(urllib.request, "urlopen", None)  # any use of the network now fails
    cached, _ = resolve_weights(spec, progress=False)
    assert_same_state(cached, state, owns_memory=False)


def test_download_with_the_wrong_hash_caches_nothing(torch, home, server):
    body, _, prefix = tiny_checkpoint(torch)
    wrong = "0" * 8 if not prefix.startswith("0") else "f" * 8
    spec = served_spec(server, body, prefix, sha256_prefix=wrong)
    with pytest.raises(WeightsError, match="SHA-256") as info:
        download_weights(spec, progress=False)
    message = str(info.value)
    assert wrong in message and hashlib.sha256(body).hexdigest() in message and spec.url in message
    assert listing(home) == []


def test_a_dropped_connection_caches_nothing(torch, home, server):
    body, _, prefix = tiny_checkpoint(torch)
    spec = served_spec(server, body[: len(body) // 2], prefix, announced=len(body))
    with pytest.raises(WeightsError, match=f"stopped after {len(body) // 2} of {len(body)} bytes") as info:
        download_weights(spec, progress=False)
    assert spec.url in str(info.value)
    assert listing(home) == []


def test_a_verified_download_that_is_not_a_checkpoint_caches_nothing(home, server):
    body = b"<html>not a checkpoint</html>"
    prefix = hashlib.sha256(body).hexdigest()[:8]
    with pytest.raises(WeightsError, match="expected a PyTorch checkpoint"):
        download_weights(served_spec(server, body, prefix), progress=False)
    assert listing(home) == []


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("failure", ["unreachable", "404"])
def test_network_failures_name_the_url_and_how_to_pass_a_local_file(home, server, failure):
    if failure == "unreachable":
        url = f"http://127.0.0.1:{free_port()}/models/mobilenet_v2-b0353104.pth"
    else:
        url = f"http://127.0.0.1:{server.port}/models/mobilenet_v2-b0353104.pth"  # not among its routes
    spec = dataclasses.replace(WEIGHTS["IMAGENET1K_V1"], url=url)
    with pytest.raises(WeightsError, match="could not download") as info:
        resolve_weights(spec, progress=False)
    message = str(info.value)
    for fragment in (url, "NPMOBILENET_WEIGHTS", "--weights", 'weights="path/to/mobilenet_v2-b0353104.pth"'):
        assert fragment in message, f"{message!r} does not mention {fragment!r}"
    assert listing(home) == []
