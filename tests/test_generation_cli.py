"""`radllm generate` end to end on a tiny exported model: inputs, records, PNGs, resume, errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from launching import run_group
from model_fixtures import make_model_dir, make_study_set

from radllm.cli import main
from radllm.data.tokenize import tokenize_shards, write_index
from radllm.generation import prepare_job
from radllm.errors import RadllmError
from radllm.generation.images import generate_codes
from radllm.generation.inputs import manifest_inputs
from radllm.generation.views import prompt_codes
from radllm.report_text import as_written_order
from radllm.vocab import decode_report, encode_report
from radllm.generation.model import load_generator
from radllm.generation.records import part_files, part_path
from radllm.generation.sampling import DecodingConfig
from radllm.generation.report_drafts import choose_drafts, draft_faults
from radllm.generation import reports as reports_mode
from radllm.generation.reports import generate_report_ids
from radllm.generation.self_check import candidate_key, pick_best
from radllm.labeler.coherence import read_coherence
from radllm.generation.shuffle import derangement
from radllm.imaging import load_image
from radllm.imaging.png import to_uint8
from radllm.tasks import end_id, image_condition_text, report_generation_prompt
from radllm.vq.checkpoint import load_vq
from tokenizer_fixtures import make_vq_dir

REPO = Path(__file__).resolve().parents[1]
N_STUDIES = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("generate")
    model_dir, vq_dir = make_model_dir(root)
    manifest = make_study_set(root / "data", n=N_STUDIES)
    return {"root": root, "model": model_dir, "vq": vq_dir, "manifest": manifest}


def base_args(setup, task: str, input_path, out, *extra: str) -> list[str]:
    return ["generate", task, "--model", str(setup["model"]), "--vq", str(setup["vq"]), "--input", str(input_path), "--out", str(out),
            "--device", "cpu", "--no-progress", *extra]


def report_args(setup, input_path, out, *extra: str) -> list[str]:
    return base_args(setup, "reports", input_path, out, "--batch-size", "2", "--max-new-tokens", "12", *extra)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def clean_reports(setup):
    """Reports of an uninterrupted one-process run (the reference for resume and multi-rank tests)."""
    out = setup["root"] / "clean.jsonl"
    assert main(report_args(setup, setup["manifest"], out)) == 0
    return read_jsonl(out)


def test_report_records_follow_the_contract(clean_reports):
    assert [r["study_id"] for r in clean_reports] == [f"study{i:03d}" for i in range(N_STUDIES)]
    for record in clean_reports:
        assert set(record) == {"task", "study_id", "report", "views", "decoding", "cfg_scale", "candidates", "chosen_candidate", "faults",
                               "draft_nll", "draft_unit"}
        assert record["task"] == "report" and record["views"] == ["PA"] and record["report"] and record["cfg_scale"] == 1.0
        assert (record["candidates"], record["chosen_candidate"], record["draft_nll"]) == (1, 0, None)
        assert record["faults"] == draft_faults(read_coherence([record["report"]])[0])
        assert record["decoding"] == {"strategy": "greedy", "max_new_tokens": 12, "min_new_tokens": 0}


def test_shards_and_image_folder_give_the_same_reports_as_the_manifest(setup, clean_reports, tmp_path):
    shards = tmp_path / "shards"
    tokenize_shards(setup["manifest"], setup["vq"], setup["model"], shards, shard_size=4, num_workers=0, device="cpu", progress=False)
    write_index(setup["manifest"], setup["vq"], setup["model"], shards, shard_size=4)
    assert main(report_args(setup, shards, tmp_path / "from_shards.jsonl")) == 0
    assert [(r["study_id"], r["report"]) for r in read_jsonl(tmp_path / "from_shards.jsonl")] == [(r["study_id"], r["report"]) for r in clean_reports]
    assert main(report_args(setup, setup["manifest"].parent / "images", tmp_path / "from_folder.jsonl")) == 0
    from_folder = {r["study_id"]: r["report"] for r in read_jsonl(tmp_path / "from_folder.jsonl")}
    assert from_folder == {f"{r['study_id']}_0": r["report"] for r in clean_reports}


def test_beam_and_sampled_reports_differ_from_greedy_and_sampling_is_seeded(setup, clean_reports, tmp_path):
    for name, extra in (("beam", ["--strategy", "beam", "--num-beams", "3"]), ("s1", ["--strategy", "sample", "--seed", "1"]),
                        ("s1b", ["--strategy", "sample", "--seed", "1", "--batch-size", "4"]), ("s2", ["--strategy", "sample", "--seed", "2"])):
        assert main(report_args(setup, setup["manifest"], tmp_path / f"{name}.jsonl", *extra)) == 0
    reports = {name: [r["report"] for r in read_jsonl(tmp_path / f"{name}.jsonl")] for name in ("beam", "s1", "s1b", "s2")}
    greedy = [r["report"] for r in clean_reports]
    assert reports["beam"] != greedy and reports["s1"] != greedy
    assert reports["s1"] == reports["s1b"]  # batch composition does not change a study's sample
    assert reports["s1"] != reports["s2"]


def test_images_have_exactly_hw_codes_and_pngs_decoded_from_them(setup, tmp_path):
    reports_txt = tmp_path / "reports.txt"
    reports_txt.write_text("No acute cardiopulmonary process.\n\nSmall left pleural effusion.\nModerate cardiomegaly.\n")
    out = tmp_path / "images"
    assert main(base_args(setup, "images", reports_txt, out, "--cfg-scale", "3", "--top-k", "8", "--batch-size", "2")) == 0
    records = read_jsonl(out / "images.jsonl")
    assert [r["study_id"] for r in records] == ["reports-1", "reports-3", "reports-4"]
    vq = load_vq(setup["vq"])
    for record in records:
        assert set(record) == {"task", "study_id", "prompt", "image", "codes_shape", "codes", "cfg_scale", "seed", "condition",
                               "candidates", "chosen_candidate", "reading_nll"}
        assert (record["candidates"], record["chosen_candidate"], record["reading_nll"]) == (1, 0, None)
        assert record["codes_shape"] == [8, 8] and len(record["codes"]) == 64
        assert all(0 <= c < 16 for c in record["codes"]) and record["cfg_scale"] == 3.0
        with torch.no_grad():
            expected = vq.decode_codes(torch.tensor(record["codes"]).view(1, 8, 8))[0]
        png = load_image(out / record["image"], 32)
        assert (to_uint8(png) == to_uint8(expected)).all()
    assert main(base_args(setup, "images", setup["manifest"], tmp_path / "from_manifest", "--cfg-scale", "1")) == 0
    assert [r["prompt"] for r in read_jsonl(tmp_path / "from_manifest" / "images.jsonl")][0].startswith("FINDINGS")


def test_impression_condition_draws_from_the_impression_alone(setup, tmp_path, capsys):
    impressions = ["Small left pleural effusion.", "Moderate cardiomegaly."]
    full = tmp_path / "full" / "reports.txt"  # same file name: the same study ids, so the same sampling seeds
    full.parent.mkdir()
    full.write_text("".join(f"FINDINGS: No pneumothorax. Lungs are clear. IMPRESSION: {i}\n" for i in impressions))
    alone = tmp_path / "alone" / "reports.txt"
    alone.parent.mkdir()
    alone.write_text("".join(f"IMPRESSION: {i}\n" for i in impressions))
    codes = {}
    for name, path, condition in (("impression", full, "impression"), ("reference", alone, "report"), ("report", full, "report")):
        out = tmp_path / f"out_{name}"
        assert main(base_args(setup, "images", path, out, "--cfg-scale", "2", "--condition", condition)) == 0
        records = read_jsonl(out / "images.jsonl")
        assert all(r["condition"] == condition for r in records)
        codes[name] = [r["codes"] for r in records]
    assert codes["impression"] == codes["reference"]  # the same study ids and seeds, the same prompt
    assert codes["impression"] != codes["report"]
    # Without --condition, the model's own (config.json, written at export) decides.
    recorded = tmp_path / "model_impression"
    shutil.copytree(setup["model"], recorded)
    config = json.loads((recorded / "config.json").read_text())
    assert config.get("radllm_image_condition", "report") == "report"
    (recorded / "config.json").write_text(json.dumps(config | {"radllm_image_condition": "impression"}))
    recorded_setup = setup | {"model": recorded}
    assert main(base_args(recorded_setup, "images", full, tmp_path / "out_recorded", "--cfg-scale", "2")) == 0
    records = read_jsonl(tmp_path / "out_recorded" / "images.jsonl")
    assert [r["codes"] for r in records] == codes["impression"] and {r["condition"] for r in records} == {"impression"}
    (recorded / "config.json").write_text(json.dumps(config | {"radllm_image_condition": "findings"}))
    capsys.readouterr()
    assert main(base_args(recorded_setup, "images", full, tmp_path / "out_bad", "--cfg-scale", "2")) == 2
    assert "radllm_image_condition = 'findings'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base_args(setup, "images", full, tmp_path / "bad", "--condition", "findings"))


def test_candidates_keep_the_drawing_the_model_reads_back_best(setup, tmp_path, capsys):
    """`--candidates 3` against a naive reference: each candidate drawn alone with its own key, its
    condition text scored by one plain forward, the lowest mean NLL kept."""
    reports = ["FINDINGS: Lungs are clear. IMPRESSION: Small left pleural effusion.", "IMPRESSION: Moderate cardiomegaly.",
               "No acute cardiopulmonary process."]
    path = tmp_path / "reports.txt"
    path.write_text("".join(f"{r}\n" for r in reports))
    assert main(base_args(setup, "images", path, tmp_path / "best", "--cfg-scale", "2", "--temperature", "1.5", "--candidates", "3",
                          "--condition", "impression", "--batch-size", "2")) == 0
    records = read_jsonl(tmp_path / "best" / "images.jsonl")
    gen = load_generator(setup["model"], setup["vq"])
    decoding = DecodingConfig(strategy="sample", temperature=1.5, seed=0)
    chosen_somewhere_else = False
    for record, report in zip(records, reports):
        text = image_condition_text(report, "impression")
        response = encode_report(gen.tokenizer, text)
        drawn, nll = [], []
        for c in range(3):
            codes = generate_codes(gen, [report], [candidate_key(record["study_id"], c)], decoding, 2.0, 2, 0, "impression")[0]
            prompt = report_generation_prompt([codes.numpy()], gen.tokenizer, gen.spec, 2, 0)
            ids = torch.tensor([prompt + response])
            with torch.no_grad():
                log_probs = torch.log_softmax(gen.model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            targets = ids[0, len(prompt):]
            nll.append(float(-log_probs[len(prompt) - 1:].gather(1, targets[:, None]).mean()))
            drawn.append(codes.flatten().tolist())
        best = min(range(3), key=nll.__getitem__)
        assert record["candidates"] == 3 and record["chosen_candidate"] == best
        assert record["codes"] == drawn[best]
        assert record["reading_nll"] == pytest.approx(nll[best], abs=1e-4)
        chosen_somewhere_else |= best != 0
    assert len({tuple(c) for c in drawn}) == 3  # the candidates are different drawings
    # Candidate 0 is plain sampling: one candidate gives its codes, with nothing scored.
    assert main(base_args(setup, "images", path, tmp_path / "one", "--cfg-scale", "2", "--temperature", "1.5",
                          "--condition", "impression")) == 0
    for record in read_jsonl(tmp_path / "one" / "images.jsonl"):
        assert record["reading_nll"] is None
    capsys.readouterr()
    assert main(base_args(setup, "images", path, tmp_path / "zero", "--candidates", "0")) == 2
    assert "--candidates 0; expected at least 1" in capsys.readouterr().err
    # Resuming an output drawn with another number of candidates would mix two runs.
    assert main(base_args(setup, "images", path, tmp_path / "best", "--cfg-scale", "2", "--temperature", "1.5",
                          "--condition", "impression")) == 2
    assert "'candidates': 3" in capsys.readouterr().err
    assert chosen_somewhere_else  # the choice is not always candidate 0


def test_pick_best_takes_the_lowest_reading_nll_per_study_and_the_first_on_ties():
    first = torch.tensor([[[1]], [[2]], [[3]]])  # candidate 0 of three studies, 1x1 codes
    second = torch.tensor([[[4]], [[5]], [[6]]])
    codes, chosen = pick_best([first, second], torch.tensor([[0.5, 0.2, 1.0], [0.4, 0.9, 1.0]]))
    assert chosen.tolist() == [1, 0, 0]
    assert codes.flatten().tolist() == [4, 2, 3]


def _response_nll(model, prompt: list[int], response: list[int]) -> float:
    """Mean NLL per token of `response` after `prompt`, by one plain forward (the naive reference)."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    return float(-log_probs[len(prompt) - 1:].gather(1, ids[0, len(prompt):, None]).mean())


def test_report_candidates_keep_the_draft_with_fewest_faults_then_the_likeliest(setup, tmp_path, capsys, monkeypatch):
    """`--candidates 4` against a naive reference: draft 0 sampled alone with the study's key, each
    other draft its first section (here: its first 3 ids, as the tiny model writes no section tags)
    continued alone with its own key, faults read by the coherence rules, NLL by one plain forward."""
    monkeypatch.setattr(reports_mode, "second_section_start", lambda tokenizer, ids: 3)
    sampling = ("--strategy", "sample", "--temperature", "1.5")
    assert main(report_args(setup, setup["manifest"], tmp_path / "drafts.jsonl", "--candidates", "4", *sampling)) == 0
    assert main(report_args(setup, setup["manifest"], tmp_path / "plain.jsonl", *sampling)) == 0
    records, plain = read_jsonl(tmp_path / "drafts.jsonl"), read_jsonl(tmp_path / "plain.jsonl")
    gen = load_generator(setup["model"], setup["vq"])
    sample = DecodingConfig(strategy="sample", temperature=1.5, seed=0, max_new_tokens=12)
    codes, _ = prompt_codes(manifest_inputs(setup["manifest"]), gen.vq, 2)
    eos = end_id(gen.tokenizer)
    chosen_elsewhere = False
    for record, alone, study_codes in zip(records, plain, codes):
        prompt = report_generation_prompt(study_codes, gen.tokenizer, gen.spec, 2, 0)
        first = generate_report_ids(gen, [prompt], [record["study_id"]], sample)[0]
        assert len(first) >= 3
        tail = replace(sample, max_new_tokens=9)  # 12 less the longest kept prefix of the batch (3)
        drafts = [first] + [[*first[:3], *generate_report_ids(gen, [prompt + first[:3]], [candidate_key(record["study_id"], d)], tail)[0]]
                            for d in range(1, 4)]
        texts = [as_written_order(decode_report(gen.tokenizer, ids)).strip() for ids in drafts]
        faults = [draft_faults(read_coherence([t])[0]) for t in texts]
        # eos is scored when the draft ended by one (shorter than the 12 ids allowed)
        nll = [_response_nll(gen.model, prompt, [*ids, eos] if len(ids) < 12 else ids) for ids in drafts]
        best = min(range(4), key=lambda d: (faults[d], nll[d], d))
        assert record["candidates"] == 4 and record["chosen_candidate"] == best and record["faults"] == faults[best]
        assert record["draft_nll"] == pytest.approx(nll[best], abs=1e-4)
        assert texts[best] == record["report"] and texts[0] == alone["report"]  # draft 0 is the run's own decoding
        assert len({tuple(d) for d in drafts}) == 4
        chosen_elsewhere |= best != 0
    assert chosen_elsewhere
    capsys.readouterr()
    assert main(report_args(setup, setup["manifest"], tmp_path / "beam.jsonl", "--candidates", "2", "--strategy", "beam")) == 2
    assert "--candidates drafts by greedy or sampled decoding" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # VQA answers are scored, not drafted
        main(base_args(setup, "vqa", setup["manifest"], tmp_path / "vqa.jsonl", "--candidates", "2"))


def test_sentence_drafts_choose_each_sentence_among_n_against_a_one_study_reference(setup, tmp_path, monkeypatch):
    """`--draft-unit sentence`: every sentence drawn N times (each candidate alone here, with its
    key), the one whose report so far has the fewest wrong statements, then unsupported findings,
    then the lowest NLL kept, until a candidate ends the report or the 12 ids run out; the kept
    report is the greedy one or the built one by the same rule."""
    monkeypatch.setattr(reports_mode, "second_section_start", lambda tokenizer, ids: 3)
    gen = load_generator(setup["model"], setup["vq"])
    ends = [i for i in range(gen.spec.text_vocab_size) if i % 3 == 0]  # short "sentences": several per report
    monkeypatch.setattr(reports_mode, "sentence_end_ids", lambda tokenizer: ends)
    assert main(report_args(setup, setup["manifest"], tmp_path / "s.jsonl", "--candidates", "3", "--temperature", "1.5",
                            "--draft-unit", "sentence")) == 0
    records = read_jsonl(tmp_path / "s.jsonl")
    sample = DecodingConfig(strategy="sample", temperature=1.5, seed=0, max_new_tokens=12)
    codes, _ = prompt_codes(manifest_inputs(setup["manifest"]), gen.vq, 2)
    text = lambda ids: as_written_order(decode_report(gen.tokenizer, ids)).strip()  # noqa: E731

    def rank(ids: list[int], log_probs: list[float]) -> tuple:
        reading = read_coherence([text(ids)])[0]
        unsupported = len(reading.unsupported)
        return draft_faults(reading) - unsupported, unsupported, -sum(log_probs) / max(1, len(log_probs))

    several_sentences = False
    for record, study_codes in zip(records, codes):
        prompt = report_generation_prompt(study_codes, gen.tokenizer, gen.spec, 2, 0)
        first_lp: list[list[float]] = []
        first = generate_report_ids(gen, [prompt], [record["study_id"]], DecodingConfig(max_new_tokens=12), log_probs=first_lp)[0]
        built, built_lp, sentence = first[:3], first_lp[0][:3], 0
        while len(built) < 12:
            options = []
            for k in range(3):
                lp: list[list[float]] = []
                ids = generate_report_ids(gen, [prompt + built], [candidate_key(record["study_id"], sentence * 3 + k + 1)],
                                          replace(sample, max_new_tokens=12 - len(built)), log_probs=lp, stop_ids=ends)[0]
                options.append((rank(built + ids, built_lp + lp[0]), k, ids, lp[0]))
            _, _, ids, lp = min(options)
            built, built_lp, sentence = built + ids, built_lp + lp, sentence + 1
            if len(lp) > len(ids) or not ids or ids[-1] not in ends:
                break
        several_sentences |= sentence > 1
        drafts = [(rank(first, first_lp[0]), 0, first), (rank(built, built_lp), 1, built)]
        (key, best, ids) = min(drafts)
        assert (record["chosen_candidate"], record["report"], record["draft_unit"]) == (best, text(ids), "sentence")
        assert record["draft_nll"] == pytest.approx(key[2], abs=1e-4)
    assert several_sentences


def test_second_section_start_is_the_first_section_and_the_next_tag(setup):
    tokenizer = load_generator(setup["model"], setup["vq"]).tokenizer
    for text, first in (("IMPRESSION: Small left effusion. FINDINGS: No pneumothorax.", "IMPRESSION: Small left effusion. FINDINGS:"),
                        ("FINDINGS: Lungs are clear. IMPRESSION: Normal chest.", "FINDINGS: Lungs are clear. IMPRESSION:")):
        ids = encode_report(tokenizer, text)
        start = reports_mode.second_section_start(tokenizer, ids)
        assert decode_report(tokenizer, ids[:start]).strip() == first  # the shortest prefix that holds the tag
        assert first.split()[-1] not in decode_report(tokenizer, ids[: start - 1])[1:]
    assert reports_mode.second_section_start(tokenizer, encode_report(tokenizer, "IMPRESSION: Normal chest.")) is None
    assert reports_mode.second_section_start(tokenizer, encode_report(tokenizer, "Lungs are clear.")) is None


def test_choose_drafts_counts_faults_before_likelihood_and_the_first_draft_wins_ties():
    clean = "FINDINGS: Small left pleural effusion. IMPRESSION: Left pleural effusion."
    contradicted = "FINDINGS: No pleural effusion. IMPRESSION: Left pleural effusion."
    repeated_twice = "FINDINGS: No pneumothorax. No pneumothorax. No pneumothorax. IMPRESSION: Normal chest."
    swapped = "FINDINGS: Small left pleural effusion. IMPRESSION: Right pleural effusion."
    unsupported = "FINDINGS: The lungs are clear. IMPRESSION: Mild cardiomegaly."
    assert [draft_faults(r) for r in read_coherence([clean, contradicted, repeated_twice, swapped, unsupported])] == [0, 2, 2, 1, 1]
    # study 0: the clean draft wins though less likely; study 1: a missing finding beats a wrong side though
    # less likely; study 2: a tie -> draft 0; study 3: the missing finding again (here also the likelier)
    texts = [[contradicted, unsupported, clean, swapped], [clean, swapped, clean, unsupported]]
    nll = torch.tensor([[0.1, 0.5, 0.3, 0.6], [0.9, 0.2, 0.3, 0.4]])
    assert [(c.index, c.faults) for c in choose_drafts(texts, nll)] == [(1, 0), (0, 1), (0, 0), (1, 1)]
    assert [c.nll for c in choose_drafts(texts, nll)] == pytest.approx([0.9, 0.5, 0.3, 0.4])
    assert [(c.index, c.nll) for c in choose_drafts([[swapped, clean]], None)] == [(0, None), (0, None)]


def test_vqa_records_from_templates_and_from_a_question_file(setup, tmp_path):
    out = tmp_path / "vqa.jsonl"
    assert main(base_args(setup, "vqa", setup["manifest"], out, "--observations", "Cardiomegaly", "Edema", "--batch-size", "5")) == 0
    records = read_jsonl(out)
    assert [(r["study_id"], r["observation"]) for r in records] == [(f"study{i:03d}", o) for i in range(N_STUDIES) for o in ("Cardiomegaly", "Edema")]
    for record in records:
        p = record["p_answers"]
        assert set(p) == {"yes", "no", "uncertain"} and abs(sum(p.values()) - 1) < 1e-9
        assert record["p_yes"] == p["yes"] and record["answer"] == max(p, key=p.get)
        assert record["question"] in ("Is there cardiomegaly?", "Is there pulmonary edema?")
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"study_id": "study002", "observation": "Edema", "question": "Is there pulmonary edema?"}) + "\n"
                         + json.dumps({"study_id": "study000", "observation": "Fracture", "question": "Any broken ribs?"}) + "\n")
    assert main(base_args(setup, "vqa", setup["manifest"], tmp_path / "q.jsonl", "--questions", str(questions))) == 0
    asked = read_jsonl(tmp_path / "q.jsonl")
    assert [(r["study_id"], r["question"]) for r in asked] == [("study000", "Any broken ribs?"), ("study002", "Is there pulmonary edema?")]
    same = next(r for r in records if r["study_id"] == "study002" and r["observation"] == "Edema")
    assert abs(asked[1]["p_yes"] - same["p_yes"]) < 1e-6  # batch composition does not change the scores


def check_complete(records: list[dict], clean: list[dict]) -> None:
    counts = Counter(r["study_id"] for r in records)
    assert all(n == 1 for n in counts.values()), f"duplicates: {counts}"
    assert records == clean


def test_crash_mid_run_then_resume_has_no_duplicates_or_gaps(setup, clean_reports, tmp_path):
    out = tmp_path / "crash.jsonl"
    job = prepare_job_for(setup, out)
    calls = []
    real = job.process

    def crashing(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("injected crash in the second batch")
        return real(batch)

    job.process = crashing
    with pytest.raises(RuntimeError, match="injected"):
        job.run()
    part = part_path(out, 0, 1)
    assert len(read_jsonl(part)) == 2 and not out.exists()
    with open(part, "a") as fh:
        fh.write('{"task": "report", "study_id": "study002", "rep')  # a torn line, as a kill mid-write leaves
    job = prepare_job_for(setup, out)
    summary = job.run()
    assert (summary.already_done, summary.written) == (2, N_STUDIES - 2)
    job.merge()
    check_complete(read_jsonl(out), clean_reports)
    assert part_files(out) == []
    summary = job.run()  # a rerun of a finished run does nothing
    assert summary.written == 0 and job.merge()["written"] == N_STUDIES


def prepare_job_for(setup, out, *extra: str):
    from radllm.cli.generate import build_request
    from radllm.cli import build_parser

    return prepare_job(build_request(build_parser().parse_args(report_args(setup, setup["manifest"], out, *extra))))


def test_resuming_with_other_decoding_settings_is_refused(setup, clean_reports, capsys):
    out = setup["root"] / "clean.jsonl"
    before = out.read_bytes()
    for other in (["--strategy", "sample"], ["--cfg-scale", "2"]):
        assert main(report_args(setup, setup["manifest"], out, *other)) == 2
        assert "holds records made with" in capsys.readouterr().err
        assert out.read_bytes() == before


def test_guided_reports_are_recorded_with_their_scale_and_differ_from_unguided(setup, clean_reports, tmp_path):
    # The exact guided tokens are checked against a cache-free reference in test_generation_decode.
    out = tmp_path / "guided.jsonl"
    assert main(report_args(setup, setup["manifest"], out, "--cfg-scale", "3")) == 0
    guided = read_jsonl(out)
    assert [r["study_id"] for r in guided] == [r["study_id"] for r in clean_reports]
    assert all(r["cfg_scale"] == 3.0 for r in guided)
    assert [r["report"] for r in guided] != [r["report"] for r in clean_reports]


def test_resume_after_a_different_world_size(setup, clean_reports, tmp_path):
    out = tmp_path / "world.jsonl"
    job = prepare_job_for(setup, out)
    assert job.run(rank=1, world_size=2).written == N_STUDIES // 2  # rank 0 of 2 never ran
    summary = job.run(rank=0, world_size=1)
    assert (summary.already_done, summary.written) == (N_STUDIES // 2, N_STUDIES // 2)
    job.merge()
    check_complete(read_jsonl(out), clean_reports)


@pytest.mark.parametrize("n", [2, 3, 5, 17, 600])
def test_derangement_moves_every_study_and_is_a_function_of_n_and_seed(n):
    for seed in range(20):
        order = derangement(n, seed)
        assert sorted(order.tolist()) == list(range(n))
        assert all(order[i] != i for i in range(n))
        assert (derangement(n, seed) == order).all()
    assert n < 17 or len({tuple(derangement(n, seed)) for seed in range(20)}) == 20  # 44 derangements of 5: seeds may collide


def test_derangements_of_three_come_out_both_ways_and_one_study_is_an_error():
    drawn = {tuple(derangement(3, seed).tolist()) for seed in range(40)}
    assert drawn == {(1, 2, 0), (2, 0, 1)}  # the only two derangements of three items
    with pytest.raises(RadllmError, match="at least 2 studies"):
        derangement(1, 0)


def test_shuffled_reports_are_the_reports_of_the_image_donor(setup, clean_reports, tmp_path):
    """Greedy decoding depends on the prompt alone, so study A shown B's images must write B's own report."""
    assert len({r["report"] for r in clean_reports}) > 1, "the fixture model must write different reports for different images"
    out = tmp_path / "shuffled.jsonl"
    assert main(report_args(setup, setup["manifest"], out, "--shuffle-images", "0")) == 0
    shuffled = read_jsonl(out)
    own = {r["study_id"]: r["report"] for r in clean_reports}
    assert [r["study_id"] for r in shuffled] == list(own)
    assert sorted(r["image_from"] for r in shuffled) == sorted(own)
    ids = list(own)
    assert [r["image_from"] for r in shuffled] == [ids[i] for i in derangement(len(ids), 0)]
    for record in shuffled:
        assert record["image_from"] != record["study_id"] and record["shuffle_images"] == 0
        assert record["report"] == own[record["image_from"]]
    assert [r["report"] for r in shuffled] != [r["report"] for r in clean_reports]

    split = tmp_path / "split.jsonl"  # another batch size, rank 1 of 2 first, then the rest as one process
    job = prepare_job_for(setup, split, "--shuffle-images", "0", "--batch-size", "4")
    assert job.run(rank=1, world_size=2).written == N_STUDIES // 2
    assert job.run(rank=0, world_size=1).written == N_STUDIES // 2
    job.merge()
    assert split.read_bytes() == out.read_bytes()
    other = tmp_path / "seed1.jsonl"
    assert main(report_args(setup, setup["manifest"], other, "--shuffle-images", "1")) == 0
    assert [r["image_from"] for r in read_jsonl(other)] == [ids[i] for i in derangement(len(ids), 1)]


def test_resuming_across_shuffled_and_unshuffled_outputs_is_refused(setup, clean_reports, tmp_path, capsys):
    out = setup["root"] / "clean.jsonl"
    assert main(report_args(setup, setup["manifest"], out, "--shuffle-images", "0")) == 2
    assert "'shuffle_images': None" in capsys.readouterr().err
    shuffled = tmp_path / "s.jsonl"
    assert main(report_args(setup, setup["manifest"], shuffled, "--shuffle-images", "0")) == 0
    assert main(report_args(setup, setup["manifest"], shuffled, "--shuffle-images", "1")) == 2
    assert "'shuffle_images': 0" in capsys.readouterr().err
    assert main(report_args(setup, setup["manifest"], tmp_path / "neg.jsonl", "--shuffle-images", "-1")) == 2
    assert "expected a seed >= 0" in capsys.readouterr().err


def test_shuffled_vqa_scores_the_donor_images(setup, tmp_path):
    args = ("--observations", "Cardiomegaly", "Edema", "--batch-size", "3")
    assert main(base_args(setup, "vqa", setup["manifest"], tmp_path / "own.jsonl", *args)) == 0
    assert main(base_args(setup, "vqa", setup["manifest"], tmp_path / "shuf.jsonl", *args, "--shuffle-images", "2")) == 0
    own = {(r["study_id"], r["observation"]): r["p_yes"] for r in read_jsonl(tmp_path / "own.jsonl")}
    shuffled = read_jsonl(tmp_path / "shuf.jsonl")
    assert len(shuffled) == len(own)
    for record in shuffled:
        assert record["image_from"] != record["study_id"] and record["shuffle_images"] == 2
        assert record["p_yes"] == pytest.approx(own[(record["image_from"], record["observation"])], rel=1e-3)
    # p(yes) is tiny for this random model; relative changes show which image was read.
    assert any(abs(math.log(r["p_yes"] / own[(r["study_id"], r["observation"])])) > 1 for r in shuffled)


def _run_until_two_records(args: list[str], out: Path) -> tuple[subprocess.Popen, Path]:
    """`radllm generate` in a subprocess, returned once its part file holds two records (or it ended)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "radllm", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = part_path(out, 0, 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if part.exists() and part.read_text().count("\n") >= 2:
            break
        time.sleep(0.02)
    return proc, part


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(setup, clean_reports, tmp_path):
    out = tmp_path / "killed.jsonl"
    args = report_args(setup, setup["manifest"], out, "--batch-size", "1")
    proc, part = _run_until_two_records(args, out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    written = part.read_text().count("\n")
    assert not out.exists() and 2 <= written < N_STUDIES, "the kill must land mid-run"
    assert main(args) == 0
    check_complete(read_jsonl(out), clean_reports)


@pytest.mark.slow
def test_sigterm_mid_run_ends_between_batches_with_75_then_resume(setup, clean_reports, tmp_path):
    """SIGTERM (scancel, a container stop) finishes the batch in progress, leaves only complete
    records, says so and exits 75; the same command then completes the output without duplicates."""
    out = tmp_path / "stopped.jsonl"
    args = report_args(setup, setup["manifest"], out, "--batch-size", "1")
    proc, part = _run_until_two_records(args, out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr[-2000:]
    assert "stopped by SIGTERM after" in stderr and "run the same command again to continue" in stderr
    text = part.read_text()
    assert text.endswith("\n") and all(json.loads(line)["study_id"] for line in text.splitlines())  # whole records only
    assert not out.exists() and 2 <= text.count("\n") < N_STUDIES, "the stop must land mid-run"
    assert main(args) == 0
    check_complete(read_jsonl(out), clean_reports)


@pytest.mark.parametrize(
    "case",
    ["other_vq", "no_spec", "vocab_mismatch", "text_input_for_reports", "bad_template", "bad_observation", "beam_for_images", "missing_input",
     "guided_beam", "negative_scale"],
)
def test_bad_inputs_are_clear_errors(setup, tmp_path, capsys, case):
    args = report_args(setup, setup["manifest"], tmp_path / "out.jsonl")
    expected = {
        "other_vq": "different VQ-GAN",
        "no_spec": "no radllm.json",
        "vocab_mismatch": "output rows",
        "text_input_for_reports": "expected a manifest",
        "bad_template": "--template 9",
        "bad_observation": "unknown observation",
        "beam_for_images": "invalid choice",
        "missing_input": "no such file or directory",
        "guided_beam": "--cfg-scale with --strategy beam",
        "negative_scale": "--cfg-scale -1.0",
    }[case]
    if case == "other_vq":
        args[args.index("--vq") + 1] = str(make_vq_dir(tmp_path / "vq2", seed=1))
    elif case in ("no_spec", "vocab_mismatch"):
        model = tmp_path / "model"
        shutil.copytree(setup["model"], model)
        if case == "no_spec":
            (model / "radllm.json").unlink()
        else:
            spec = json.loads((model / "radllm.json").read_text())
            spec["vocab_size"] += 64
            (model / "radllm.json").write_text(json.dumps(spec))
        args[args.index("--model") + 1] = str(model)
    elif case == "text_input_for_reports":
        (tmp_path / "reports.txt").write_text("a report\n")
        args[args.index("--input") + 1] = str(tmp_path / "reports.txt")
    elif case == "bad_template":
        args += ["--template", "9"]
    elif case == "bad_observation":
        args = base_args(setup, "vqa", setup["manifest"], tmp_path / "v.jsonl", "--observations", "Cardiomegaly", "Broken Heart")
    elif case == "beam_for_images":
        args = base_args(setup, "images", setup["manifest"], tmp_path / "img", "--strategy", "beam")
    elif case == "missing_input":
        args[args.index("--input") + 1] = str(tmp_path / "nothing.jsonl")
    elif case == "guided_beam":
        args += ["--strategy", "beam", "--cfg-scale", "2"]
    elif case == "negative_scale":
        args += ["--cfg-scale", "-1"]
    if case == "beam_for_images":
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
    else:
        assert main(args) == 2
    assert expected in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_deepspeed_ranks_produce_the_same_output_as_one_process(setup, tmp_path):
    """Sampled reports of the shuffled-image control: the same file, byte for byte, whether 1 or 2 ranks wrote it."""
    extra = ("--strategy", "sample", "--seed", "3", "--top-k", "20", "--shuffle-images", "0")
    single = tmp_path / "single.jsonl"
    assert main(report_args(setup, setup["manifest"], single, *extra)) == 0
    two = tmp_path / "two.jsonl"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    args = report_args(setup, setup["manifest"], two, *extra)[1:]  # drop "generate": tools/generate.py takes TASK first
    command = [shutil.which("deepspeed", path=env["PATH"]), "--num_accelerators", "2", "--master_port", str(free_port()),
               str(REPO / "tools" / "generate.py"), *args]
    result = run_group(command, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 1: 3 written" in result.stdout and "rank 0: 3 written" in result.stdout
    assert two.read_bytes() == single.read_bytes()
    assert part_files(two) == []
