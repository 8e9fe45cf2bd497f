"""--device names a device that is not there: a device error of its own, one line, exit 2."""
from __future__ import annotations

import pytest

from sketch_search.common.command import USER_ERROR, exit_status
from sketch_search.common.errors import DeviceError, MissingCheckpointError


def absent_devices() -> list[str]:
    """The accelerators this machine lacks: no machine has both CUDA and Apple's MPS."""
    import torch

    from sketch_search.app.precision import _mps_available
    return [name for name, present in (("cuda", torch.cuda.is_available()), ("mps", _mps_available()))
            if not present]


def test_a_missing_device_is_a_device_error_not_a_missing_model(one_torch_thread):
    from sketch_search.app.precision import pick_device
    absent = absent_devices()
    assert absent, "a machine with both CUDA and MPS"
    for name in absent:
        with pytest.raises(DeviceError) as caught:
            pick_device(name)
        assert not isinstance(caught.value, MissingCheckpointError)
        assert str(caught.value).startswith(f"--device {name}: ")


def test_a_missing_device_ends_in_one_line_and_exit_2(one_torch_thread, capsys):
    from sketch_search.app.precision import placement
    name = absent_devices()[0]
    assert exit_status(placement, name) == USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --device {name}: "), lines
