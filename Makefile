# radllm developer commands.  `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Without a GPU-built torch present, pin the CPU wheel so pip never pulls the multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?= -n 2 --timeout 900 --durations=15

.PHONY: venv test clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e ".[dev,eval,qlora,scorers]"
	# DeepSpeed's CPU comm op, built once here rather than raced by the first launches (README
	# "Troubleshooting"); on a GPU machine there is nothing to build.
	DS_ACCELERATOR=$(DEMO_ACCELERATOR) $(VENV)/bin/radllm build-ops
	touch $@

venv: $(VENV)/.installed

test: venv
	DS_ACCELERATOR=cpu $(PY) -m pytest $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) runs .pytest_cache

# ---------------------------------------------------------------------------------------------
# `make demo`: the whole pipeline on phantoms (README "Demo"). Every step is one documented
# command with its config under configs/demo/; its output (written atomically, or a stamp written
# after the command succeeded) is the make target, so rerunning skips finished steps and a step
# killed midway starts again (the trainers with --resume auto). The `--set` options only redirect
# paths to DEMO_DIR and apply the DEMO_*_SET overrides; with the defaults they repeat the configs.
# tests/test_demo.py runs the same targets with small numbers, e.g.
#   make demo DEMO_DIR=/tmp/d DEMO_N=60 DEMO_VQ_SET="schedule.max_steps=4" ...
DEMO_DIR ?= runs/demo
DEMO_N ?= 6000
DEMO_SIZE ?= 256
DEMO_VOCAB ?= 1000
DEMO_RANKS ?= 2
# Rendezvous port of the demo's launcher (two deepspeed runs on one machine need different ports).
DEMO_PORT ?= 29517
# Extra `--set key=value` overrides per step (space separated), and extra generation arguments.
DEMO_ENCODER_SET ?=
DEMO_VQ_SET ?=
DEMO_PRETRAIN_SET ?=
DEMO_STAGE1_SET ?=
DEMO_STAGE2_SET ?=
DEMO_GENERATE_ARGS ?=
# `generate reports`: after the greedy impression, the findings are written sentence by sentence,
# each sentence the best of 8 drawn at temperature 0.7 by the coherence rules, then likelihood
# (docs/generation.md "Report drafts"); chosen on 600 *validation* studies over one plain greedy
# report, 8 whole drafts and 8 whole findings sections (docs/demo.md).
DEMO_REPORT_ARGS ?= --candidates 8 --temperature 0.7 --draft-unit sentence
# `generate images` sampling: guidance 3 at temperature 0.3, the best clinical agreement of seven
# settings tried on 200 *validation* studies (0.777; the CLI defaults, guidance 4 at temperature 1,
# 0.668: they draw more findings, true and false alike), and the best of 16 drawings by the model's
# own reading (self-check; on 600 validation studies 0.8005 -> 0.8112 from 8 to 16 drawings with
# seed 0's model, 0.778 -> 0.787 with seed 1's; README "Demo").
DEMO_IMAGE_ARGS ?= --cfg-scale 3 --temperature 0.3 --candidates 16
# The deepspeed launcher runs 2 ranks on CPU (gloo) unless a GPU is present.
DEMO_ACCELERATOR ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
# One BLAS thread per rank on CPU: 2 ranks x 2 threads on 2 cores only contend.
DEMO_THREADS ?= $(if $(filter cpu,$(DEMO_ACCELERATOR)),1,)

D := $(DEMO_DIR)
RADLLM := $(VENV)/bin/radllm
TRAIN := $(if $(DEMO_THREADS),OMP_NUM_THREADS=$(DEMO_THREADS) ,)DS_ACCELERATOR=$(DEMO_ACCELERATOR) \
	$(VENV)/bin/deepspeed --num_accelerators $(DEMO_RANKS) --master_port $(DEMO_PORT) radllm/train.py --no-progress --resume auto
sets = $(foreach kv,$(1),--set '$(kv)')
# Appends "<step>\t<seconds>" to $(D)/timings.tsv; `start` is set at the beginning of the recipe.
START = mkdir -p $(D) && start=$$(date +%s) &&
timed = echo "$(1)	$$(( $$(date +%s) - start ))" >> $(D)/timings.tsv

.PHONY: demo demo-val demo-clean

# Prints the closing table (also when every step was already done): the test split and the unseen set.
demo: $(D)/eval/metrics.json $(D)/unseen/eval/metrics.json
	$(RADLLM) demo-table --metrics $< --unseen-metrics $(D)/unseen/eval/metrics.json --timings $(D)/timings.tsv

# Recipe choices are made here, on the validation split (generation and evaluation into
# $(D)/val/), never on the test split or the unseen set.
demo-val: $(D)/val/eval/metrics.json
	$(RADLLM) demo-table --metrics $<

$(D)/phantoms/manifest.jsonl: | venv
	$(START) $(RADLLM) phantoms --out $(D)/phantoms --n $(DEMO_N) --size $(DEMO_SIZE) --seed 0 --workers 2 \
	&& $(call timed,phantoms)

$(D)/cxr_encoder/model.safetensors: $(D)/phantoms/manifest.jsonl configs/demo/cxr_encoder.yaml
	$(START) $(RADLLM) train-cxr-encoder --config configs/demo/cxr_encoder.yaml --set out_dir=$(D)/cxr_encoder \
	    --set data.manifest=$< $(call sets,$(DEMO_ENCODER_SET)) \
	&& $(call timed,cxr_encoder)

$(D)/vq/model.safetensors: $(D)/cxr_encoder/model.safetensors configs/demo/vq.yaml
	$(START) $(RADLLM) vq-train --config configs/demo/vq.yaml --resume --no-progress \
	    --set data.manifest=$(D)/phantoms/manifest.jsonl --set loss.feature_encoder=$(D)/cxr_encoder \
	    --set output_dir=$(D)/vq_run --set export_dir=$(D)/vq $(call sets,$(DEMO_VQ_SET)) \
	&& $(call timed,vq)

$(D)/tokenizer/radllm.json: $(D)/vq/model.safetensors
	$(START) $(RADLLM) build-tokenizer --train-sentencepiece --corpus $(D)/phantoms/manifest.jsonl \
	    --vocab-size $(DEMO_VOCAB) --vq $(D)/vq --out $(D)/tokenizer --overwrite \
	&& $(call timed,tokenizer)

$(D)/shards/index.json: $(D)/tokenizer/radllm.json
	$(START) $(RADLLM) tokenize --manifest $(D)/phantoms/manifest.jsonl --vq $(D)/vq --tokenizer $(D)/tokenizer \
	    --out $(D)/shards --no-progress \
	&& $(call timed,shards)

TRAIN_PATHS = --set tokenizer=$(D)/tokenizer --set data.shards=$(D)/shards

$(D)/pretrain/model/radllm.json: $(D)/shards/index.json configs/demo/pretrain.yaml configs/demo/llm/config.json
	$(START) $(TRAIN) --config configs/demo/pretrain.yaml $(TRAIN_PATHS) --set run_dir=$(D)/pretrain \
	    $(call sets,$(DEMO_PRETRAIN_SET)) \
	&& $(call timed,pretrain)

$(D)/stage1/model/radllm.json: $(D)/pretrain/model/radllm.json configs/demo/stage1.yaml
	$(START) $(TRAIN) --config configs/demo/stage1.yaml $(TRAIN_PATHS) --set run_dir=$(D)/stage1 \
	    --set model.init=$(D)/pretrain/model $(call sets,$(DEMO_STAGE1_SET)) \
	&& $(call timed,stage1)

# Stage 2 starts from the stage-1 export; θ₀ of the L2 pull stays the pretrained LM.
$(D)/model/radllm.json: $(D)/stage1/model/radllm.json configs/demo/stage2.yaml
	$(START) $(TRAIN) --config configs/demo/stage2.yaml $(TRAIN_PATHS) --set run_dir=$(D)/stage2 \
	    --set model.init=$(D)/stage1/model --set anchor.pretrained=$(D)/pretrain/model --set export_dir=$(D)/model \
	    $(call sets,$(DEMO_STAGE2_SET)) \
	&& $(call timed,stage2)

# $(1): reports | images | vqa; $(2): the split generated for (default test).
GENERATE = $(RADLLM) generate $(1) --model $(D)/model --vq $(D)/vq --split $(or $(2),test) --no-progress $(DEMO_GENERATE_ARGS)

$(D)/generate/reports.done: $(D)/model/radllm.json
	$(START) $(call GENERATE,reports) --input $(D)/shards --out $(D)/generate/reports.jsonl --batch-size 32 \
	    $(DEMO_REPORT_ARGS) \
	&& touch $@ && $(call timed,generate_reports)

$(D)/generate/images.done: $(D)/model/radllm.json
	$(START) $(call GENERATE,images) --input $(D)/phantoms/manifest.jsonl --out $(D)/generate/images --batch-size 32 \
	    $(DEMO_IMAGE_ARGS) \
	&& touch $@ && $(call timed,generate_images)

$(D)/generate/vqa.done: $(D)/model/radllm.json
	$(START) $(call GENERATE,vqa) --input $(D)/shards --out $(D)/generate/vqa.jsonl --batch-size 32 \
	&& touch $@ && $(call timed,generate_vqa)

# The shuffled-image control: the same generation, each study shown another test study's images
# (`--shuffle-images SEED`); scored against the own references it is what a model that ignores the image gets.
$(D)/generate/reports_shuffled.done: $(D)/model/radllm.json
	$(START) $(call GENERATE,reports) --input $(D)/shards --out $(D)/generate/reports_shuffled.jsonl --batch-size 32 \
	    --shuffle-images 0 $(DEMO_REPORT_ARGS) \
	&& touch $@ && $(call timed,generate_reports_shuffled)

$(D)/generate/vqa_shuffled.done: $(D)/model/radllm.json
	$(START) $(call GENERATE,vqa) --input $(D)/shards --out $(D)/generate/vqa_shuffled.jsonl --batch-size 32 --shuffle-images 0 \
	&& touch $@ && $(call timed,generate_vqa_shuffled)

# Baselines of the studies of split $(3) in shards $(1), written into $(2); the train and val
# studies (retrieval, the code probe and its thresholds, the VQA prior, the normal radiograph)
# always come from the demo's own shards and manifest.
BASELINES = $(RADLLM) baselines --shards $(1) --out $(2) --split $(3) --reference-shards $(D)/shards \
	--manifest $(D)/phantoms/manifest.jsonl

$(D)/baselines/baselines.json: $(D)/shards/index.json
	$(START) $(call BASELINES,$(D)/shards,$(D)/baselines,test) && $(call timed,baselines)

PERPLEXITY = $(START) $(RADLLM) perplexity --model $(1) --shards $(D)/shards --split test --out $@ --no-progress \
	&& $(call timed,perplexity_$(notdir $(basename $@)))

$(D)/perplexity/pretrained.json: $(D)/pretrain/model/radllm.json
	$(call PERPLEXITY,$(D)/pretrain/model)

$(D)/perplexity/stage2_l2.json: $(D)/model/radllm.json
	$(call PERPLEXITY,$(D)/model)

PERPLEXITIES := pretrained stage2_l2

# `radllm evaluate` of the model's reports, images and VQA answers in generation directory $(1)
# and of the baselines in $(2), against references $(3), into $(4); more arguments in $(5).
EVALUATE = $(RADLLM) evaluate --ref $(3) --out $(4) --classifier $(D)/cxr_encoder \
	--pred $(1)/reports.jsonl --pred $(1)/images/images.jsonl --pred $(1)/vqa.jsonl \
	--pred baseline_normal=$(2)/baseline_normal.jsonl --pred baseline_normal=$(2)/baseline_normal_images.jsonl \
	--pred baseline_nearest=$(2)/baseline_nearest.jsonl --pred baseline_probe=$(2)/baseline_probe.jsonl \
	--pred baseline_prior=$(2)/baseline_prior.jsonl $(5)

# report.html draws the learning curves of both training stages (their metrics.jsonl).
$(D)/eval/metrics.json: $(D)/generate/reports.done $(D)/generate/images.done $(D)/generate/vqa.done \
		$(D)/generate/reports_shuffled.done $(D)/generate/vqa_shuffled.done \
		$(D)/baselines/baselines.json $(foreach p,$(PERPLEXITIES),$(D)/perplexity/$(p).json)
	$(START) $(call EVALUATE,$(D)/generate,$(D)/baselines,$(D)/phantoms/manifest.jsonl,$(D)/eval,\
	    --pred shuffled=$(D)/generate/reports_shuffled.jsonl --pred shuffled=$(D)/generate/vqa_shuffled.jsonl \
	    --run-dir stage1=$(D)/stage1 --run-dir stage2=$(D)/stage2 \
	    $(foreach p,$(PERPLEXITIES),--perplexity $(p)=$(D)/perplexity/$(p).json)) \
	&& $(call timed,evaluate)

# ---------------------------------------------------------------------------------------------
# More evaluation sets, each under $(D)/<name>/: the model's reports, images and VQA answers of
# one split, the baselines, and one `radllm evaluate` into $(D)/<name>/eval.
#   unseen: DEMO_UNSEEN_N phantoms of another seed, every one a test study. Every recipe choice
#           so far was made before they existed, so they give the figure no choice has seen.
#   val:    the validation split, where recipe choices are made (`make demo-val`).
DEMO_UNSEEN_N ?= 200
DEMO_UNSEEN_SEED ?= 1

$(D)/unseen/phantoms/manifest.jsonl: | venv
	$(START) $(RADLLM) phantoms --out $(D)/unseen/phantoms --n $(DEMO_UNSEEN_N) --size $(DEMO_SIZE) --seed $(DEMO_UNSEEN_SEED) \
	    --split test --workers 2 --no-progress \
	&& $(call timed,unseen_phantoms)

$(D)/unseen/shards/index.json: $(D)/unseen/phantoms/manifest.jsonl $(D)/tokenizer/radllm.json
	$(START) $(RADLLM) tokenize --manifest $< --vq $(D)/vq --tokenizer $(D)/tokenizer --out $(D)/unseen/shards --no-progress \
	&& $(call timed,unseen_shards)

# $(1): set name; $(2): its manifest; $(3): its shards directory; $(4): the split scored.
define EVALUATION_SET
$(D)/$(1)/generate/reports.done: $(D)/model/radllm.json $(3)/index.json
	$$(START) $$(call GENERATE,reports,$(4)) --input $(3) --out $(D)/$(1)/generate/reports.jsonl --batch-size 32 \
	    $$(DEMO_REPORT_ARGS) && touch $$@ && $$(call timed,$(1)_generate_reports)

$(D)/$(1)/generate/images.done: $(D)/model/radllm.json $(2)
	$$(START) $$(call GENERATE,images,$(4)) --input $(2) --out $(D)/$(1)/generate/images --batch-size 32 \
	    $$(DEMO_IMAGE_ARGS) && touch $$@ && $$(call timed,$(1)_generate_images)

$(D)/$(1)/generate/vqa.done: $(D)/model/radllm.json $(3)/index.json
	$$(START) $$(call GENERATE,vqa,$(4)) --input $(3) --out $(D)/$(1)/generate/vqa.jsonl --batch-size 32 \
	    && touch $$@ && $$(call timed,$(1)_generate_vqa)

$(D)/$(1)/baselines/baselines.json: $(3)/index.json $(D)/shards/index.json
	$$(START) $$(call BASELINES,$(3),$(D)/$(1)/baselines,$(4)) && $$(call timed,$(1)_baselines)

$(D)/$(1)/eval/metrics.json: $(D)/$(1)/generate/reports.done $(D)/$(1)/generate/images.done $(D)/$(1)/generate/vqa.done \
		$(D)/$(1)/baselines/baselines.json
	$$(START) $$(call EVALUATE,$(D)/$(1)/generate,$(D)/$(1)/baselines,$(2),$(D)/$(1)/eval) && $$(call timed,$(1)_evaluate)
endef

$(eval $(call EVALUATION_SET,unseen,$(D)/unseen/phantoms/manifest.jsonl,$(D)/unseen/shards,test))
$(eval $(call EVALUATION_SET,val,$(D)/phantoms/manifest.jsonl,$(D)/shards,val))

# ---------------------------------------------------------------------------------------------
# `make ablations` (after `make demo`, issue 26): arms of the demo recipe, each a `radllm sweep`
# variant (docs/training.md "Sweeps"), scored like the recipe on the validation split (greedy
# reports: ABLATION_REPORT_ARGS; radllm evaluate; radllm perplexity) and collected into one table
# and a Pareto chart of strict clinical F1 against held-out text perplexity, the recipe (the demo
# model) as the reference row of each.
#   anti_forgetting: λ over three orders of magnitude, text replay at two shares, both, neither,
#                    each in both stages (configs/demo/ablations/anti_forgetting_stage{1,2}.yaml);
#   joint:           one run on the union of both stages' task mixes for the same steps, examples,
#                    learning-rate sum and L2 pull (configs/demo/ablations/joint.yaml).
# Finished variants are skipped and a stopped one resumes (--resume auto), as in the demo.
ABLATIONS_STAGE1 ?= configs/demo/ablations/anti_forgetting_stage1.yaml
ABLATIONS_STAGE2 ?= configs/demo/ablations/anti_forgetting_stage2.yaml
ABLATIONS_JOINT ?= configs/demo/ablations/joint.yaml
ABLATION_REPORT_ARGS ?=
AB := $(D)/ablations
A := $(AB)/anti_forgetting

.PHONY: ablations

ablations: $(A)/summary.json $(AB)/joint/summary.json
	cat $(A)/summary.md $(AB)/joint/summary.md

$(A)/stage1/variants.txt: $(ABLATIONS_STAGE1) $(D)/pretrain/model/radllm.json
	$(RADLLM) sweep plan $< --out $(A)/stage1 $(TRAIN_PATHS) --set model.init=$(D)/pretrain/model $(call sets,$(DEMO_STAGE1_SET))

$(A)/stage2/variants.txt: $(ABLATIONS_STAGE2) $(A)/stage1/variants.txt
	$(RADLLM) sweep plan $< --out $(A)/stage2 $(TRAIN_PATHS) --set anchor.pretrained=$(D)/pretrain/model \
	    --set 'model.init=$(A)/stage1/{variant}/model' $(call sets,$(DEMO_STAGE2_SET))
	cmp -s $(A)/stage1/variants.txt $@ || { echo "$(ABLATIONS_STAGE1) and $(ABLATIONS_STAGE2) name different variants" >&2; rm -f $@; exit 1; }

$(AB)/joint/variants.txt: $(ABLATIONS_JOINT) $(D)/pretrain/model/radllm.json
	$(RADLLM) sweep plan $< --out $(AB)/joint $(TRAIN_PATHS) --set model.init=$(D)/pretrain/model $(call sets,$(DEMO_STAGE1_SET))

# Every variant of a planned sweep directory, in order; a finished variant (its model exported) is skipped.
$(AB)/%/trained: $(AB)/%/variants.txt
	$(START) for v in $$(cat $<); do test -f $(@D)/$$v/model/radllm.json || $(TRAIN) --config $(@D)/$$v/config.yaml || exit 1; done \
	&& touch $@ && $(call timed,ablations_$(subst /,_,$*))

$(A)/stage2/trained: $(A)/stage1/trained
# Stamps made by pattern rules: kept, so a finished `make ablations` has nothing left to do.
.PRECIOUS: $(AB)/%/trained $(AB)/%/evaluated

# $(1): the model; $(2): the directory written (reports.jsonl, metrics.json, perplexity.json);
# $(3): more `radllm evaluate` arguments (an arm's: the recipe's reports, for paired differences).
ABLATION_EVAL = $(RADLLM) generate reports --model $(1) --vq $(D)/vq --split val --no-progress $(DEMO_GENERATE_ARGS) \
	    --input $(D)/shards --out $(2)/reports.jsonl --batch-size 32 $(ABLATION_REPORT_ARGS) \
	&& $(RADLLM) evaluate --ref $(D)/phantoms/manifest.jsonl --out $(2) --pred $(2)/reports.jsonl $(3) \
	&& $(RADLLM) perplexity --model $(1) --shards $(D)/shards --split val --out $(2)/perplexity.json --no-progress

# Each arm is also scored paired against the recipe on the same studies (report/diff/recipe/...:
# arm − recipe, with a paired-bootstrap interval).
$(AB)/%/evaluated: $(AB)/%/trained $(AB)/recipe/eval/perplexity.json
	$(START) for v in $$(cat $(@D)/variants.txt); do test -f $(@D)/$$v/eval/perplexity.json \
	    || { $(call ABLATION_EVAL,$(@D)/$$v/model,$(@D)/$$v/eval,--pred recipe=$(AB)/recipe/eval/reports.jsonl); } || exit 1; done \
	&& touch $@ && $(call timed,ablations_$(subst /,_,$*)_evaluate)

# The reference row: the demo model, scored the same way, with its stage-2 run log.
$(AB)/recipe/eval/perplexity.json: $(D)/model/radllm.json
	$(START) $(call ABLATION_EVAL,$(D)/model,$(AB)/recipe/eval) && ln -sfn $(abspath $(D)/stage2/metrics.jsonl) $(AB)/recipe/metrics.jsonl \
	&& $(call timed,ablations_recipe_evaluate)

$(A)/summary.json: $(A)/stage2/evaluated
	$(RADLLM) sweep collect $(A)/stage2 --out $(A) --reference recipe=$(AB)/recipe

$(AB)/joint/summary.json: $(AB)/joint/evaluated
	$(RADLLM) sweep collect $(AB)/joint --reference recipe=$(AB)/recipe

demo-clean:
	rm -rf $(D)
