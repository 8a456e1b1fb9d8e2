"""End-to-end tests of the optional openpifpaf pose backend on a real video.

openpifpaf is an optional, separately built dependency (``make install-openpifpaf``): these tests skip
when it is missing, unless FER_ZOO_REQUIRE_OPENPIFPAF=1 (set by ``make test``/CI), where they FAIL.
The checkpoint is built locally with random weights (no download is possible offline), so the test
checks plumbing, shapes, ranges and determinism, not pose quality.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VIDEO_DIR = REPO.parent / "shared/data/face-videos"
VIDEO = VIDEO_DIR / "WolfgangLanger_Pexels.mp4"
NUM_FRAMES = 20
LONG_EDGE = 161  # small input keeps the CPU test fast; the backend's default is the native resolution


def _require_openpifpaf() -> None:
    """Skip when openpifpaf is not installed, or fail when the environment says it is required."""
    try:
        if importlib.util.find_spec("openpifpaf") is not None:
            return
    except ValueError:  # sys.modules["openpifpaf"] is None: import deliberately blocked
        pass
    msg = 'openpifpaf is not installed (optional; run "make install-openpifpaf")'
    if os.environ.get("FER_ZOO_REQUIRE_OPENPIFPAF") == "1":
        pytest.fail(f"FER_ZOO_REQUIRE_OPENPIFPAF=1 but {msg}")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """First NUM_FRAMES RGB frames of a real face video, uint8 [T, H, W, 3]."""
    if not VIDEO_DIR.is_dir():
        pytest.skip(f"test videos folder {VIDEO_DIR} is absent (shared data not mounted)")
    av = pytest.importorskip("av")
    out = []
    with av.open(str(VIDEO)) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == NUM_FRAMES:
                break
    assert out, f"no frames decoded from {VIDEO}"
    return np.stack(out)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init COCO-17 checkpoint written by scripts/make_openpifpaf_checkpoint.py (subprocess)."""
    path = tmp_path_factory.mktemp("openpifpaf") / "random_shufflenetv2k16.pkl"
    script = REPO / "scripts/make_openpifpaf_checkpoint.py"
    res = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"checkpoint script failed:\n{res.stdout}\n{res.stderr}"
    assert path.is_file() and path.stat().st_size > 0
    return path


def test_importing_module_does_not_import_openpifpaf() -> None:
    code = "import sys, extractors.pose_openpifpaf; assert 'openpifpaf' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_backend_end_to_end_on_real_video(request: pytest.FixtureRequest) -> None:
    _require_openpifpaf()  # in the test body (not a fixture) so a required-but-missing install FAILS, not errors
    frames: np.ndarray = request.getfixturevalue("frames")
    checkpoint: Path = request.getfixturevalue("checkpoint")
    from extractors.pose_openpifpaf import COCO17_KEYPOINTS, OpenPifPafBackend

    backend = OpenPifPafBackend(checkpoint=str(checkpoint), device="cpu", long_edge=LONG_EDGE)
    assert backend.num_keypoints == 17 and backend.keypoint_names == COCO17_KEYPOINTS
    kps, valid = backend(frames)
    t = len(frames)
    assert kps.shape == (t, 17, 3) and kps.dtype == np.float32
    assert valid.shape == (t,) and valid.dtype == np.bool_
    assert not np.isnan(kps).any()
    assert kps.min() >= 0.0 and kps.max() <= 1.0
    assert not kps[~valid].any(), "frames without a person must be all-zero"
    kps2, valid2 = backend(frames)
    np.testing.assert_array_equal(kps, kps2)
    np.testing.assert_array_equal(valid, valid2)
    print(f"openpifpaf (random init): {int(valid.sum())}/{t} frames with a detection")


def test_missing_checkpoint_raises_with_path(tmp_path: Path) -> None:
    from extractors.pose_openpifpaf import OpenPifPafBackend

    missing = tmp_path / "nope" / "shufflenetv2k16.pkl"
    with pytest.raises(FileNotFoundError, match="shufflenetv2k16.pkl") as info:
        OpenPifPafBackend(checkpoint=str(missing))
    assert str(missing) in str(info.value) and "github.com/openpifpaf" in str(info.value)
    with pytest.raises(FileNotFoundError, match="download"):
        OpenPifPafBackend(checkpoint="")


def test_not_installed_raises_import_error_with_instructions(
    checkpoint_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extractors.pose_openpifpaf import OpenPifPafBackend

    monkeypatch.setitem(sys.modules, "openpifpaf", None)  # makes `import openpifpaf` raise ImportError
    with pytest.raises(ImportError, match=r'run "make install-openpifpaf"'):
        OpenPifPafBackend(checkpoint=str(checkpoint_file))


@pytest.fixture
def checkpoint_file(tmp_path: Path) -> Path:
    """Any existing file: the import check runs after the path check, before anything is unpickled."""
    path = tmp_path / "dummy.pkl"
    path.write_bytes(b"not a checkpoint")
    return path


def test_best_pose_picks_highest_score_and_normalises() -> None:
    from extractors.pose_openpifpaf import best_pose

    low = np.zeros((17, 3), np.float32)
    low[:, 2] = 0.9
    high = np.zeros((17, 3), np.float32)
    high[0] = (320.0, 90.0, 0.8)  # inside a 640x360 frame
    high[1] = (700.0, -5.0, 0.5)  # outside: clipped to [0, 1]
    anns = [SimpleNamespace(data=low, score=0.2), SimpleNamespace(data=high, score=0.7)]
    kps, ok = best_pose(anns, width=640, height=360)
    assert ok and kps.dtype == np.float32 and kps.shape == (17, 3)
    np.testing.assert_allclose(kps[0], (0.5, 0.25, 0.8))
    np.testing.assert_allclose(kps[1], (1.0, 0.0, 0.5))
    assert not kps[2:].any()  # zero-confidence keypoints stay all-zero
    empty, ok = best_pose([], width=640, height=360)
    assert not ok and not empty.any()
