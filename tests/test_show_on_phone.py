"""Show on phone, against a real adb server and the stand-in phone's shell service.

What reaches the phone is checked as the phone's sh would run it: each recorded command line
goes through a real `sh` whose PATH holds only recording stand-ins for the phone's commands, and
must run exactly one command whose words are the ones shlex reads from the line.
"""
from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.phone_sync import sync_phone
from device.show_on_phone import PhoneOrigin, phone_origin, show_on_phone
from device.sync_state import SyncedPhoto, SyncState
from tools.fixtures.fake_phone import MEDIA_URI, AdbServer, FakePhone

CAMERA = "DCIM/Camera"
HOSTILE_NAMES = [
    "it's.jpg",
    "$(touch INJECTED).jpg",
    "`touch INJECTED`.jpg",
    "a;touch INJECTED;.jpg",
    "cats & dogs.jpg",
    "with  spaces .jpg",
    "café ☕ 写真.jpg",
    "x' ; touch INJECTED ; echo '.jpg",
    "'$(touch INJECTED)'\"`touch INJECTED`\".jpg",
    "50% off #1 ~ *?[a].jpg",
]
PHONE_COMMANDS = ("getprop", "input", "dumpsys", "content", "am")
VIEW = "android.intent.action.VIEW"


@pytest.fixture
def phone(adb: AdbServer, tmp_path: Path) -> Iterator[FakePhone]:
    root = tmp_path / "sdcard"
    (root / CAMERA).mkdir(parents=True)
    for index, name in enumerate(["IMG_0001.jpg", *HOSTILE_NAMES]):
        (root / CAMERA / name).write_bytes(b"photo %d" % index)
    fake = FakePhone(root).start()
    fake.media_knows_files = False     # these tests fill the media store by hand (or by scanning)
    adb.connect(fake)
    yield fake
    adb.disconnect(fake)
    fake.stop()


@pytest.fixture
def gallery(adb: AdbServer, phone: FakePhone, tmp_path: Path) -> Path:
    """The phone synced into a gallery; its shell log starts empty after it."""
    folder = tmp_path / "gallery"
    sync_phone(folder, adb_port=adb.port, timeout=5, show_progress=False, originals=True)
    phone.shell_commands.clear()
    return folder


def local(gallery: Path, phone: FakePhone, name: str) -> Path:
    return gallery / phone.serialno / CAMERA / name


def as_sh_runs_it(line: str, workdir: Path) -> list[list[str]]:
    """The commands a real sh runs for `line`, each as its argv, with only the phone's
    commands on PATH (as recording stand-ins). Fails on anything sh says on stderr."""
    bin_dir, log = workdir / "bin", workdir / "argv.log"
    if not bin_dir.exists():
        bin_dir.mkdir(parents=True)
        for command in PHONE_COMMANDS:
            stub = bin_dir / command
            stub.write_text('#!/bin/sh\nprintf \'%s\\037\' "${0##*/}" "$@" >> "$ARGV_LOG"\n'
                            'printf \'\\036\' >> "$ARGV_LOG"\n')
            stub.chmod(0o755)
    log.write_bytes(b"")
    done = subprocess.run(["/bin/sh", "-c", line], cwd=workdir, capture_output=True,
                          env={"PATH": str(bin_dir), "ARGV_LOG": str(log)}, timeout=10)
    assert done.stderr == b"", done.stderr.decode(errors="replace")
    records = log.read_bytes().decode().split("\x1e")[:-1]
    return [record.split("\x1f")[:-1] for record in records]


def phone_argvs(phone: FakePhone, workdir: Path) -> list[list[str]]:
    """Each recorded line as argv, checked to be one plain command as sh would run it."""
    argvs = []
    for line in phone.shell_commands:
        ran = as_sh_runs_it(line, workdir)
        assert ran == [shlex.split(line)], line
        argvs.append(ran[0])
    assert not (workdir / "INJECTED").exists()
    return argvs


def sql_where(device_path: str) -> str:
    storage = "/storage/emulated/0" + device_path[len("/sdcard"):]
    return "_data='" + storage.replace("'", "''") + "'"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_reaches_the_phone_as_one_plain_am_start(adb, phone, gallery, name,
                                                                 tmp_path):
    device_path = f"/sdcard/{CAMERA}/{name}"
    media_id = phone.add_media(device_path)
    phone.add_media(f"/sdcard/{CAMERA}/IMG_0001.jpg")

    result = show_on_phone(gallery, local(gallery, phone, name), adb_port=adb.port)

    assert (result.ok, result.reason) == (True, None), result.message
    assert "SM-S918B" in result.message and "\n" not in result.message
    argvs = phone_argvs(phone, tmp_path / "sh")
    assert argvs == [
        ["getprop", "ro.serialno"],
        ["input", "keyevent", "KEYCODE_WAKEUP"],
        ["dumpsys", "window", "policy"],
        ["content", "query", "--uri", MEDIA_URI, "--projection", "_id", "--where",
         sql_where(device_path)],
        ["am", "start", "-W", "-a", VIEW, "-d", f"{MEDIA_URI}/{media_id}", "-t", "image/jpeg"],
    ]
    assert phone.started == [(f"{MEDIA_URI}/{media_id}", "image/jpeg")]
    assert phone.awake


def test_origin_comes_from_the_sync_record(phone, gallery, tmp_path, monkeypatch):
    origin = phone_origin(gallery, local(gallery, phone, "it's.jpg"))
    assert origin == PhoneOrigin(serial=phone.serialno, device_path=f"/sdcard/{CAMERA}/it's.jpg")
    # A relative path names the same photo.
    monkeypatch.chdir(gallery)
    assert phone_origin(Path("."), Path(phone.serialno) / CAMERA / "it's.jpg") == origin
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"x")
    assert phone_origin(gallery, outside) is None
    assert phone_origin(tmp_path / "never-synced", tmp_path / "never-synced" / "a.jpg") is None
    assert not (tmp_path / "never-synced").exists()      # looking creates nothing


def test_a_record_with_a_path_no_phone_could_hold_is_not_an_origin(tmp_path):
    """The sync record lies in the gallery, which anyone may have written to."""
    gallery = tmp_path / "gallery"
    bad = {"newline.jpg": "/sdcard/DCIM/a\n; reboot.jpg", "relative.jpg": "DCIM/Camera/x.jpg",
           "long.jpg": "/sdcard/" + "x" * 2000 + ".jpg", "escape.jpg": "/sdcard/\x1b[2J.jpg"}
    with SyncState(gallery) as state:
        for local_name, device_path in bad.items():
            state.record("R5CW30ABCDE", SyncedPhoto(device_path, 1, 1, local_name))
        state.record("R5CW30ABCDE", SyncedPhoto("/sdcard/DCIM/fine.jpg", 1, 1, "fine.jpg"))
    for local_name in bad:
        assert phone_origin(gallery, gallery / local_name) is None, local_name
    assert phone_origin(gallery, gallery / "fine.jpg") == PhoneOrigin("R5CW30ABCDE",
                                                                      "/sdcard/DCIM/fine.jpg")


def test_a_photo_not_from_a_phone_says_so_and_asks_nothing(adb, phone, gallery):
    mine = gallery / "scanned.jpg"
    mine.write_bytes(b"from a scanner")
    result = show_on_phone(gallery, mine, adb_port=adb.port)
    assert (result.ok, result.reason) == (False, "not-from-phone")
    assert "scanned.jpg" in result.message
    assert phone.shell_commands == [] and phone.started == []


def test_a_file_the_media_store_lacks_is_scanned_then_shown_by_its_id(adb, phone, gallery,
                                                                      tmp_path):
    name = "café ☕ 写真.jpg"
    result = show_on_phone(gallery, local(gallery, phone, name), adb_port=adb.port)
    assert result.ok, result.message
    argvs = phone_argvs(phone, tmp_path / "sh")
    queries = [argv for argv in argvs if argv[:2] == ["content", "query"]]
    broadcasts = [argv for argv in argvs if argv[:2] == ["am", "broadcast"]]
    starts = [argv for argv in argvs if argv[:2] == ["am", "start"]]
    assert len(queries) == 2 and len(starts) == 1
    assert broadcasts == [["am", "broadcast", "-a", "android.intent.action.MEDIA_SCANNER_SCAN_FILE",
                           "-d", "file:///storage/emulated/0/DCIM/Camera/"
                                 "caf%C3%A9%20%E2%98%95%20%E5%86%99%E7%9C%9F.jpg"]]
    assert [argv[:2] for argv in argvs[3:]] == [["content", "query"], ["am", "broadcast"],
                                                ["content", "query"], ["am", "start"]]
    media_id = phone.media[f"/storage/emulated/0/{CAMERA}/{name}"]
    assert phone.started == [(f"{MEDIA_URI}/{media_id}", "image/jpeg")]


def test_without_a_media_store_entry_it_falls_back_to_the_encoded_file_uri(adb, phone, gallery,
                                                                           tmp_path):
    phone.media_scanner = False          # the broadcast is answered, the file never indexed
    name = "$(touch INJECTED).jpg"
    result = show_on_phone(gallery, local(gallery, phone, name), adb_port=adb.port)
    assert result.ok, result.message
    argvs = phone_argvs(phone, tmp_path / "sh")
    assert [argv[:2] for argv in argvs].count(["am", "start"]) == 1
    uri = "file:///storage/emulated/0/DCIM/Camera/%24%28touch%20INJECTED%29.jpg"
    assert argvs[-1] == ["am", "start", "-W", "-a", VIEW, "-d", uri, "-t", "image/jpeg"]
    assert phone.started == [(uri, "image/jpeg")]


def test_a_photo_deleted_on_the_phone_is_not_found(adb, phone, gallery):
    (phone.root / CAMERA / "it's.jpg").unlink()
    result = show_on_phone(gallery, local(gallery, phone, "it's.jpg"), adb_port=adb.port)
    assert (result.ok, result.reason) == (False, "not-found")
    assert "it's.jpg" in result.message
    assert phone.started == []


def test_a_locked_phone_is_reported_and_the_photo_waits_behind_the_lock(adb, phone, gallery):
    phone.locked = True
    phone.add_media(f"/sdcard/{CAMERA}/IMG_0001.jpg")
    result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"), adb_port=adb.port)
    assert (result.ok, result.reason) == (False, "locked")
    assert "unlock" in result.message and "IMG_0001.jpg" in result.message
    assert len(phone.started) == 1            # shown as soon as it is unlocked
    (start,) = [shlex.split(line) for line in phone.shell_commands if " 'start' " in line]
    assert "-W" not in start                  # not waiting for a viewer hidden by the lock


def test_a_refused_intent_is_one_line(adb, phone, gallery):
    phone.refuse_intents = True
    phone.add_media(f"/sdcard/{CAMERA}/IMG_0001.jpg")
    result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"), adb_port=adb.port)
    assert (result.ok, result.reason) == (False, "refused")
    assert "unable to resolve Intent" in result.message and "\n" not in result.message


def test_no_phone_connected(adb, phone, gallery):
    adb.disconnect(phone)
    result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"), adb_port=adb.port)
    assert (result.ok, result.reason) == (False, "no-phone")
    assert phone.serialno in result.message
    assert phone.started == []


def test_no_adb_server_is_no_phone_not_an_exception(phone, gallery, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))           # no adb to start a server with
    from tools.fixtures.fake_phone import free_port
    result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"), adb_port=free_port())
    assert (result.ok, result.reason) == (False, "no-phone")
    assert "adb" in result.message


def test_an_offline_phone_is_reported(adb, phone, gallery, tmp_path):
    adb.disconnect(phone)
    silent = FakePhone(tmp_path, offline=True).start()
    connecting = adb.connect_in_background(silent)
    try:
        adb.wait_for_state(silent.serial, "offline")
        result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"),
                               adb_port=adb.port)
        assert (result.ok, result.reason) == (False, "no-phone")
        assert "offline" in result.message
    finally:
        connecting.kill()
        connecting.wait()
        adb.disconnect(silent)
        silent.stop()


def test_an_unauthorised_phone_is_reported(adb, phone, gallery, tmp_path):
    adb.disconnect(phone)
    stranger = FakePhone(tmp_path, unauthorized=True).start()
    try:
        adb.connect(stranger, state="unauthorized")
        result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"),
                               adb_port=adb.port)
        assert (result.ok, result.reason) == (False, "unauthorized")
        assert "Allow USB debugging" in result.message
    finally:
        adb.disconnect(stranger)
        stranger.stop()


def test_the_phone_the_photo_came_from_is_picked_among_several(adb, phone, gallery, tmp_path):
    other = FakePhone(phone.root, serialno="RFCX99OTHER", model="SM-A546B").start()
    try:
        adb.connect(other)
        phone.add_media(f"/sdcard/{CAMERA}/IMG_0001.jpg")
        other.add_media(f"/sdcard/{CAMERA}/IMG_0001.jpg")
        result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"),
                               adb_port=adb.port)
        assert result.ok, result.message
        assert len(phone.started) == 1 and other.started == []
        # Restricted to the other phone, it is not the one the photo came from.
        result = show_on_phone(gallery, local(gallery, phone, "IMG_0001.jpg"),
                               adb_port=adb.port, serial=other.serial)
        assert (result.ok, result.reason) == (False, "no-phone")
        assert other.started == []
    finally:
        adb.disconnect(other)
        other.stop()


def test_the_stand_in_shell_answers_adbs_own_client_over_shell_v2(adb, phone):
    """adb 29's `adb shell` sends shell,v2,raw: to a phone offering shell_v2: framed output
    and the exit status come back as from a real phone."""
    answer = adb.run("-s", phone.serial, "shell", "getprop", "ro.serialno")
    assert (answer.returncode, answer.stdout) == (0, f"{phone.serialno}\n")
    missing = adb.run("-s", phone.serial, "shell", "no-such-command")
    assert missing.returncode == 127 and "inaccessible or not found" in missing.stdout
    assert phone.shell_commands[-2:] == ["getprop ro.serialno", "no-such-command"]
