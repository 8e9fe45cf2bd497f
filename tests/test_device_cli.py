"""`python -m device list|sync` as a user runs it: output, one-line errors, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.fixtures.fake_phone import AdbServer, FakePhone, free_port, require_adb
from tools.fixtures.photos import camera_jpeg

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def phone(adb: AdbServer, tmp_path: Path) -> Iterator[FakePhone]:
    photo = tmp_path / "sdcard" / "DCIM" / "Camera" / "IMG_0001.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(camera_jpeg(640, 480))          # lean by default: a real photo
    (photo.parent / "VID_0001.mp4").write_bytes(b"video")
    fake = FakePhone(tmp_path / "sdcard").start()
    adb.connect(fake)
    yield fake
    adb.disconnect(fake)
    fake.stop()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_list_shows_serial_state_and_model(adb, phone):
    result = run_cli("--adb-port", str(adb.port), "list")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header.split() == ["SERIAL", "STATE", "MODEL", "PRODUCT"]
    assert row.split() == [phone.serial, "device", "SM_S918B", "dm3qxxx"]

    listed = json.loads(run_cli("--adb-port", str(adb.port), "list", "--json").stdout)
    assert listed == [{"serial": phone.serial, "state": "device", "model": "SM_S918B",
                       "product": "dm3qxxx", "device": "dm3q", "usb": ""}]


def test_sync_prints_a_summary_and_json(adb, phone, tmp_path):
    dest = tmp_path / "gallery"
    result = run_cli("--adb-port", str(adb.port), "sync", "--dest", str(dest))
    assert result.returncode == 0, result.stderr
    assert f"SM_S918B {phone.serialno} over {phone.serial}: 1 pulled" in result.stdout
    assert "skipped 1: not a photo (.mp4)" in result.stdout

    again = run_cli("--adb-port", str(adb.port), "sync", "--dest", str(dest), "--json")
    report = json.loads(again.stdout)
    assert (report["pulled"], report["unchanged"]) == ([], 1)
    assert report["skipped"] == [{"name": "/sdcard/DCIM/Camera/VID_0001.mp4",
                                  "reason": "not a photo (.mp4)"}]


def test_errors_are_one_line(adb, tmp_path):
    assert_one_line_error(run_cli("--adb-port", str(adb.port), "sync", "--dest", str(tmp_path)),
                          "no phone found")
    assert_one_line_error(run_cli("--adb-port", str(adb.port), "sync", "--dest", str(tmp_path),
                                  "--folders", "../../etc"), "not a folder under /sdcard")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_one_line_error(run_cli("--adb-port", str(adb.port), "sync", "--dest", str(blocker)),
                          "is not a folder")

    unauthorized = FakePhone(tmp_path, unauthorized=True).start()
    try:
        adb.connect(unauthorized, state="unauthorized")
        assert_one_line_error(run_cli("--adb-port", str(adb.port), "sync", "--dest",
                                      str(tmp_path / "g")), "unlock it", "Allow USB debugging")
        listed = run_cli("--adb-port", str(adb.port), "list")
        assert unauthorized.serial in listed.stdout and "unauthorized" in listed.stdout
    finally:
        adb.disconnect(unauthorized)
        unauthorized.stop()


def test_starts_the_adb_server_when_none_runs(tmp_path):
    adb = AdbServer(tmp_path)          # a port no server listens on yet
    env = {**adb.env, "PATH": f"{Path(adb.adb).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        result = run_cli("--adb-port", str(adb.port), "list", env=env)
        assert result.returncode == 0, result.stderr
        assert "no phone connected" in result.stdout
        assert adb.run("devices").returncode == 0 and adb.states() == {}
    finally:
        adb.stop()


def test_without_adb_says_how_to_install_it(tmp_path):
    require_adb()
    python_only = tmp_path / "bin"
    python_only.mkdir()
    env = {**os.environ, "PATH": str(python_only), "HOME": str(tmp_path)}
    result = run_cli("--adb-port", str(free_port()), "sync", "--dest", str(tmp_path / "g"),
                     env=env)
    assert_one_line_error(result, "no `adb` program", "apt-get install adb")


def test_a_listing_limit_hit_is_one_line_and_exit_2(adb, phone, tmp_path):
    phone.endless_folders.add("/sdcard/DCIM/Camera")       # a listing without end
    result = run_cli("--adb-port", str(adb.port), "sync", "--dest", str(tmp_path / "g"))
    assert result.returncode == 2
    assert_one_line_error(result, "more than 100000 entries in /sdcard/DCIM/Camera "
                          "(the limit per folder)", "nothing deleted")


def test_a_dripping_phone_ends_at_the_timeout_with_one_line_and_exit_2(adb, phone, tmp_path):
    phone.drip = (0, 0.4)               # one byte every 0.4 s: each read waits less than 1 s
    result = run_cli("--adb-port", str(adb.port), "sync", "--dest", str(tmp_path / "g"),
                     "--timeout", "1", "--json", "--originals")     # the drip slows RECV
    assert result.returncode == 2
    assert_one_line_error(result, "slower than 16 KB/s", "sync again")
    assert not [p for p in (tmp_path / "g").rglob("*.jp*g")]
