"""The grid's progress: plain lines off a terminal (start, heartbeat, end), a labelled live
display on one."""

import io
from types import SimpleNamespace

from rich.console import Console

from cascbench.cli._progress import LiveProgress, PlainProgress, duration
from cascbench.experiment.config import RunConfig, TrainConfig
from cascbench.experiment.executors import RunOutcome
from cascbench.experiment.labels import run_label
from cascbench.experiment.plan import PlannedRun


def planned(method, run_id, batch_size=64):
    config = RunConfig(method=method, train=TrainConfig(batch_size=batch_size)).resolved()
    return PlannedRun(run_id, config, run_label(config))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_plain_progress_starts_beats_at_most_every_30_s_and_ends():
    out, clock = io.StringIO(), FakeClock()
    progress = PlainProgress(Console(file=out, width=300), clock=clock)
    lcron, bce = planned("lcron", "a" * 16), planned("bce", "b" * 16)
    progress.grid_started([lcron, bce], [lcron, bce])
    progress.run_started(lcron)
    clock.now += 5  # data and models ready: the first step
    progress.run_progress(lcron.run_id, 1, 1001)
    for second, step in ((10, 41), (29, 101)):  # under 30 s since the grid started
        clock.now = 1000 + second
        progress.run_progress(lcron.run_id, step, 1001)
    lines = out.getvalue().splitlines()
    assert lines == [
        "2 runs: 0 done already, 2 to run.",
        f"started lcron batch_size=64 seed 0 (run {'a' * 16})",
    ]
    clock.now = 1031  # 100 steps of 64 requests in the 26 s after the first one; 900 left
    progress.run_progress(lcron.run_id, 101, 1001)
    beat = out.getvalue().splitlines()[-1]
    assert beat == (
        "  lcron batch_size=64 seed 0: step 101/1,001, 246 requests/s, 3 min 54 s left "
        "(31 s since its start)"
    )
    progress.run_started(bce)
    for second in (40, 60):  # the next heartbeat is due at 1061
        clock.now = 1000 + second
        progress.run_progress(lcron.run_id, 200, 1001)
    assert out.getvalue().splitlines()[-1] == f"started bce batch_size=64 seed 0 (run {'b' * 16})"
    clock.now = 1061
    progress.run_progress(lcron.run_id, 300, 1001)
    tail = out.getvalue().splitlines()[-2:]
    assert tail[0].startswith("  lcron batch_size=64 seed 0: step 300/1,001, ")
    assert (
        tail[1]
        == "  bce batch_size=64 seed 0: preparing its data and models (30 s since its start)"
    )
    progress.run_finished(lcron, RunOutcome(lcron.run_id, SimpleNamespace(metrics={"joint_recall": 0.7431}), seconds=70.0))  # fmt: skip
    progress.run_finished(bce, RunOutcome(bce.run_id, error="Traceback\nValueError: boom"))
    assert out.getvalue().splitlines()[-2:] == [
        f"[1/2] done lcron batch_size=64 seed 0: joint_recall 0.7431 (70.0 s, run {'a' * 16})",
        f"[2/2] failed bce batch_size=64 seed 0 (run {'b' * 16}): ValueError: boom",
    ]
    clock.now = 2000  # finished runs beat no more
    progress.run_progress(lcron.run_id, 1001, 1001)
    assert len(out.getvalue().splitlines()) == 8


def test_durations_read_as_words():
    assert [duration(s) for s in (4.4, 59.6, 216, 3600 + 5 * 60 + 9)] == [
        "4 s", "1 min 00 s", "3 min 36 s", "1 h 05 min",
    ]  # fmt: skip


def test_the_live_display_labels_every_bar_with_its_unit():
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system=None)
    run = planned("lcron", "c" * 16)
    with LiveProgress(console) as live:
        live.grid_started([run], [run])
        live.run_started(run)
        live.progress.refresh()
        live.run_progress(run.run_id, 7, 42)
        live.progress.refresh()
        live.run_finished(run, RunOutcome(run.run_id, SimpleNamespace(metrics={}), seconds=1.0))
    text = out.getvalue()
    assert "grid" in text and "0/1 runs" in text
    assert "lcron batch_size=64 seed 0" in text and "preparing data and models" in text
    assert "7/42 steps" in text
    assert "/?" not in text


def test_lines_name_the_setting_and_dataset_only_when_the_grid_varies_them():
    from cascbench.cli._progress import run_names
    from cascbench.experiment.config import DatasetConfig

    def run(setting, world, run_id):
        config = RunConfig(
            method="bce", setting=setting, dataset=DatasetConfig(world=world)
        ).resolved()
        return PlannedRun(run_id, config, run_label(config))

    same = [run("recflow-2stage", "tiny", "1"), run("recflow-2stage", "tiny", "2")]
    assert run_names(same) == {"1": "bce seed 0", "2": "bce seed 0"}
    grid = [run("recflow-2stage", "tiny", "1"), run("recflow-3stage", "small", "2")]
    assert run_names(grid) == {
        "1": "bce seed 0 on recflow-2stage, synthetic:tiny",
        "2": "bce seed 0 on recflow-3stage, synthetic:small",
    }
    out = io.StringIO()
    progress = PlainProgress(Console(file=out, width=300), clock=FakeClock())
    progress.grid_started(grid, grid)
    progress.run_started(grid[1])
    assert out.getvalue().splitlines()[-1] == (
        "started bce seed 0 on recflow-3stage, synthetic:small (run 2)"
    )
