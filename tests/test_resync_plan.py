"""The live re-sync's decisions (device/background_sync.ResyncPlan), driven without threads."""
from __future__ import annotations

from pathlib import Path

from device.background_sync import ResyncPlan
from device.lean_sync import lean_names
from device.phone_sync import SyncReport


def report(pulled: int = 0, unchanged: int = 3) -> SyncReport:
    return SyncReport(serial="R5CW1", model="SM-S918B", folder=Path("g"),
                      pulled=[Path(f"p{i}.jpg") for i in range(pulled)], unchanged=unchanged)


def test_it_looks_again_every_interval_and_signals_only_new_photos():
    plan = ResyncPlan(interval=15)
    first = plan.synced(report(pulled=2))
    assert (first.status, first.signal, first.wait) == ("phone SM-S918B: 2 new, 3 unchanged",
                                                        True, 15)
    quiet = plan.synced(report())
    assert (quiet.signal, quiet.wait) == (False, 15)


def test_an_unplugged_phone_is_looked_for_and_its_return_said():
    plan = ResyncPlan(interval=2)
    plan.synced(report())
    gone = plan.failed()
    assert gone.status == "phone unplugged, looking"
    assert (gone.signal, gone.wait) == (False, 2)
    assert plan.failed().wait == 2              # keeps looking
    back = plan.synced(report(pulled=1))
    assert back.status == "phone SM-S918B: reconnected, 1 new" and back.signal


def test_no_phone_at_start_says_so_and_keeps_looking():
    step = ResyncPlan(interval=15).failed()
    assert step.status == "no phone yet, looking"        # why and what to do: in the log
    assert step.wait == 15


def test_a_listing_over_the_limits_is_not_repeated():
    step = ResyncPlan().stopped("stopped listing phone X: too many", copied=True)
    assert step.wait is None and step.signal


def test_kept_names_follow_the_phone_files_stems():
    folder = ("DCIM", "Camera")
    names = lean_names([(folder, "IMG_1.heic"), (folder, "IMG_1.JPG"), (folder, "IMG_2.HEIC"),
                        (folder, "a.jpeg"), (("Other",), "IMG_1.png")])
    assert names == {(folder, "IMG_1.heic"): "IMG_1.heic.jpg", (folder, "IMG_1.JPG"): "IMG_1.JPG",
                     (folder, "IMG_2.HEIC"): "IMG_2.jpg", (folder, "a.jpeg"): "a.jpeg",
                     (("Other",), "IMG_1.png"): "IMG_1.jpg"}
