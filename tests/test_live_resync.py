"""The live re-sync through a real adb server: a photo taken while the program runs arrives
without re-transfer, an unplugged phone is looked for and picked up again, and stopping never
waits."""
from __future__ import annotations

import os
import time

from device.background_sync import BackgroundSync
from tools.fixtures.fake_phone import FakePhone
from tools.fixtures.photos import camera_jpeg

CAMERA = "DCIM/Camera"


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_new_photos_arrive_and_a_replugged_phone_is_picked_up(adb, tmp_path):
    root = tmp_path / "sdcard"
    (root / CAMERA).mkdir(parents=True)
    (root / CAMERA / "IMG_1.jpg").write_bytes(camera_jpeg(800, 600, 1))
    phone = FakePhone(root).start()
    adb.connect(phone)
    sync = BackgroundSync(tmp_path / "gallery", adb_port=adb.port, interval=0.3)
    sync.start()
    try:
        assert sync.done.wait(20)
        assert sync.gallery_changed.is_set() and sync.status.endswith("1 new, 0 unchanged")
        sync.gallery_changed.clear()
        phone.exec_commands.clear()
        wait_for(lambda: sync.syncs >= 3)                 # quiet looks: nothing read again
        assert phone.exec_commands == [] and not sync.gallery_changed.is_set()

        (root / CAMERA / "IMG_2.jpg").write_bytes(camera_jpeg(800, 600, 2))
        os.utime(root / CAMERA / "IMG_2.jpg", (1_800_000_000, 1_800_000_000))
        assert sync.gallery_changed.wait(20)             # the index looks again
        assert [p.name for p in sync.report.pulled] == ["IMG_2.jpg"]
        assert len([c for c in phone.exec_commands if "read" in c]) == 1

        adb.disconnect(phone)
        wait_for(lambda: sync.status.startswith("phone: not connected, looking again"))
        adb.connect(phone)
        wait_for(lambda: "reconnected" in sync.status)
    finally:
        started = time.monotonic()
        sync.stop()
        assert time.monotonic() - started < 0.1
        adb.disconnect(phone)
        phone.stop()
    assert (tmp_path / "gallery" / phone.serialno / CAMERA / "IMG_2.jpg").is_file()
