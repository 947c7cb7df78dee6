"""Tests for the model registry and the resumable downloader (loopback HTTP only)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from stemforge import registry
from stemforge.errors import StemforgeError
from stemforge.registry import ModelEntry


# ---------------------------------------------------------------------------
# Loopback server


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; records every request."""

    files: dict[str, bytes] = field(default_factory=dict)
    ignore_range: bool = False  # answer 200 with the whole file even when asked a Range
    truncate_next: int = 0  # number of upcoming requests to cut off halfway
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    """GET handler with single-range support, driven by the server's ``state``."""

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.truncate_next:
            state.truncate_next -= 1
            payload = payload[: len(payload) // 2]  # then the connection closes
        self.wfile.write(payload)


@pytest.fixture
def server(monkeypatch):
    """A ThreadingHTTPServer on 127.0.0.1; yields (state, base_url)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    """A small real torch checkpoint (a random state_dict), as bytes."""
    generator = torch.Generator().manual_seed(0)
    state = {"conv.weight": torch.randn(64, 32, 3, 3, generator=generator),
             "linear.weight": torch.randn(256, 128, generator=generator)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(server, checkpoint):
    """The checkpoint served at /model.ckpt; yields (state, url)."""
    state, base = server
    state.files["/model.ckpt"] = checkpoint
    return state, base + "/model.ckpt"


# ---------------------------------------------------------------------------
# Downloader


def test_download_verifies_and_moves_into_place(served, checkpoint, tmp_path):
    state, url = served
    dest = tmp_path / "sub" / "model.ckpt"
    out = registry.download(url, dest, sha256=sha(checkpoint), size=len(checkpoint),
                            progress=True, timeout=5)
    assert out == dest
    assert dest.read_bytes() == checkpoint
    assert not dest.with_suffix(".ckpt.part").exists()
    assert state.requests == [("/model.ckpt", None)]
    loaded = torch.load(dest, weights_only=True)
    assert set(loaded) == {"conv.weight", "linear.weight"}


def test_checksum_mismatch_deletes_everything(served, tmp_path):
    _, url = served
    dest = tmp_path / "model.ckpt"
    wrong = "0" * 64
    with pytest.raises(StemforgeError) as info:
        registry.download(url, dest, sha256=wrong, progress=False, timeout=5)
    message = str(info.value)
    assert url in message and wrong in message
    assert re.search(r"got [0-9a-f]{64}", message)
    assert not dest.exists()
    assert not dest.with_suffix(".ckpt.part").exists()


def test_size_mismatch_is_an_error(served, checkpoint, tmp_path):
    _, url = served
    dest = tmp_path / "model.ckpt"
    with pytest.raises(StemforgeError, match="bytes, expected"):
        registry.download(url, dest, sha256=sha(checkpoint), size=len(checkpoint) + 1,
                          progress=False, timeout=5)
    assert not dest.exists()


def test_truncated_download_keeps_part_then_resumes(served, checkpoint, tmp_path):
    state, url = served
    state.truncate_next = 1
    dest = tmp_path / "model.ckpt"
    part = dest.with_suffix(".ckpt.part")
    with pytest.raises(StemforgeError, match="re-run .* to resume"):
        registry.download(url, dest, sha256=sha(checkpoint), size=len(checkpoint),
                          progress=False, timeout=5)
    assert not dest.exists()
    half = len(checkpoint) // 2
    assert part.read_bytes() == checkpoint[:half]

    registry.download(url, dest, sha256=sha(checkpoint), size=len(checkpoint),
                      progress=False, timeout=5)
    assert dest.read_bytes() == checkpoint
    assert not part.exists()
    assert state.requests == [("/model.ckpt", None), ("/model.ckpt", f"bytes={half}-")]


def test_server_ignoring_range_restarts_from_zero(served, checkpoint, tmp_path):
    state, url = served
    state.ignore_range = True
    dest = tmp_path / "model.ckpt"
    part = dest.with_suffix(".ckpt.part")
    part.write_bytes(b"garbage that must not survive")
    registry.download(url, dest, sha256=sha(checkpoint), progress=False, timeout=5)
    assert dest.read_bytes() == checkpoint
    assert state.requests == [("/model.ckpt", f"bytes={len(b'garbage that must not survive')}-")]


def test_complete_part_answered_416_is_finished(served, checkpoint, tmp_path):
    state, url = served
    dest = tmp_path / "model.ckpt"
    dest.with_suffix(".ckpt.part").write_bytes(checkpoint)  # crashed before the rename
    registry.download(url, dest, sha256=sha(checkpoint), progress=False, timeout=5)
    assert dest.read_bytes() == checkpoint
    assert state.requests == [("/model.ckpt", f"bytes={len(checkpoint)}-")]


def test_wrong_part_answered_416_is_downloaded_again(served, checkpoint, tmp_path):
    state, url = served
    dest = tmp_path / "model.ckpt"
    dest.with_suffix(".ckpt.part").write_bytes(b"x" * (len(checkpoint) + 10))
    registry.download(url, dest, sha256=sha(checkpoint), progress=False, timeout=5)
    assert dest.read_bytes() == checkpoint
    assert [r for _, r in state.requests] == [f"bytes={len(checkpoint) + 10}-", None]


def test_complete_part_with_known_size_needs_no_request(served, checkpoint, tmp_path):
    state, url = served
    dest = tmp_path / "model.ckpt"
    dest.with_suffix(".ckpt.part").write_bytes(checkpoint)
    registry.download(url, dest, sha256=sha(checkpoint), size=len(checkpoint),
                      progress=False, timeout=5)
    assert dest.read_bytes() == checkpoint
    assert state.requests == []


def test_cached_file_makes_no_request(served, checkpoint, tmp_path):
    state, url = served
    dest = tmp_path / "model.ckpt"
    dest.write_bytes(checkpoint)
    registry.download(url, dest, sha256=sha(checkpoint), size=len(checkpoint),
                      progress=False, timeout=5)
    assert state.requests == []


def test_corrupt_cached_file_is_replaced(served, checkpoint, tmp_path):
    state, url = served
    dest = tmp_path / "model.ckpt"
    dest.write_bytes(b"corrupt")
    registry.download(url, dest, sha256=sha(checkpoint), progress=False, timeout=5)
    assert dest.read_bytes() == checkpoint
    assert len(state.requests) == 1


def test_unknown_checksum_refused_unless_allowed(served, checkpoint, tmp_path, capsys):
    state, url = served
    dest = tmp_path / "model.ckpt"
    with pytest.raises(StemforgeError, match="allow-unverified"):
        registry.download(url, dest, sha256=None, progress=False, timeout=5)
    assert state.requests == [] and not dest.exists()

    registry.download(url, dest, sha256=None, allow_unverified=True, progress=False,
                      timeout=5)
    assert dest.read_bytes() == checkpoint
    assert sha(checkpoint) in capsys.readouterr().err


def test_http_error_and_unreachable_host(server, tmp_path):
    state, base = server
    with pytest.raises(StemforgeError, match="HTTP 404"):
        registry.download(base + "/missing.ckpt", tmp_path / "m.ckpt", sha256="0" * 64,
                          progress=False, timeout=5)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StemforgeError, match="Cannot download"):
        registry.download(f"http://127.0.0.1:{port}/nothing.ckpt", tmp_path / "n.ckpt",
                          sha256="0" * 64, progress=False, timeout=5)


# ---------------------------------------------------------------------------
# Registry


REQUIRED = {"name", "architecture", "config", "url", "weights", "sha256", "size",
            "licence", "stems", "description", "sample_rate"}


def test_shipped_registry_entries_are_well_formed():
    raw = json.loads(registry.REGISTRY_PATH.read_text(encoding="utf-8"))
    assert raw, "the registry should not be empty"
    for item in raw:
        assert REQUIRED <= set(item), item.get("name")
        for key in ("sha256", "config_sha256"):
            if item.get(key) is not None:
                assert re.fullmatch(r"[0-9a-f]{64}", item[key]), (item["name"], key)
        if item["url"] is not None:
            assert item["url"].startswith("https://"), item["name"]
        if item["size"] is not None:
            assert isinstance(item["size"], int) and item["size"] > 0
    entries = registry.load_registry()
    assert len(entries) == len(raw)
    assert all(isinstance(e, ModelEntry) for e in entries.values())


def write_registry(tmp_path: Path, items: list) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def good_item(**overrides) -> dict:
    item = {"name": "tiny", "architecture": "mdx23c", "config": "configs/tiny.yaml",
            "url": "https://example.invalid/tiny.ckpt", "weights": None,
            "sha256": "a" * 64, "size": 10, "licence": "MIT", "stems": ["a", "b"],
            "description": "test model", "sample_rate": 44100}
    item.update(overrides)
    return item


def test_load_registry_reads_a_valid_file(tmp_path):
    entries = registry.load_registry(write_registry(tmp_path, [good_item()]))
    assert entries["tiny"].stems == ("a", "b")
    assert entries["tiny"].config_sha256 is None


@pytest.mark.parametrize("overrides, field_name", [
    ({"sha256": "ABC"}, "sha256"),
    ({"size": -3}, "size"),
    ({"stems": []}, "stems"),
    ({"sample_rate": "44100"}, "sample_rate"),
    ({"url": "ftp://example.invalid/x"}, "url"),
    ({"name": "Bad Name"}, "name"),
    ({"weights": "weights/tiny.pt"}, "weights"),
    ({"colour": "red"}, "colour"),
])
def test_bad_entries_name_the_field(tmp_path, overrides, field_name):
    path = write_registry(tmp_path, [good_item(**overrides)])
    with pytest.raises(StemforgeError, match=f"'{field_name}'"):
        registry.load_registry(path)


def test_missing_field_and_duplicates(tmp_path):
    item = good_item()
    del item["licence"]
    with pytest.raises(StemforgeError, match="'licence'"):
        registry.load_registry(write_registry(tmp_path, [item]))
    other = tmp_path / "dup"
    other.mkdir()
    with pytest.raises(StemforgeError, match="duplicate"):
        registry.load_registry(write_registry(other, [good_item(), good_item()]))


def test_unknown_name_suggests_close_match():
    name = next(iter(registry.load_registry()))
    with pytest.raises(StemforgeError) as info:
        registry.get_model(name[:-1] + "x")
    assert repr(name) in str(info.value)
    assert "stemforge models" in str(info.value)


def test_cache_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    assert registry.cache_dir() == tmp_path
    monkeypatch.delenv("STEMFORGE_CACHE")
    assert registry.cache_dir().name == "models"


def test_fetch_model_and_table(served, checkpoint, tmp_path, monkeypatch):
    state, url = served
    config = b"audio:\n  sample_rate: 44100\n"
    state.files["/tiny.yaml"] = config
    entry = ModelEntry(name="tiny", architecture="mdx23c", config=url[:-len("model.ckpt")]
                       + "tiny.yaml", url=url, weights=None, sha256=sha(checkpoint),
                       size=len(checkpoint), licence="MIT", stems=("a", "b"),
                       description="test", sample_rate=44100, config_sha256=sha(config))
    monkeypatch.setattr(registry, "load_registry", lambda path=None: {"tiny": entry})
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    assert "no" in registry.format_table([entry]).splitlines()[1].split()

    ckpt, cfg = registry.fetch_model("tiny", progress=False)
    assert ckpt == tmp_path / "tiny" / "model.ckpt" and ckpt.read_bytes() == checkpoint
    assert cfg == tmp_path / "tiny" / "tiny.yaml" and cfg.read_bytes() == config

    table = registry.format_table([entry])
    header, row = table.splitlines()
    assert header.split()[:3] == ["NAME", "ARCH", "STEMS"]
    assert row.split() == ["tiny", "mdx23c", "a,b", "0", "MIT", "yes"]
    requests = len(state.requests)
    registry.fetch_model("tiny", progress=False)
    assert len(state.requests) == requests  # cached: no network


def test_format_table_lists_shipped_registry():
    table = registry.format_table(registry.load_registry().values())
    for name in registry.load_registry():
        assert name in table


# ---------------------------------------------------------------------------
# End to end: `stemforge separate -n NAME` downloads once, verifies, separates


def test_separate_by_name_downloads_once_then_uses_cache(server, tmp_path, monkeypatch, msst_ref):
    import numpy as np
    import soundfile as sf

    from stemforge.cli import main

    state, base = server
    ckpt = (msst_ref / "mdx23c_tiny.ckpt").read_bytes()
    yaml = (msst_ref / "mdx23c_tiny.yaml").read_bytes()
    state.files.update({"/tiny.ckpt": ckpt, "/tiny.yaml": yaml})
    entry = ModelEntry(name="tiny-test", architecture="mdx23c", config=base + "/tiny.yaml", url=base + "/tiny.ckpt",
                       weights=None, sha256=sha(ckpt), size=len(ckpt), licence="test",
                       stems=("vocals", "bass", "drums", "other"), description="test", sample_rate=44100,
                       config_sha256=sha(yaml))
    monkeypatch.setattr(registry, "load_registry", lambda path=None: {entry.name: entry})
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path / "cache"))
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * np.random.default_rng(0).standard_normal((20000, 2)), 44100)
    for _ in range(2):
        assert main(["separate", str(song), "-n", "tiny-test", "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(p for p, _ in state.requests) == ["/tiny.ckpt", "/tiny.yaml"]  # second run: cache only
    assert len(list((tmp_path / "out" / "tiny-test" / "song").glob("*.wav"))) == 4
