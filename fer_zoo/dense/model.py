"""The dense (per-frame) temporal transformer: one output per frame token, one small head per ABAW task.

:class:`DenseTransformer` is :class:`~fer_zoo.training.model.TemporalTransformer` with its CLS classifier replaced by
per-frame heads: the same input standardisation, per-modality LayerNorm + projection, modality and time embeddings,
modality dropout, pre-LN encoder and masking contract (invalid inputs zeroed after standardisation, invalid tokens
masked as attention keys, the CLS token never masked, so a window without any valid frame still gives finite
outputs). A frame whose token is masked still gets an output (its query attends to the valid frames around it and
to CLS); the loss and metrics decide what to do with it (training masks its targets).

Plain PyTorch: nothing here knows about stores, windows or losses (:mod:`fer_zoo.dense.lit_module` does).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from datamodules.frame_labels import AU_NAMES
from fer_zoo.dense.metrics import EXPR_CLASSES
from fer_zoo.training.model import TemporalTransformer

#: Width of each task's head: EXPR logits over ABAW's 8 classes, valence and arousal, the 12 AU logits.
TASK_WIDTH: dict[str, int] = {"EXPR": len(EXPR_CLASSES), "VA": 2, "AU": len(AU_NAMES)}
DENSE_FUSIONS = ("early", "tokens")


class DenseTransformer(TemporalTransformer):
    """Per-frame predictions for windows of frames ``{name: [B, T, D_m]}`` with validity masks ``{name: [B, T]}``.

    ``forward`` returns ``{task: [B, T, K]}`` for every task of ``tasks``: ``"EXPR"`` logits ``K = 8`` (ABAW's
    classes in ``abaw_expr`` order), ``"VA"`` valence and arousal ``K = 2``, ``tanh`` so in ``[-1, 1]``, ``"AU"``
    logits ``K = 12`` (:data:`datamodules.frame_labels.AU_NAMES` order; sigmoid gives activation probabilities).
    Outputs are float32. ``T`` is at most ``max_frames`` (the training window).

    Fusion: ``early`` (one token per frame, the mean of its valid modalities' tokens; a frame's output is its token's)
    or ``tokens`` (one token per modality and frame; a frame's output is the mean of its valid modality tokens'
    outputs, of all of them where none is valid). ``late`` is not offered (streams that never meet have no per-frame
    joint output). There is no clip-statistics head (its statistics are per clip, not per frame).

    Raises ``ValueError`` for an unknown or empty task list, an unknown fusion, or inputs of the wrong shape (as
    :class:`TemporalTransformer`).
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        tasks: list[str] | tuple[str, ...] = ("EXPR",),
        d_model: int = 128,
        depth: int = 2,
        heads: int = 4,
        ff_mult: int = 4,
        dropout: float = 0.1,
        fusion: str = "early",
        modality_dropout: float = 0.0,
        max_frames: int = 32,
        input_norm: bool = True,
        input_dropout: float = 0.0,
    ) -> None:
        if fusion not in DENSE_FUSIONS:
            raise ValueError(f"dense fusion must be one of {list(DENSE_FUSIONS)}, got {fusion!r}")
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in TASK_WIDTH]
        if unknown or not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names among {list(TASK_WIDTH)}, got {tasks}")
        super().__init__(input_dims, TASK_WIDTH["EXPR"], d_model=d_model, depth=depth, heads=heads, ff_mult=ff_mult,
                         dropout=dropout, fusion=fusion, modality_dropout=modality_dropout, max_frames=max_frames,
                         input_norm=input_norm, input_dropout=input_dropout, stats_head=False)
        self.tasks = tasks
        # One linear head per task on the normalised frame outputs (replaces the clip classifier).
        self.head = nn.ModuleDict({t: nn.Linear(d_model, TASK_WIDTH[t]) for t in tasks})

    def forward(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        """``{task: float32 [B, T, K]}`` (see the class docstring)."""
        _, t = self._check_inputs(features, valid)
        names = [m for m in self.modalities if m in features]
        valid = self.drop_modalities({m: valid[m].bool() for m in names})
        tokens, token_valid = self._fused_tokens(features, valid, names, self.time_embed[:t])
        out = self.norm(self._run_encoder(tokens, token_valid, self.cls_token[None], self.encoder)[:, 1:])
        if self.fusion == "tokens":  # [B, M*T, d] modality-major -> mean over a frame's valid modality tokens
            b, m = out.shape[0], len(names)
            out = out.reshape(b, m, t, -1)
            w = token_valid.reshape(b, m, t).float()
            w = torch.where(w.sum(dim=1, keepdim=True) > 0, w, torch.ones_like(w))
            out = (out * w[..., None]).sum(dim=1) / w.sum(dim=1)[..., None]
        preds = {task: self.head[task](out).float() for task in self.tasks}
        if "VA" in preds:
            preds["VA"] = torch.tanh(preds["VA"])
        return preds
