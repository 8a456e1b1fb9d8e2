"""Lightning's loops as plain progress lines when standard error is not a terminal (a pipe, ``nohup``, a log file).

Lightning's bars (tqdm, rich) redraw with carriage returns: piped to a file they arrive as one unreadable line, or
only at the end. :class:`LineProgressBar` is a Lightning progress-bar callback that writes instead, every
``$FER_ZOO_PROGRESS_INTERVAL`` seconds (default 10; :mod:`fer_zoo.progress`), one line per running loop::

    fit epoch 3/40: 90/160 batches (56%), 12.5 batches/s, 0:00:07 elapsed, ETA 0:00:05, train/loss 0.522, val/uar 0.250
    extract resnet: 40/167 clips (24%), 2.1 clips/s, 0:00:19 elapsed, ETA 0:01:00

``fit``: batches of the whole fit (every epoch's training batches; validation time counts in the rate and ETA), the
epoch in the label, the progress-bar metrics at the end (Lightning's ``ProgressBar.get_metrics``, ``v_num`` left
out). ``test``, stand-alone ``validate`` and ``predict``: batches (or clips) of that loop. The sanity check and the
validation inside a fit write nothing of their own. On a terminal the callers keep a Lightning bar
(:func:`wants_line_progress` tells them which).
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from lightning.pytorch.callbacks.progress import ProgressBar
from lightning.pytorch.trainer.states import TrainerFn

from fer_zoo.progress import Progress, is_terminal, progress_interval


def wants_line_progress(enable_progress_bar: bool | None, callbacks: list[Any]) -> bool:
    """Whether a Trainer should get a :class:`LineProgressBar`: progress enabled (``None`` is Lightning's default,
    on), no progress-bar callback given already, and standard error is not a terminal."""
    return enable_progress_bar is not False and not any(isinstance(c, ProgressBar) for c in callbacks) \
        and not is_terminal(sys.stderr)


def _count(total: Any) -> int | None:
    """A Lightning batch count (int, list of ints per dataloader, or inf) as a finite total, or None."""
    if isinstance(total, list | tuple):
        total = sum(total)
    if total is None or (isinstance(total, float) and math.isinf(total)):
        return None
    return int(total)


class _MetricsProgress(Progress):
    """A :class:`~fer_zoo.progress.Progress` whose postfix (the metrics) is read only when a line is written: reading
    Lightning's metrics moves tensors to the CPU, not worth doing on every batch."""

    def __init__(self, *args: Any, metrics: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    def _line(self, now: float, final: bool = False) -> None:
        if self.metrics is not None:
            self.postfix = self.metrics()
        super()._line(now, final)


class LineProgressBar(ProgressBar):
    """Plain progress lines for Lightning's fit, validate, test and predict loops (see the module docstring).

    ``fit_label``/``predict_label``: the line's label; ``predict_unit``: what one predict step is ("clip" for the
    extraction run, one clip per step). ``every_s``: seconds between lines (default: ``$FER_ZOO_PROGRESS_INTERVAL``
    or 10; a bad value raises ``ValueError`` here, before any work). ``stream``: default standard error, looked up
    when a loop starts (extraction may point it elsewhere meanwhile).
    """

    def __init__(self, fit_label: str = "fit", predict_label: str = "predict", predict_unit: str = "batch",
                 every_s: float | None = None, stream: TextIO | None = None) -> None:
        super().__init__()
        self.fit_label, self.predict_label, self.predict_unit = fit_label, predict_label, predict_unit
        self.every_s = progress_interval() if every_s is None else every_s
        self.stream = stream
        self._enabled = True
        self._progress: Progress | None = None

    # -- ProgressBar's interface ----------------------------------------------------------------------------------

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    # -- one Progress per running loop -----------------------------------------------------------------------------

    def _start(self, desc: str, total: int | None, unit: str, initial: int = 0, metrics: Any = None) -> None:
        self._drop()
        if self._enabled:
            self._progress = _MetricsProgress(desc, total, unit, stream=self.stream or sys.stderr,
                                              every_s=self.every_s, tty=False, initial=initial, metrics=metrics)

    def _update(self) -> None:
        if self._progress is not None:
            self._progress.update(1)

    def _finish(self) -> None:
        if self._progress is not None:
            self._progress.close()
        self._progress = None

    def _drop(self) -> None:
        """Forget the running loop without a closing line (it did not finish)."""
        self._progress = None

    def _metrics_text(self, trainer: Any, pl_module: Any) -> str:
        items = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in items.items())

    # -- fit --------------------------------------------------------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        per_epoch = _count(trainer.num_training_batches)
        total = None
        if per_epoch and trainer.max_epochs is not None and trainer.max_epochs > 0:
            total = per_epoch * trainer.max_epochs
        if per_epoch and trainer.max_steps is not None and trainer.max_steps > 0:  # steps are optimizer steps
            by_steps = trainer.max_steps * max(1, int(trainer.accumulate_grad_batches))
            total = min(total, by_steps) if total else by_steps
        initial = trainer.current_epoch * (per_epoch or 0)  # a resumed fit: epochs done before count as done
        self._start(self.fit_label, total, "batch", initial=initial,
                    metrics=lambda: self._metrics_text(trainer, pl_module))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._progress is not None:
            of = f"/{trainer.max_epochs}" if trainer.max_epochs is not None and trainer.max_epochs > 0 else ""
            self._progress.desc = f"{self.fit_label} epoch {trainer.current_epoch + 1}{of}"

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._update()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish()

    # -- validate (stand-alone; inside a fit its time is in the fit's line) ----------------------------------------

    def _standalone_validation(self, trainer: Any) -> bool:
        return trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if self._standalone_validation(trainer):
            self._start("validate", _count(trainer.num_val_batches), "batch")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if self._standalone_validation(trainer):
            self._update()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self._standalone_validation(trainer):
            self._finish()

    # -- test, predict ----------------------------------------------------------------------------------------------

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("test", _count(trainer.num_test_batches), "batch")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._update()

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._start(self.predict_label, _count(trainer.num_predict_batches), self.predict_unit)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        self._update()

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._drop()
