"""`python -m device show|connect|pair` as a user runs them, against a real adb server (Debian's
adb 29) and the stand-in phone."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from device.phone_sync import sync_phone
from tools.fixtures.fake_phone import MEDIA_URI, AdbServer, FakePhone, free_port

ROOT = Path(__file__).resolve().parents[1]


def run_cli(adb: AdbServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device", "--adb-port", str(adb.port), *args],
                          cwd=ROOT, text=True, capture_output=True, timeout=90,
                          stdin=subprocess.DEVNULL, env=adb.env)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_connect_joins_the_stand_in_phone_over_its_address(adb, tmp_path):
    phone = FakePhone(tmp_path).start()
    try:
        result = run_cli(adb, "connect", f"127.0.0.1:{phone.port}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"connected to 127.0.0.1:{phone.port}"
        adb.wait_for_state(phone.serial, "device")
        again = run_cli(adb, "connect", f"127.0.0.1:{phone.port}")
        assert again.returncode == 0 and "already connected" in again.stdout
    finally:
        adb.disconnect(phone)
        phone.stop()


def test_connect_to_nothing_is_one_line(adb):
    one_line_error(run_cli(adb, "connect", f"127.0.0.1:{free_port()}"), "could not connect",
                   "Wireless debugging")


def test_bad_addresses_and_codes_are_one_line(adb):
    for bad in ("192.168.1.20", "192.168.1.20:99999", "a b:5555", ":5555", "host:port",
                "127.0.0.1:5555;reboot"):
        one_line_error(run_cli(adb, "connect", bad), "is not HOST:PORT")
    one_line_error(run_cli(adb, "pair", "192.168.1.20:41234", "12345"), "not a pairing code")
    one_line_error(run_cli(adb, "pair", "192.168.1.20", "123456"), "is not HOST:PORT")


def test_pair_with_adb_29_says_which_adb_to_install(adb):
    version = adb.run("version").stdout
    assert "1.0.41" in version and "29." in version        # Debian's adb: no pairing service
    line = one_line_error(run_cli(adb, "pair", f"127.0.0.1:{free_port()}", "123456"),
                          "cannot pair", "adb 30", "platform-tools")
    assert "Debian's adb is 29" in line


def test_show_opens_the_photo_and_explains_a_refusal(adb, tmp_path):
    camera = tmp_path / "sdcard" / "DCIM" / "Camera"
    camera.mkdir(parents=True)
    (camera / "it's me.jpg").write_bytes(b"photo")
    phone = FakePhone(tmp_path / "sdcard").start()
    try:
        adb.connect(phone)
        gallery = tmp_path / "gallery"
        sync_phone(gallery, adb_port=adb.port, timeout=5, show_progress=False, originals=True)
        media_id = phone.add_media("/sdcard/DCIM/Camera/it's me.jpg")
        photo = gallery / phone.serialno / "DCIM" / "Camera" / "it's me.jpg"

        shown = run_cli(adb, "show", str(photo), "--gallery", str(gallery))
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == "showing it's me.jpg on SM-S918B"
        assert phone.started == [(f"{MEDIA_URI}/{media_id}", "image/jpeg")]

        mine = gallery / "mine.jpg"
        mine.write_bytes(b"not from the phone")
        one_line_error(run_cli(adb, "show", str(mine), "--gallery", str(gallery)),
                       "mine.jpg did not come from a phone sync", "(not-from-phone)")
        one_line_error(run_cli(adb, "show", str(gallery / "nope.jpg"), "--gallery",
                               str(gallery)), "is not a file")
        one_line_error(run_cli(adb, "show", str(photo), "--gallery", str(tmp_path / "none")),
                       "--gallery", "is not a folder")
    finally:
        adb.disconnect(phone)
        phone.stop()


def test_a_sync_gallery_error_names_the_flag(adb, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    one_line_error(run_cli(adb, "sync", "--dest", str(blocker)), "--dest:", "not a folder")
