# The two commands a student needs are `make lab` and `make test`; each sets up .venv by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NB_TIMEOUT ?= 900

.PHONY: setup lab test test-integration test-all unit notebooks chapters facts student book bench checkpoint attention-checkpoint pretrain label-efficiency resnet-checkpoint best-checkpoint train-checkpoint sweep compare mixers robustness smalldata gpu-check grade translations clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes: the command is idempotent. (Some machines' pip
# configuration names local package folders that do not exist; its warnings are filtered out.
# d2l is installed without its exact pins on purpose, so pip's report of those "conflicts" is
# silenced: it would read as an error to a student.)
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
$(STAMP): pyproject.toml
	@set -o pipefail; start=$$(date +%s); \
	{ test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); } && \
	{ $(PIP) -e '.[lab,test,book]' && \
	  $(PIP) --no-deps --no-warn-conflicts 'd2l==1.0.3' && \
	  $(PIP) --no-warn-conflicts 'pandas>=2.0' 'scipy>=1.10'; } 2>&1 | { grep -v '^WARNING: Location' || true; } && \
	touch $@ && echo "setup: $$(( $$(date +%s) - start )) s"

# Jupyter refuses to run as root without --allow-root (containers, some cloud VMs).
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS) notebooks/

# `make test`, what a student runs: ruff, the unit tests, then every chapter executed once with
# nbval in fast mode; stops at the first failure. The ko / ja editions (notebooks/ko,
# notebooks/ja) run the English chapters' code cells unchanged: nbval runs the English ones,
# tests/test_editions.py proves the editions are those cells. `make test-integration` is the
# second tier (@pytest.mark.integration: the book in three languages with the browser, every
# chapter's student copy, grading, an edition chapter per language); `.ci/run` calls both, and
# `make test-all` is the two in a row.
EDITIONS_IGNORE := --ignore=notebooks/ko --ignore=notebooks/ja
test: $(STAMP)
	@export VITCOURSE_FAST=1 MPLBACKEND=Agg; \
	start=$$(date +%s); \
	$(BIN)/ruff check --quiet . || exit 1; \
	$(BIN)/python -m pytest -x -q -m "not integration" tests || exit 1; \
	mid=$$(date +%s); \
	$(BIN)/python -m pytest -x -q --nbval-lax --nbval-cell-timeout=$(NB_TIMEOUT) -p no:cacheprovider $(EDITIONS_IGNORE) notebooks/ || exit 1; \
	end=$$(date +%s); \
	echo "timing: lint + unit tests $$(( mid - start )) s, notebooks $$(( end - mid )) s"

test-integration: $(STAMP)
	@export VITCOURSE_FAST=1 MPLBACKEND=Agg; \
	start=$$(date +%s); \
	$(BIN)/python -m pytest -x -q -m integration tests || exit 1; \
	echo "timing: integration tests $$(( $$(date +%s) - start )) s"

test-all: test test-integration

unit: $(STAMP)
	VITCOURSE_FAST=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q -m "not integration" tests

notebooks: $(STAMP)
	VITCOURSE_FAST=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q --nbval-lax $(EDITIONS_IGNORE) notebooks/

# The chapters' notebooks from their one source each, chapters/NN_name.md (MyST markdown), with
# the measured facts of data/facts/NN_name.json filled in: `make chapters` after editing a chapter,
# `make facts chapters` after a results CSV or a card changed (see tools/chapters.py, tools/facts/).
chapters: $(STAMP)
	$(BIN)/python -m tools.chapters build

facts: $(STAMP)
	$(BIN)/python -m tools.facts write

# Student copies of every chapter in ./student/ (solutions stubbed, hidden tests removed, no outputs).
student: $(STAMP)
	$(BIN)/python -m vitcourse student --out student

# Grade a folder of submitted notebooks in fast mode: make grade SUBMISSIONS=dir SCORES=scores.csv
SUBMISSIONS ?= submissions
SCORES ?= scores.csv
GRADE_TIMEOUT ?= 300
grade: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse grade $(SUBMISSIONS) --out $(SCORES) --timeout $(GRADE_TIMEOUT) --fast

# The shipped trained model + its JSON card (read by vitcourse.training.checkpoint.load_pretrained).
# A fixed epoch count and seed, so the run is reproducible; niced, because the CPU is shared.
# The defaults reproduce the shipped card's command (2 threads on an idle 2-core CPU);
# CKPT_THREADS=1 is faster on a busy 2-core machine; 0 leaves torch's default.
CKPT_EPOCHS ?= 35
CKPT_THREADS ?= 2
checkpoint: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse train --model vit_fmnist --epochs $(CKPT_EPOCHS) --seed 0 \
		--threads $(CKPT_THREADS) --out data/runs/vit_fmnist --export data/checkpoints/vit_fmnist.pt

# The course's CNN, trained by the same loop and recipe as vit_fmnist (chapter 12's ResNet), for
# fewer epochs: a CNN's compute per image is ~4x the ViT's here, and 15 epochs already put it
# well above the ViT (~25 min on 2 idle AMD EPYC cores; resumable from data/runs/resnet_fmnist).
RESNET_EPOCHS ?= 15
resnet-checkpoint: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse train --model resnet_fmnist --epochs $(RESNET_EPOCHS) --seed 0 \
		--threads $(CKPT_THREADS) --out data/runs/resnet_fmnist --export data/checkpoints/resnet_fmnist.pt

# Chapter 06's model: vit_fmnist_p4_cls (patch 4: 49 tokens + a class token), 8 epochs of the same
# recipe (~17 min on 2 idle AMD EPYC cores; resumable from data/runs/vit_fmnist_p4_cls).
attention-checkpoint: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse train --model vit_fmnist_p4_cls --epochs 8 --seed 0 \
		--threads $(CKPT_THREADS) --out data/runs/vit_fmnist_p4_cls --export data/checkpoints/vit_fmnist_p4_cls.pt

# Chapter 14's masked autoencoder: pre-trained on the 60,000 training images without their labels
# (resumable from data/runs/mae_fmnist: run it again), then the label-efficiency table: fine-tuning
# from it vs from scratch, a linear probe and k-NN, at 100 / 600 / 6,000 / 60,000 labels, 3 seeds
# (resumable: done rows are skipped).
MAE_EPOCHS ?= 16
pretrain: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse pretrain --epochs $(MAE_EPOCHS) --seed 0 --threads $(CKPT_THREADS) \
		--out data/runs/mae_fmnist --export data/checkpoints/mae_fmnist.pt

label-efficiency: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse labels --threads $(CKPT_THREADS)

# Chapter 13's shipped model (vit_convstem_s_fmnist + its card): the regularised 60-minute run of
# `make smalldata`'s long part alone, planned from this machine's speed probe (~65 min with the probes and the test pass).
best-checkpoint: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse smalldata --parts long --long-budgets-s 3600 --long-variants conv_stem_s_reg --no-reference

# Speed and accuracy against D2L's ViT (not a test): `make bench` (~30 min), BENCH_ARGS=--quick (~3 min).
BENCH_ARGS ?=
bench: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse bench $(BENCH_ARGS) --json data/runs/bench.json

# The scaling sweep of chapter 07 into data/results/scaling.csv (~45 min on a shared 2-core CPU).
# Resumable: finished points are skipped, so SWEEP_ARGS="--max-minutes 20" runs it in pieces.
SWEEP_ARGS ?=
sweep: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse sweep --csv data/results/scaling.csv $(SWEEP_ARGS)

# Chapter 10's comparison (ViT, T2T-ViT, Swin, ResNet; same loop and budget) into
# data/results/comparisons.csv (~18 min on 2 cores). COMPARE_ARGS="--epochs 2 --train-size 4000" to shorten it.
COMPARE_ARGS ?= --epochs 3
compare: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse compare --out data/results/comparisons.csv $(COMPARE_ARGS)

# Chapter 11's ablations (token mixers x 3 seeds, norms, cost vs tokens) into data/results/token_mixers*.csv
# (~45 min on an idle 2-core CPU; resumable: MIXERS_ARGS="--max-minutes 20" runs it in pieces).
MIXERS_ARGS ?=
mixers: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse mixers $(MIXERS_ARGS)

# Chapter 12's ViT vs ResNet (corruptions, FGSM/PGD, CKA) into data/results/robustness.csv and cka.csv
# (~15 min on one busy core, less on two idle ones; needs both checkpoints; resumable:
# ROBUSTNESS_ARGS="--max-minutes 5" runs it in pieces).
ROBUSTNESS_ARGS ?=
robustness: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse robustness $(ROBUSTNESS_ARGS)

# Chapter 13's small-data recipe (5 steps x 3 seeds at 10 min, the best at 30 and 60 min) into
# data/results/small_data.csv (~4 h on an idle 2-core CPU; resumable: SMALLDATA_ARGS="--max-minutes 60").
SMALLDATA_ARGS ?=
smalldata: $(STAMP)
	nice -n 10 $(BIN)/python -m vitcourse smalldata $(SMALLDATA_ARGS)

# On a lent GPU (under 5 min): fit in fp16 + GradScaler and bf16 with torch.compile, resume
# bit-exactness on CUDA, the D2L comparison and the models' images/s -> data/results/gpu_check.json.
gpu-check: $(STAMP)
	$(BIN)/python -m vitcourse gpucheck $(GPU_ARGS)

# The course site in _build/html, every chapter executed: FAST=1 (default) fast mode, FAST=0 full
# runs (the published site: a GPU or the shipped checkpoints). Offline; see tools/book.py.
# All three editions (English, then _build/html/ko and _build/html/ja) unless LANG=en|ko|ja is
# given on the command line: LANG from the environment is the shell's locale, not an edition,
# and the build runs in a UTF-8 locale whatever was given.
FAST ?= 1
BOOK_LANG := $(if $(filter command line,$(origin LANG)),$(LANG),all)
book: $(STAMP)
	LANG=C.UTF-8 $(BIN)/python -m tools.book build --fast $(FAST) --lang $(BOOK_LANG)

# After an English chapter or an exercise check's message changed: merge the text into
# locales/{ko,ja} and vitcourse/locales (new messages come untranslated, changed ones fuzzy, with
# the counts printed: translate them, see locales/GLOSSARY.md), then regenerate notebooks/ko and
# notebooks/ja from the catalogs; untranslated sentences read in English meanwhile.
# tests/test_editions.py fails until the catalogs and editions are current.
translations: $(STAMP)
	$(BIN)/python -m tools.translations update
	$(BIN)/python -m tools.translations messages
	$(BIN)/python -m tools.translations editions

clean:
	rm -rf $(VENV) _build student
