"""Cancelling work in the middle: a `cancelled()` callable passed down, checked between model blocks.

The air canvas starts a search ahead of the save gesture and drops it when the drawing changes;
`Cancelled` is how the models' code says "stopped early, on request". Torch-free: the modules
only need `register_forward_pre_hook` (torch.nn.Module has it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

CancelCheck = Callable[[], bool]


class Cancelled(Exception):
    """The work was cancelled on request (not an error: nothing is reported to the user)."""


def check(cancelled: CancelCheck | None) -> None:
    """Raise Cancelled when `cancelled` says so."""
    if cancelled is not None and cancelled():
        raise Cancelled()


@contextmanager
def checked_modules(modules: Iterable, cancelled: CancelCheck | None):
    """While inside, each of `modules` checks `cancelled` before it runs (a forward pre-hook)."""
    if cancelled is None:
        yield
        return

    def hook(module, inputs):
        check(cancelled)

    handles = [module.register_forward_pre_hook(hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
