"""`serve` explains granian's warning about many threads before granian prints it, and gives its
processes one metrics directory."""

from __future__ import annotations

from tollgate.ops.management.commands.serve import metrics_environment, threads_notice


def test_threads_granian_accepts_need_no_notice():
    assert threads_notice(threads=5, cpus=2) is None
    assert threads_notice(threads=17, cpus=8) is None


def test_more_threads_than_granian_suggests_are_explained_in_one_line():
    notice = threads_notice(threads=8, cpus=2)
    assert notice is not None
    assert "\n" not in notice
    assert "TOLLGATE_WEB_THREADS=8" in notice
    assert "2 CPU cores" in notice


def test_serve_shares_metrics_between_its_processes_in_a_fresh_directory(tmp_path):
    stale = tmp_path / "metrics" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"left by a process that is gone")
    environment = metrics_environment(configured="", data_dir=tmp_path)
    assert environment == {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    assert not stale.exists()


def test_serve_keeps_an_operators_metrics_directory_as_it_is(tmp_path):
    kept = tmp_path / "counter_1.db"
    kept.write_bytes(b"x")
    environment = metrics_environment(configured=str(tmp_path), data_dir=tmp_path / "var")
    assert environment == {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert kept.exists()
