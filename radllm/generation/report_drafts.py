"""Best of N report drafts: the fewest coherence faults, then the model's own likelihood.

A radiologist rejects at a glance a report that contradicts itself, says a sentence twice, puts a
finding on one side in the findings and on the other in the impression, or concludes in the
impression what the findings never describe. A small model writes such drafts now and then while
its other drafts of the same study are clean, so `radllm generate reports --candidates N` writes N
drafts per study and keeps one with the fewest faults (`draft_faults`, read by
`radllm.labeler.coherence`, the rules the evaluation scores with); among those it keeps the draft
the model itself finds most likely (mean NLL per token of the draft after the study's prompt),
so a fault-free greedy draft is never traded for a fault-free but unlikely sample. A wrong
statement (contradiction, repeat, side conflict) counts before a missing one (an unsupported
impression finding).

Draft 0 is the run's own decoding (greedy by default), so N = 1 is plain generation. Drafts
1..N-1 keep draft 0's first section (an impression-first model's impression: what it decided the
image shows) and sample the second with the run's temperature / top-k / top-p
(`radllm.generation.reports.draft_report_ids`): N - 1 wordings of the findings of one reading,
each checked against that reading. Each is drawn from the generator of the key (study, draft
index) (`self_check.candidate_key`), so the choice does not depend on batch composition or rank.
The faults are the labeler's reading, not the image's: a draft can be coherent and wrong, which
clinical efficacy (not this choice) measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from radllm.labeler.coherence import ReportCoherence, read_coherence


@dataclass(frozen=True)
class DraftChoice:
    """The draft kept for one study: its index among the N drafts and what decided it."""

    index: int
    faults: int
    nll: float | None  # mean NLL per token; None when there was one draft (nothing scored)


def wrong_statements(reading: ReportCoherence) -> int:
    """What a draft states wrongly: contradicted observations, repeated sentences, side conflicts."""
    return len(reading.contradictions) + len(reading.repeated) + len(reading.side_conflicts)


def draft_faults(reading: ReportCoherence) -> int:
    """Faults of one draft: its `wrong_statements` and the observations the impression concludes
    but no findings sentence supports."""
    return wrong_statements(reading) + len(reading.unsupported)


def choose_drafts(texts: Sequence[Sequence[str]], nll: torch.Tensor | None) -> list[DraftChoice]:
    """For each study, the draft with the fewest wrong statements, then the fewest unsupported
    impression findings, then the lowest NLL (then the lowest index).

    A wrong statement outranks a missing one: a finding not described yet can still be (a report
    built sentence by sentence is read after every sentence), a contradiction cannot be undone.

    Args:
        texts: N lists of B reports: draft d of every study.
        nll: [N, B] mean NLL per token of each draft, or None when N = 1.
    """
    n_drafts, n_studies = len(texts), len(texts[0])
    readings = read_coherence([text for draft in texts for text in draft])
    keys = [(wrong_statements(r), len(r.unsupported)) for r in readings]
    scores = nll.double() if nll is not None else torch.zeros(n_drafts, n_studies, dtype=torch.float64)
    chosen = []
    for study in range(n_studies):
        best = min(range(n_drafts), key=lambda d: (*keys[d * n_studies + study], scores[d, study].item(), d))
        chosen.append(DraftChoice(best, sum(keys[best * n_studies + study]), None if nll is None else float(scores[best, study])))
    return chosen
