"""`serve` explains granian's warning about many threads before granian prints it."""

from __future__ import annotations

from tollgate.ops.management.commands.serve import threads_notice


def test_threads_granian_accepts_need_no_notice():
    assert threads_notice(threads=5, cpus=2) is None
    assert threads_notice(threads=17, cpus=8) is None


def test_more_threads_than_granian_suggests_are_explained_in_one_line():
    notice = threads_notice(threads=8, cpus=2)
    assert notice is not None
    assert "\n" not in notice
    assert "TOLLGATE_WEB_THREADS=8" in notice
    assert "2 CPU cores" in notice
