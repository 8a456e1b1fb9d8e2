"""Audio-visual end to end (slow): `extract` builds resnet + audio stores over a manifest of real face video with
spoken soundtracks (espeak-ng), then `fit` with resnet+audio and `ablate` with audio in the grid run through."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from audio_data import have_espeak, mux, read_wav, resample_linear, speak, tone_track  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_espeak(), reason="espeak-ng not installed")]
REPO = Path(__file__).resolve().parents[1]
HAPPY = ["What a wonderful day, I love it!", "This is great news, thank you!", "I am so glad you came!",
         "Yes, we won the game!", "That is fantastic, well done!"]
SAD = ["I miss her so much.", "Nothing went right today.", "I am sorry, it is over.", "We lost everything.",
       "Please leave me alone."]


@pytest.fixture(scope="module")
def av_data(face_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """10 clips of the real single_face.mp4 with spoken soundtracks (44.1 kHz stereo AAC) + one without audio."""
    tmp = tmp_path_factory.mktemp("av")
    rows = []
    for i, text in enumerate(HAPPY + SAD):
        voice, rate = read_wav(speak(text, tmp / f"v{i}.wav"))
        clip = mux(face_videos / "single_face.mp4", tmp / f"clip{i:02d}.mp4",
                   resample_linear(np.concatenate([voice, voice]), rate, 44100), 44100)
        rows.append(f"{clip.name},{'happiness' if text in HAPPY else 'sadness'}")
    mux(face_videos / "single_face.mp4", tmp / "mute.mp4")
    rows.append("mute.mp4,sadness")
    mux(face_videos / "single_face.mp4", tmp / "tone.mp4", tone_track(2.4, 44100, 1.0), 44100)
    rows.append("tone.mp4,happiness")
    (tmp / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    # every init arg named: jsonargparse would otherwise carry the default source's root/vocabulary over
    source = {"class_path": "datamodules.sources.ManifestSource",
              "init_args": {"csv": str(tmp / "manifest.csv"), "root": str(tmp), "vocabulary": None}}
    (tmp / "extract.yaml").write_text(yaml.safe_dump({
        "source": source, "store_root": str(tmp / "features"), "frame_cap": 8, "num_workers": 1,
        "modalities": {"resnet": {"name": "resnet18", "config": {"weights": "none"}},
                       "audio": {"name": "fbank", "config": {"window": 1.0}}}}))
    (tmp / "data.yaml").write_text(yaml.safe_dump({"data": {"source": source, "store_root": str(tmp / "features")}}))
    return {"root": tmp, "extract": tmp / "extract.yaml", "data": tmp / "data.yaml"}


def test_extract_fit_and_ablate_with_audio(av_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    from datamodules.feature_store import FeatureStore, find_store
    from fer_zoo.ablation import grid as ablate
    from fer_zoo.extraction.command import main as extract
    from fer_zoo.training.cli import run_lightning_cli

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert extract(["--config", str(av_data["extract"]), "--trainer", '{"enable_progress_bar": false}']) == 0
    audio = FeatureStore(find_store(av_data["root"] / "features", "audio"))
    idx = audio.index.set_index("clip_id")
    assert idx.reason["mute"] == "no audio stream" and idx.valid_count["mute"] == 0
    spoken = idx.drop(["mute", "tone"])
    assert (spoken.valid_count >= 3).all()  # the sentences last 1-2.5 s of the 2.4 s clips (8 frames)
    short = spoken[spoken.valid_count < 8]  # frames after a short sentence ends: invalid, and the index says why
    assert len(short) and all("outside the soundtrack" in r for r in short.reason)
    assert idx.valid_count["tone"] == 8
    runs = av_data["root"] / "runs"
    run_lightning_cli(["fit", "--config", "configs/resnet_audio.yaml", "--config", str(av_data["data"]),
                       "--runs_dir", str(runs), "--run_name", "ra", "--trainer.max_epochs", "2",
                       "--data.num_workers", "0", "--wandb", "false", "--trainer.enable_progress_bar", "false",
                       "--data.class_balance", "dynamic", "--trainer.enable_model_summary", "false",
                       "--data.allow_random_weights", "true"])  # the frame store is a random-weight resnet18
    res = json.loads((runs / "ra" / "results.json").read_text())
    assert res["modalities"] == ["resnet", "audio"] and 0.0 <= res["metrics"]["test/uar"] <= 1.0
    assert sorted(res["class_names"]) == ["happiness", "sadness"], res.get("class_names")
    # predict-video on a clip with speech: the run's audio modality reads the video's own soundtrack
    from fer_zoo.video.predict import main as predict

    out = av_data["root"] / "pred"
    assert predict([str(av_data["root"] / "clip00.mp4"), "--ckpt", str(runs / "ra"), "--out", str(out)]) == 0
    pred = json.loads(next(out.rglob("predictions.json")).read_text())
    assert "audio" in json.dumps(pred.get("modalities", {})) and next(out.rglob("timeline.png")).stat().st_size
    assert pred["status"] == "ok" and (out / "predictions.csv").stat().st_size > 0
    cfg = av_data["root"] / "ablation.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "av", "runs_dir": str(runs), "base": ["configs/demo.yaml", str(av_data["data"])],
        "overrides": ["--trainer.max_epochs=2", "--trainer.enable_progress_bar=false", "--data.num_workers=0",
                      "--model.d_model=16", "--model.depth=1", "--data.allow_random_weights=true"],
        "modalities": ["resnet", "audio"], "modality_sets": [["audio"], ["resnet", "audio"]], "seeds": [1],
        "wandb": False, "env": {"OMP_NUM_THREADS": "1"}}))
    # audio as an optional modality joins the grid because its store exists; pose has none and stays out
    capsys.readouterr()
    assert ablate.main(["--config", str(cfg), "--modality_sets=null", "--modalities=[resnet]",
                        "--optional_modalities=[audio, pose]", "--dry_run=true"]) == 0
    dry = capsys.readouterr().out
    assert "'audio' joins the grid" in dry and "'pose' left out" in dry
    assert '--data.modalities=["resnet","audio"]' in dry and '"pose"' not in dry
    assert ablate.main(["--config", str(cfg)]) == 0
    summary = (runs / "av" / "summary.md").read_text()
    assert "| `audio` |" in summary and "| `audio+resnet` |" in summary, summary
