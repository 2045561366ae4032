"""Natural-language metrics of generated reports: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap).

Predictions and references go through the same two steps before scoring:
1. `radllm.report_text.clean_report` (the cleaning used when datasets are prepared), and
2. `metric_tokens`: lower case, words kept whole ("1.5", "x-ray", "r/o"), punctuation dropped,
   as the COCO caption tokenizer does; the Java PTB tokenizer itself is not used so only METEOR
   needs Java.

METEOR runs pycocoevalcap's bundled METEOR 1.5 jar through ``java``. Without Java it is skipped,
and the result says so instead of failing the whole evaluation.
"""

from __future__ import annotations

import atexit
import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from radllm.report_text import clean_report

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[a-z0-9]+(?:[.'/-][a-z0-9]+)*")
# A stand-in for an empty prediction: BLEU/ROUGE/METEOR in pycocoevalcap assume at least one token.
EMPTY_PLACEHOLDER = "<empty>"


def metric_tokens(text: str) -> list[str]:
    """Cleaned, lower-cased word tokens of a report (punctuation dropped)."""
    return _TOKEN.findall(clean_report(text).lower())


def metric_text(text: str) -> str:
    """`metric_tokens` joined by single spaces: what the scorers receive."""
    return " ".join(metric_tokens(text)) or EMPTY_PLACEHOLDER


@dataclass
class NLGResult:
    """Corpus-level scores; `skipped` names metrics that could not run and why."""

    scores: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def java_available() -> bool:
    return shutil.which("java") is not None


def nlg_metrics(predictions: Mapping[str, str], references: Mapping[str, str], meteor: bool = True) -> NLGResult:
    """Scores of `predictions` against `references`, both keyed by study id (same keys).

    Returns keys ``bleu_1`` .. ``bleu_4``, ``meteor``, ``rouge_l``, ``cider`` (corpus scores as
    pycocoevalcap computes them: BLEU over the corpus with the closest-reference brevity penalty,
    ROUGE-L and METEOR averaged per study, CIDEr-D with document frequencies from these references).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(predictions) != set(references):
        raise ValueError("predictions and references must cover the same study ids")
    if not predictions:
        raise ValueError("NLG metrics need at least one prediction")
    keys = sorted(predictions)
    res = {k: [metric_text(predictions[k])] for k in keys}
    gts = {k: [metric_text(references[k])] for k in keys}
    result = NLGResult()
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    result.scores.update({f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)})
    rouge, _ = Rouge().compute_score(gts, res)
    result.scores["rouge_l"] = float(rouge)
    cider, _ = Cider().compute_score(gts, res)
    result.scores["cider"] = float(cider)
    if not meteor:
        result.skipped["meteor"] = "disabled"
    elif not java_available():
        log.warning("METEOR skipped: no `java` on PATH (pycocoevalcap's METEOR 1.5 is a Java program)")
        result.skipped["meteor"] = "java not found on PATH"
    else:
        result.scores["meteor"] = _meteor(gts, res)
    return result


@lru_cache(maxsize=1)
def _meteor_scorer() -> Any:
    """One METEOR process for every set scored in this process: starting the JVM and loading
    METEOR's paraphrase tables takes ~5 s, scoring 600 reports ~0.6 s (an evaluation of a model,
    four baselines and a control started it five times). Closed at exit."""
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()

    def close() -> None:
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.wait()

    atexit.register(close)
    return scorer


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    score, _ = _meteor_scorer().compute_score(gts, res)
    return float(score)
