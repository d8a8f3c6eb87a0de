"""gctune: no collection during a fan-out round, freezing after a burst of sockets, thawing
once they have gone (so closed sockets' cyclic garbage is still collected)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from sessions_app import gctune


@pytest.fixture(autouse=True)
def restore_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CHATGATE_GC_TUNE", "1")
    monkeypatch.setattr(gctune, "_frozen_sockets", 0)
    yield
    gc.unfreeze()
    gc.enable()


def test_no_collection_runs_during_a_round_and_collection_resumes_after() -> None:
    with gctune.paused():
        assert not gc.isenabled()
        with gctune.paused():  # a second loop flushing at the same time
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first round is still running
    assert gc.isenabled()


def test_a_failing_round_still_resumes_collection() -> None:
    with pytest.raises(RuntimeError), gctune.paused():
        raise RuntimeError("flush failed")
    assert gc.isenabled()


def test_a_burst_is_frozen_once_and_thawed_after_the_sockets_leave() -> None:
    gc.unfreeze()
    gctune.settle(10)  # not a burst
    assert gc.get_freeze_count() == 0
    burst = [object() for _ in range(1000)]  # stands for the new sockets' objects
    gctune.settle(gctune.BURST_SOCKETS + 10)
    assert gc.get_freeze_count() > 0
    del burst
    gctune.settle(gctune.BURST_SOCKETS + 5)  # a few left: stays frozen
    assert gctune._frozen_sockets == gctune.BURST_SOCKETS + 10
    # Half of them gone: thawed, collected once (here, between rounds), frozen again.
    closed = _Socket()
    closed.me = closed  # a cycle: only the collector frees it
    gone = weakref.ref(closed)
    gc.freeze()  # frozen with the burst, then its socket closed
    del closed
    gc.collect()
    assert gone() is not None  # frozen: no collection sees it
    gctune.settle(10)
    assert gone() is None
    assert gctune._frozen_sockets == 10
    assert gc.get_freeze_count() > 0


class _Socket:
    me: object


def test_turned_off_it_touches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATGATE_GC_TUNE", "0")
    gc.unfreeze()
    with gctune.paused():
        assert gc.isenabled()
    gctune.settle(10_000)
    assert gc.get_freeze_count() == 0
