"""The temporal transformer that classifies cached per-frame feature sequences.

Plain PyTorch on purpose: the Lightning wrapper, export and tests all use the same module, and nothing here knows
about datasets, stores or loggers.

Input standardisation: each modality's columns are standardised with the training split's per-column mean and std
(``(x - mean) / std``), kept as buffers (``input_stats.<modality>.mean|std``) so that a checkpoint carries the very
transform it was trained with; :meth:`TemporalTransformer.set_input_stats` fills them (identity until then).

Clip-statistics head (``stats_head=True``, see :class:`ClipStatsHead`): a linear classifier on the per-clip mean and
std of every modality's valid frames whose logits are added to the transformer's; ``FERLitModule`` initialises it
from the linear probe fitted on the training split (LP-FT), so training starts from the probe's predictions.

Masking contract: a frame that is padding or where an extractor found nothing (``valid=False``) must not influence
the logits. Two things make that hold: invalid inputs are replaced by zeros *after* standardisation and *before*
the LayerNorm (so huge, inf or NaN garbage cannot leak through ``0 * inf = nan`` in attention), and invalid tokens
are masked as attention keys.
The CLS token is never masked, so every query has at least one key and a clip without any valid frame still gives
finite logits (those of "no evidence").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FUSIONS = ("early", "tokens", "late")


class Standardize(nn.Module):
    """``(x - mean) / std`` per column; ``mean``/``std`` float32 ``[D]`` are persistent buffers (identity at init)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set(self, mean: Tensor, std: Tensor) -> None:
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"stats of shape {tuple(mean.shape)}/{tuple(std.shape)} for {self.mean.shape[0]} columns")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("standardisation stats must be finite with std > 0")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ClipStatsHead(nn.Module):
    """A linear classifier on clip statistics: per modality, the mean and the std (ddof 0) of each column over the
    clip's valid frames, concatenated in ``modalities`` order (``[B, sum_m 2 * D_m]``), standardised with the
    training split's clip-level stats (buffers ``norm.<modality>.mean|std``), then ``Linear(.., num_classes)``.

    It is the linear probe's model (:mod:`fer_zoo.training.probe`) inside the network, so the temporal model can
    start from the probe's solution and learn what the clip statistics miss (LP-FT: linear probe, then fine-tune;
    Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022).
    A modality without a valid frame in a clip (or dropped by modality dropout) contributes zeros, i.e. the
    training mean, as the probe's NaN fill does. Its output does not depend on the number of frames of a still
    video: the mean of copies is the frame, their std is 0, as for a photo.
    """

    def __init__(self, input_dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = list(input_dims)
        self.norm = nn.ModuleDict({m: Standardize(2 * d) for m, d in input_dims.items()})
        self.linear = nn.Linear(sum(2 * d for d in input_dims.values()), num_classes)

    def statistics(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        """Standardised clip statistics ``float32 [B, sum_m 2 * D_m]`` (zeros for an absent modality)."""
        blocks = []
        b = next(iter(valid.values())).shape[0]
        for m in self.modalities:
            width = self.norm[m].mean.shape[0]
            if m not in features:
                blocks.append(torch.zeros(b, width, device=self.linear.weight.device))
                continue
            v = valid[m]
            x = torch.where(v[..., None], features[m].float(), torch.zeros((), device=v.device))
            n = v.sum(dim=1, keepdim=True).clamp(min=1).float()
            mean = x.sum(dim=1) / n
            var = (torch.where(v[..., None], x - mean[:, None], torch.zeros((), device=v.device)) ** 2).sum(dim=1) / n
            z = self.norm[m](torch.cat([mean, var.clamp(min=0).sqrt()], dim=1))
            blocks.append(torch.where(v.any(dim=1, keepdim=True), z, torch.zeros((), device=v.device)))
        return torch.cat(blocks, dim=1)

    def forward(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        return self.linear(self.statistics(features, valid))

    def load_probe(self, fill: Tensor, keep: Tensor, mean: Tensor, scale: Tensor, coef: Tensor,
                   intercept: Tensor, weights: bool = True) -> None:
        """Take over a fitted probe (:class:`fer_zoo.training.probe.FittedProbe` arrays, columns in ``modalities``
        order): kept columns get the probe's scaler and weights; dropped ones (constant on the training split) the
        training value as mean, std 1 and weight 0. ``weights=False``: the scaler only, the linear layer keeps its
        own weights. Raises ``ValueError`` on a width mismatch."""
        width = self.linear.in_features
        classes = self.linear.out_features
        if fill.shape != (width,) or keep.shape != (width,) or coef.shape != (classes, int(keep.sum())):
            raise ValueError(f"probe of width {tuple(fill.shape)} / coef {tuple(coef.shape)} does not fit a head "
                             f"of {width} columns and {self.linear.out_features} classes")
        full_mean, full_std = fill.clone().float(), torch.ones(width)
        full_mean[keep], full_std[keep] = mean.float(), scale.float()
        weight = torch.zeros(self.linear.out_features, width)
        weight[:, keep] = coef.float()
        start = 0
        for m in self.modalities:
            stop = start + self.norm[m].mean.shape[0]
            self.norm[m].set(full_mean[start:stop], full_std[start:stop])
            start = stop
        if not weights:
            return
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(intercept.float())


def _encoder(d_model: int, depth: int, heads: int, ff_mult: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-LN encoder: trains stably without a long warmup, which matters for small cached-feature runs."""
    layer = nn.TransformerEncoderLayer(
        d_model,
        heads,
        dim_feedforward=ff_mult * d_model,
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # Nested tensors are unsupported with norm_first; disabling them explicitly avoids a warning per construction.
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class TemporalTransformer(nn.Module):
    """Classify a clip from per-modality frame features ``{name: [B, T, D_m]}`` and validity masks ``{name: [B, T]}``.

    Fusion modes trade cost for flexibility: ``early`` averages the valid modalities of a frame into one token
    (cheapest, T tokens); ``tokens`` keeps one token per modality and frame so attention can weigh streams per frame
    (M*T tokens); ``late`` runs one encoder per modality and averages their CLS outputs (streams never interact, the
    usual baseline in ablations). Modalities listed in ``input_dims`` but absent from a call are treated as missing.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        num_classes: int,
        d_model: int = 128,
        depth: int = 2,
        heads: int = 4,
        ff_mult: int = 4,
        dropout: float = 0.1,
        fusion: str = "early",
        modality_dropout: float = 0.0,
        max_frames: int = 64,
        input_norm: bool = True,
        input_dropout: float = 0.0,
        stats_head: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self._check_args(input_dims, num_classes, d_model, heads, fusion, modality_dropout, max_frames)
        self.input_dims = dict(input_dims)
        self.modalities = list(input_dims)
        self.num_classes = num_classes
        self.d_model = d_model
        self.fusion = fusion
        self.modality_dropout = float(modality_dropout)
        self.max_frames = max_frames

        self.input_stats = nn.ModuleDict({m: Standardize(d) for m, d in input_dims.items()})
        self.input_norm = nn.ModuleDict(
            {m: nn.LayerNorm(d) if input_norm else nn.Identity() for m, d in input_dims.items()})
        self.input_dropout = nn.Dropout(input_dropout)
        self.proj = nn.ModuleDict({m: nn.Linear(d, d_model) for m, d in input_dims.items()})
        self.modality_embed = nn.Parameter(torch.zeros(len(input_dims), d_model))
        self.time_embed = nn.Parameter(torch.zeros(max_frames, d_model))
        # Late fusion gets one CLS per modality encoder; the other modes share one sequence and one CLS.
        self.cls_token = nn.Parameter(torch.zeros(len(input_dims) if fusion == "late" else 1, d_model))
        self.embed_dropout = nn.Dropout(dropout)
        if fusion == "late":
            self.encoders = nn.ModuleDict(
                {m: _encoder(d_model, depth, heads, ff_mult, dropout) for m in self.modalities}
            )
        else:
            self.encoder = _encoder(d_model, depth, heads, ff_mult, dropout)
        # Pre-LN leaves the residual stream un-normalised, so the head needs its own norm.
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        # Logits = transformer head + linear head on clip statistics (see ClipStatsHead); None: transformer only.
        self.stats_head = ClipStatsHead(input_dims, num_classes) if stats_head else None
        for p in (self.modality_embed, self.time_embed, self.cls_token):
            nn.init.trunc_normal_(p, std=0.02)

    @staticmethod
    def _check_args(
        input_dims: dict[str, int],
        num_classes: int,
        d_model: int,
        heads: int,
        fusion: str,
        modality_dropout: float,
        max_frames: int,
    ) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; allowed: {', '.join(FUSIONS)}")
        if not input_dims:
            raise ValueError("input_dims is empty: name at least one modality and its feature width")
        for name, dim in input_dims.items():
            if not name or "." in name:
                raise ValueError(f"modality name {name!r} must be non-empty and contain no '.' (used as module key)")
            if int(dim) < 1:
                raise ValueError(f"modality {name!r}: feature width must be >= 1, got {dim}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if d_model % heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")

    def set_input_stats(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Per-modality ``(mean [D], std [D])`` of the training split (see ``datamodules.feature_stats``).

        Raises ``ValueError`` when a modality of the model has no stats or a shape does not match."""
        missing = [m for m in self.modalities if m not in stats]
        if missing:
            raise ValueError(f"no standardisation stats for modalities {missing} (given: {sorted(stats)})")
        for m in self.modalities:
            try:
                self.input_stats[m].set(*stats[m])
            except ValueError as err:
                raise ValueError(f"modality {m!r}: {err}") from None

    def no_weight_decay(self) -> set[str]:
        """Parameter names that should not be decayed (embeddings): decay would pull them to zero for no gain."""
        return {"modality_embed", "time_embed", "cls_token"}

    def _check_inputs(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> tuple[int, int]:
        """Fail early with the modality and sizes named: shape bugs otherwise surface as opaque matmul errors."""
        if not features:
            raise ValueError(f"features is empty; expected some of the modalities {self.modalities}")
        shape: tuple[int, int] | None = None
        for name, x in features.items():
            if name not in self.input_dims:
                raise ValueError(f"modality {name!r} is not in input_dims (known: {self.modalities})")
            if name not in valid:
                raise ValueError(f"modality {name!r} has features but no validity mask in `valid`")
            if x.dim() != 3:
                raise ValueError(f"modality {name!r}: features must be [B, T, D], got shape {tuple(x.shape)}")
            b, t, d = x.shape
            if d != self.input_dims[name]:
                expected = self.input_dims[name]
                raise ValueError(f"modality {name!r}: feature width {d} != input_dims[{name!r}] = {expected}")
            if t > self.max_frames:
                raise ValueError(f"modality {name!r}: {t} frames > max_frames = {self.max_frames}")
            if tuple(valid[name].shape) != (b, t):
                raise ValueError(f"modality {name!r}: valid has shape {tuple(valid[name].shape)}, expected ({b}, {t})")
            if shape is None:
                shape = (b, t)
            elif shape != (b, t):
                raise ValueError(f"modality {name!r}: batch/frames {(b, t)} differ from the other modalities' {shape}")
        assert shape is not None
        return shape

    def drop_modalities(self, valid: dict[str, Tensor]) -> dict[str, Tensor]:
        """Training-time modality dropout: hide whole streams per sample so the model copes with a missing one.

        Never leaves a sample without any of the modalities it actually has (then there would be nothing to learn
        from); if the draw removed all of them, one present modality, chosen at random, is kept. Identity in eval.
        """
        if not self.training or self.modality_dropout == 0.0 or len(valid) < 2:
            return valid
        names = list(valid)
        present = torch.stack([valid[n].any(dim=1) for n in names], dim=1)  # [B, M]
        keep = torch.rand(present.shape, device=present.device) >= self.modality_dropout
        lost = present.any(dim=1) & ~(keep & present).any(dim=1)
        pick = torch.where(present, torch.rand(present.shape, device=present.device), -1.0).argmax(dim=1)
        keep = keep | (F.one_hot(pick, len(names)).bool() & lost[:, None])
        return {n: valid[n] & keep[:, i, None] for i, n in enumerate(names)}

    def _embed(self, name: str, x: Tensor, v: Tensor) -> Tensor:
        """Project one modality to tokens [B, T, d_model] with its modality embedding (no time embedding yet)."""
        # Zero invalid inputs (= the training mean, after standardising): garbage (inf/NaN/huge) must not reach
        # LayerNorm or attention at all.
        x = self.input_stats[name](x.float())
        x = torch.where(v[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        tok = self.proj[name](self.input_dropout(self.input_norm[name](x)))
        return tok + self.modality_embed[self.modalities.index(name)]

    def _run_encoder(self, tokens: Tensor, token_valid: Tensor, cls: Tensor,
                     encoder: nn.TransformerEncoder) -> Tensor:
        """Prepend CLS, run the encoder with invalid tokens masked as keys (CLS never is, so every query has a key):
        the raw outputs ``[B, 1 + L, d_model]``, CLS first."""
        b = tokens.shape[0]
        seq = torch.cat([cls.expand(b, 1, -1), tokens], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tokens.device), ~token_valid], dim=1)
        return encoder(self.embed_dropout(seq), src_key_padding_mask=pad)

    def _encode(self, tokens: Tensor, token_valid: Tensor, cls: Tensor, encoder: nn.TransformerEncoder) -> Tensor:
        """The normalised CLS output ``[B, d_model]`` of :meth:`_run_encoder`."""
        return self.norm(self._run_encoder(tokens, token_valid, cls, encoder)[:, 0])

    def forward(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        """Return logits ``[B, num_classes]``; see the module docstring for the masking contract."""
        _, t = self._check_inputs(features, valid)
        names = [m for m in self.modalities if m in features]  # fixed order, independent of dict order
        valid = self.drop_modalities({m: valid[m].bool() for m in names})
        time = self.time_embed[:t]

        if self.fusion == "late":
            outs, weights = [], []
            for name in names:
                i = self.modalities.index(name)
                tok = self._embed(name, features[name], valid[name]) + time
                outs.append(self._encode(tok, valid[name], self.cls_token[i : i + 1][None], self.encoders[name]))
                weights.append(valid[name].any(dim=1))
            w = torch.stack(weights, dim=1).float()  # [B, M]: average only streams with evidence ...
            w = torch.where(w.sum(dim=1, keepdim=True) > 0, w, torch.ones_like(w))  # ... or all if none has any
            pooled = (torch.stack(outs, dim=1) * w[..., None]).sum(dim=1) / w.sum(dim=1, keepdim=True)
            return self._with_stats(self.head(pooled), features, valid)

        tokens, token_valid = self._fused_tokens(features, valid, names, time)
        logits = self.head(self._encode(tokens, token_valid, self.cls_token[None], self.encoder))
        return self._with_stats(logits, features, valid)

    def _fused_tokens(self, features: dict[str, Tensor], valid: dict[str, Tensor], names: list[str],
                      time: Tensor) -> tuple[Tensor, Tensor]:
        """The shared sequence of ``early``/``tokens`` fusion: ``(tokens [B, L, d_model], token_valid [B, L])``,
        time embedding added. ``early``: ``L = T``, a frame's token is the mean of its valid modalities' tokens (valid
        where any is); ``tokens``: ``L = M * T``, modality-major ``[m0 t0..tT, m1 t0..tT, ...]`` in ``names`` order."""
        if self.fusion == "early":
            acc = torch.zeros(*valid[names[0]].shape, self.d_model, device=time.device)
            count = torch.zeros(*valid[names[0]].shape, 1, device=time.device)
            for name in names:
                v = valid[name][..., None].float()
                acc = acc + self._embed(name, features[name], valid[name]) * v
                count = count + v
            tokens = acc / count.clamp(min=1.0) + time
            token_valid = torch.stack([valid[m] for m in names], dim=0).any(dim=0)
        else:  # tokens: modality-major layout [m0 t0..tT, m1 t0..tT, ...]
            tokens = torch.cat([self._embed(m, features[m], valid[m]) + time for m in names], dim=1)
            token_valid = torch.cat([valid[m] for m in names], dim=1)
        return tokens, token_valid

    def _with_stats(self, logits: Tensor, features: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        if self.stats_head is None:
            return logits
        return logits + self.stats_head({m: features[m] for m in valid}, valid)
