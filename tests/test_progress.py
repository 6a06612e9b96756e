"""Progress lines: Keras's bar on a terminal, step lines with ETAs in a log file, and lines
while a file cache fills."""

import io

import tensorflow as tf

from tfft.callbacks.progress import StepLines, duration, fit_verbosity
from tfft.callbacks.stage import StageProgress
from tfft.data.pipeline import filled


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_a_terminal_gets_the_bar_and_a_log_file_the_epoch_lines():
    assert fit_verbosity(2, Terminal()) == 1 and fit_verbosity(1, io.StringIO()) == 2 and fit_verbosity(0) == 0
    assert [duration(s) for s in (4.4, 347, 7500)] == ["4s", "5m47s", "2h05m"]


def test_step_lines_come_every_thirty_seconds_with_the_pace_and_both_etas():
    lines = []
    progress = StageProgress(start=50, steps=400)
    steps = StepLines("stage 2/2 'finetune'", progress, run_done=lambda: 50, run_steps=450,
                      clock=Clock(step=2.0), write=lines.append)  # 2 s a step
    steps.on_train_begin()
    for batch in range(40):
        progress.on_train_batch_end(batch)
        steps.on_train_batch_end(batch, {"loss": 0.53125})
    # The first step (tracing) starts the clock; then a line every 15 steps of 2 s.
    assert lines == [
        "stage 2/2 'finetune' step 16/400 (run 66/450): 2 s/step, loss 0.5312; stage ETA 12m48s, run ETA 12m48s",
        "stage 2/2 'finetune' step 31/400 (run 81/450): 2 s/step, loss 0.5312; stage ETA 12m18s, run ETA 12m18s",
    ]


def test_filling_a_file_cache_says_how_far_it_is(tmp_path, capsys):
    examples = tf.data.Dataset.range(10)
    fill = filled(str(tmp_path / "cache"), examples, total=10, every=3.0, clock=Clock(step=1.0))
    fill()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"filling the training cache {tmp_path / 'cache'}: 3 examples of 10, ETA 7s"
    assert len(out) == 3
    assert filled(True, examples) is None  # a memory cache fills as it trains
