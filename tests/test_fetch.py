"""checkpoints.fetch: the LoRA download resumes over HTTP ranges and is verified before use."""
from __future__ import annotations

import http.server
import threading

import pytest

from checkpoints import fetch, layout
from common.command import exit_status
from common.errors import SketchSearchError
from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints
from tools.fixtures.tiny_models.sd_turbo import write_tiny_lora_file, write_tiny_sd_turbo


class RangeServer(http.server.ThreadingHTTPServer):
    """Serves one body at any path, honouring `Range: bytes=N-`, and records the ranges asked."""

    def __init__(self, body: bytes):
        self.body, self.ranges = body, []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805
                start = 0
                asked = handler.headers.get("Range")
                self.ranges.append(asked)
                if asked:
                    start = int(asked.split("=")[1].split("-")[0])
                part = self.body[start:]
                handler.send_response(206 if asked else 200)
                handler.send_header("Content-Length", str(len(part)))
                handler.end_headers()
                handler.wfile.write(part)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/sketch_to_image_stochastic.pkl"


@pytest.fixture(scope="module")
def lora_bytes(tmp_path_factory) -> bytes:
    root = tmp_path_factory.mktemp("lora")
    return write_tiny_lora_file(root / "lora.pkl", write_tiny_sd_turbo(root / "sd-turbo")).read_bytes()


def test_interrupted_download_resumes_and_is_verified(lora_bytes, tmp_path):
    server = RangeServer(lora_bytes)
    target = tmp_path / layout.LORA_FILE
    half = len(lora_bytes) // 2
    (tmp_path / (layout.LORA_FILE + ".part")).write_bytes(lora_bytes[:half])  # an earlier try
    try:
        fetch.fetch_url(server.url, target, fetch._verify_lora)
    finally:
        server.shutdown()
    assert server.ranges == [f"bytes={half}-"]
    assert target.read_bytes() == lora_bytes
    assert not (tmp_path / (layout.LORA_FILE + ".part")).exists()


def test_a_download_that_is_not_the_lora_file_never_takes_its_name(tmp_path):
    server = RangeServer(b"<html>not found</html>")
    target = tmp_path / layout.LORA_FILE
    try:
        with pytest.raises(SketchSearchError):
            fetch.fetch_url(server.url, target, fetch._verify_lora)
    finally:
        server.shutdown()
    assert not target.exists() and not list(tmp_path.iterdir())


def test_complete_folder_downloads_nothing(tmp_path, capsys, monkeypatch):
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    monkeypatch.setattr(fetch, "fetch_hub_model", lambda *a: pytest.fail("downloaded again"))
    monkeypatch.setattr(fetch, "fetch_url", lambda *a: pytest.fail("downloaded again"))
    fetch.fetch_all(checkpoints, [layout.DEFAULT_EMBEDDER])
    assert capsys.readouterr().out.count("already in") == 4


def test_offline_hub_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert exit_status(fetch.main, ["--checkpoints", str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: could not download Salesforce/")
