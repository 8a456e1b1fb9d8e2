"""Per-frame answers from window outputs: the one mechanism behind predict-video's per-frame rows and the dense
(ABAW) task's per-frame evaluation (windows: ``datamodules.windows``; averaging: :mod:`.average`; rows, seconds
and tidy tables: :mod:`.outputs`)."""
