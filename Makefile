# Every pixi task in pixi.toml has a twin here, for machines without pixi
# (tests/test_tasks.py keeps the two lists equal).
#
#   make s07                  check steps/step_07.py against Hugging Face GPT-2
#   make s07 TARGET=solutions check the reference solution instead
#   make test                 the whole test suite (what CI runs)
#   make gpt2 ARGS='--prompt "Hello"'   run the finished model
#   make download-gpt2        fetch GPT-2 small into the Hugging Face cache

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
WARMED := $(VENV)/.warmed
TARGET ?= steps
DEVICE ?=
ARGS ?=
STEP ?=
DIR ?=
# --device only when asked (make s07 DEVICE=gpu); the commands default to the CPU.
DEVICE_ARG = $(if $(DEVICE),--device $(DEVICE))
# doctor must work before the venv exists, so it falls back to the system python.
DOCTOR_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
STEPS := 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15

.PHONY: help setup install warm test check-all gpt2 serve download-gpt2 eval lens bench book book-build grade progress watch hint reset doctor $(addprefix s,$(STEPS))

help:
	@echo "make setup        create $(VENV), install pinned packages, warm MAX's caches"
	@echo "make sNN          check steps/step_NN.py (TARGET=solutions for the reference)"
	@echo "make check-all    check every step      make progress   what to do next"
	@echo "make hint STEP=NN the next hint         make watch STEP=NN   re-check on save"
	@echo "make reset STEP=NN restore a skeleton (your file is backed up first)"
	@echo "make gpt2         run the model         make bench      speed vs Hugging Face"
	@echo "make serve        serve it over HTTP (OpenAI API; ARGS='--port 8001 --weights seeded-small')"
	@echo "make download-gpt2  fetch GPT-2 into the Hugging Face cache (once; then offline)"
	@echo "make eval         perplexity on a dataset (ARGS='--dataset wikitext-2 --compare-hf')"
	@echo "make lens ARGS='--prompt \"...\"'   the logit lens: each layer's guess, as a table and a picture"
	@echo "make test         the test suite        make book       build and serve the book"
	@echo "make grade DIR=submissions   grade a class"

install: $(INSTALLED)
$(INSTALLED): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "this course needs Python 3.11 or newer (tomllib; the pinned max and torch wheels); $(PYTHON) is " + sys.version.split()[0] + ": install one and run make install PYTHON=python3.11")'
	@echo "==> creating $(VENV) with the pinned packages (max, torch CPU, transformers, ...)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@echo "==> letting MAX compile its own Mojo module once (a few seconds; gpt2course/max_install.py)"
	$(PY) -m gpt2course.max_install
	@touch $@

# MAX compiles kernels for this machine the first time each is used and keeps
# them on disk (~/.cache/modular). Warming runs every reference solution once so
# a learner's first check takes seconds-to-a-minute instead of several minutes.
warm: $(WARMED)
$(WARMED): $(INSTALLED)
	$(PY) -m gpt2course warm $(DEVICE_ARG)
	@touch $@

setup: $(INSTALLED) $(WARMED)

$(addprefix s,$(STEPS)): s%: $(INSTALLED)
	@$(PY) -m gpt2course check $* --target $(TARGET) $(DEVICE_ARG) $(ARGS)

check-all: $(INSTALLED)
	@$(PY) -m gpt2course check-all --target $(TARGET) $(DEVICE_ARG)

test: $(INSTALLED)
	$(PY) -m pytest tests -p no:cacheprovider --target=solutions $(ARGS)

gpt2: $(INSTALLED)
	@$(PY) -m gpt2course gpt2 $(DEVICE_ARG) $(ARGS)

serve: $(INSTALLED)
	@$(PY) -m gpt2course serve $(DEVICE_ARG) $(ARGS)

# GPT-2 small into the Hugging Face cache (make download-gpt2 ARGS=distilgpt2 for another)
download-gpt2: $(INSTALLED)
	@$(PY) -m gpt2course download-gpt2 $(ARGS)

# Perplexity on a dataset or a text file, beside the GPT-2 paper's figure (ARGS='--help')
eval: $(INSTALLED)
	@$(PY) -m gpt2course eval $(DEVICE_ARG) $(ARGS)

# The logit lens: ln_f and the LM head applied to every block's output
lens: $(INSTALLED)
	@$(PY) -m gpt2course lens $(DEVICE_ARG) $(ARGS)

bench: $(INSTALLED)
	@$(PY) bench/bench_generate.py $(ARGS)

book: $(INSTALLED)
	$(VENV)/bin/mdbook serve book --open

book-build: $(INSTALLED)
	$(VENV)/bin/mdbook build book

grade: $(INSTALLED)
	@$(PY) -m gpt2course grade $(DIR) $(DEVICE_ARG) $(ARGS)

progress: $(INSTALLED)
	@$(PY) -m gpt2course progress $(DEVICE_ARG) $(ARGS)

watch: $(INSTALLED)
	@$(PY) -m gpt2course watch $(STEP) $(DEVICE_ARG) $(ARGS)

hint: $(INSTALLED)
	@$(PY) -m gpt2course hint $(STEP) $(ARGS)

reset: $(INSTALLED)
	@$(PY) -m gpt2course reset $(STEP) $(ARGS)

doctor:
	@$(DOCTOR_PY) -m gpt2course doctor $(ARGS)
