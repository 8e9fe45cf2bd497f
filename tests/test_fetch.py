"""checkpoints.fetch: the LoRA download resumes over HTTP ranges and is verified before use."""
from __future__ import annotations

import http.server
import threading

import pytest

from checkpoints import fetch, layout
from sketch_search.common.command import exit_status
from sketch_search.common.errors import SketchSearchError
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


# -- the authors' file name and URL (issue 11, part 1) -------------------------------------------------
def test_the_lora_file_has_the_authors_url_and_name():
    # GaParmar/img2img-turbo src/pix2pix_turbo.py, the sketch_to_image_stochastic branch.
    assert layout.LORA_URL == "https://www.cs.cmu.edu/~img2img-turbo/models/sketch_to_image_stochastic_lora.pkl"
    assert layout.LORA_FILE == "sketch_to_image_stochastic_lora.pkl" == layout.LORA_URL.rsplit("/", 1)[1]


def test_fetch_saves_the_lora_file_under_the_authors_name(lora_bytes, tmp_path, monkeypatch, capsys):
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    (checkpoints / layout.LORA_FILE).unlink()
    server = RangeServer(lora_bytes)
    asked = []
    real_fetch_url = fetch.fetch_url
    monkeypatch.setattr(layout, "LORA_URL", server.url)  # the authors' site, served here
    monkeypatch.setattr(fetch, "fetch_url", lambda url, path, verify: (asked.append((url, path)),
                                                                     real_fetch_url(url, path, verify)))
    monkeypatch.setattr(fetch, "fetch_hub_model", lambda *a: pytest.fail("downloaded again"))
    try:
        fetch.fetch_all(checkpoints, [layout.DEFAULT_EMBEDDER])
    finally:
        server.shutdown()
    assert asked == [(server.url, checkpoints / "sketch_to_image_stochastic_lora.pkl")]
    assert (checkpoints / "sketch_to_image_stochastic_lora.pkl").read_bytes() == lora_bytes


def test_a_lora_file_saved_under_the_old_name_is_still_used(tmp_path, capsys, monkeypatch):
    from sketch_search.app.model_plan import plan_models
    from sketch_search.app.settings import Settings
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    old = checkpoints / "sketch_to_image_stochastic.pkl"
    (checkpoints / layout.LORA_FILE).rename(old)
    monkeypatch.setattr(fetch, "fetch_hub_model", lambda *a: pytest.fail("downloaded again"))
    monkeypatch.setattr(fetch, "fetch_url", lambda *a: pytest.fail("downloaded again"))
    fetch.fetch_all(checkpoints, [layout.DEFAULT_EMBEDDER])
    assert capsys.readouterr().out.count("already in") == 4
    assert plan_models(Settings(checkpoints=checkpoints), stages=("generator",)).lora == old


# -- DINOv3 is gated (issue 11, part 4) -----------------------------------------------------------------
class RefusingHub(http.server.ThreadingHTTPServer):
    """A hub that refuses every request as huggingface.co refuses a gated repo to an account
    that has not accepted its licence (401 + X-Error-Code: GatedRepo), or with a bare status."""

    def __init__(self, status: int, error_code: str | None):
        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(handler):  # noqa: N805
                handler.send_response(status)
                if error_code:
                    handler.send_header("X-Error-Code", error_code)
                    handler.send_header("X-Error-Message", "Access to model is restricted.")
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            do_GET = do_HEAD = _refuse

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_dinov3_is_offered_by_fetch():
    assert "dinov3-vith16plus" in layout.EMBEDDER_MODELS
    hub_id = layout.EMBEDDER_MODELS["dinov3-vith16plus"]
    assert hub_id == "facebook/dinov3-vith16plus-pretrain-lvd1689m" and hub_id in fetch.HF_FILES


@pytest.mark.parametrize(("status", "code"), [(401, "GatedRepo"), (403, "GatedRepo"), (401, None), (403, None)])
def test_a_refused_gated_download_says_what_to_do_in_one_line(tmp_path, monkeypatch, capsys, status, code):
    import huggingface_hub.constants
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")  # all there but DINOv3
    hub = RefusingHub(status, code)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    capsys.readouterr()  # the fixture's own output
    try:
        status_code = exit_status(fetch.main, ["--checkpoints", str(checkpoints), "--embedder", "dinov3-vith16plus"])
    finally:
        hub.shutdown()
    err = capsys.readouterr().err.strip()
    assert status_code == 2 and err.count("\n") == 0, err
    assert err.startswith("error: facebook/dinov3-vith16plus-pretrain-lvd1689m is gated: accept its licence at "
                          "https://huggingface.co/facebook/dinov3-vith16plus-pretrain-lvd1689m")
    assert "hf auth login" in err and "HF_TOKEN" in err


def test_fetch_embedder_dinov3_downloads_it_into_its_folder(tmp_path, monkeypatch, capsys):
    """The hub itself is stood in for by writing the tiny model where snapshot_download would."""
    from retrieval.embedder import DinoEmbedder
    from tools.fixtures.tiny_models.dinov3 import write_tiny_dinov3
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    asked = []

    def hub(hub_id, folder):
        asked.append((hub_id, folder))
        if "dinov3" in hub_id:
            write_tiny_dinov3(folder)
        else:  # only which ids are asked matters here
            folder.mkdir(parents=True)
            (folder / "config.json").write_text("{}")
            (folder / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(fetch, "fetch_hub_model", hub)
    monkeypatch.setattr(fetch, "fetch_url", lambda *a: pytest.fail("downloaded again"))
    assert exit_status(fetch.main, ["--checkpoints", str(checkpoints), "--embedder", "dinov3-vith16plus"]) == 0
    folder = checkpoints / "dinov3-vith16plus-pretrain-lvd1689m"
    assert asked == [("facebook/dinov3-vith16plus-pretrain-lvd1689m", folder)]
    assert type(DinoEmbedder.from_pretrained(folder).model).__name__ == "DINOv3ViTModel"
    asked.clear()
    assert exit_status(fetch.main, ["--checkpoints", str(checkpoints), "--embedder", "all"]) == 0
    assert [hub_id for hub_id, _ in asked] == ["facebook/dinov2-small", "facebook/dinov2-large",
                                              "facebook/dinov2-giant"]  # all: DINOv2 sizes, nothing gated
