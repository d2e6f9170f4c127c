"""forecasts.interrupts: an interrupt held while worker processes start is raised where the
block ends, the first one only; outside a block it is raised at once."""

from __future__ import annotations

import threading

import pytest

from forecasts.interrupts import held_interrupts, interrupt


class First(KeyboardInterrupt):
    pass


class Second(KeyboardInterrupt):
    pass


def test_outside_a_block_an_interrupt_is_raised_at_once() -> None:
    with pytest.raises(First):
        interrupt(First())


def test_inside_a_block_it_is_raised_where_the_block_ends() -> None:
    reached: list[str] = []
    with pytest.raises(First):
        with held_interrupts():
            interrupt(First())
            reached.append("the rest of the block")
        reached.append("after the block")
    assert reached == ["the rest of the block"]
    with pytest.raises(Second):  # nothing left over from the last block
        interrupt(Second())


def test_nested_blocks_raise_the_interrupt_where_the_outermost_ends() -> None:
    reached: list[str] = []
    with pytest.raises(First), held_interrupts():
        with held_interrupts():
            interrupt(First())
        reached.append("the outer block's rest")
    assert reached == ["the outer block's rest"]


def test_a_second_interrupt_while_one_is_held_is_raised_at_once() -> None:
    """A second Ctrl-C ends a start that hangs; the first is raised where the block ends."""
    reached: list[str] = []
    with pytest.raises(First) as caught, held_interrupts():
        interrupt(First())
        try:
            interrupt(Second())
        except Second:
            reached.append("the second at once")
            raise
        reached.append("not reached")
    assert reached == ["the second at once"]
    assert isinstance(caught.value.__context__, Second)


def test_a_block_that_raises_its_own_error_still_raises_the_interrupt() -> None:
    with pytest.raises(First) as caught, held_interrupts():
        interrupt(First())
        raise ValueError("the block's own")
    assert isinstance(caught.value.__context__, ValueError)


def test_a_block_without_an_interrupt_raises_nothing() -> None:
    with held_interrupts():
        pass
    with pytest.raises(First):
        interrupt(First())


def test_a_block_in_another_thread_holds_nothing() -> None:
    """Signal handlers run in the main thread: another thread's block does not hold them."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with held_interrupts():
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert entered.wait(5)
        with pytest.raises(First):
            interrupt(First())
    finally:
        release.set()
        worker.join()
