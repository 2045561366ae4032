"""Phantom chest radiographs: radllm's embedded default dataset.

Procedural PA chest X-rays with known findings (cardiomegaly, pleural effusion, pneumothorax,
lobar opacity/consolidation, nodule/mass, atelectasis, rib fracture, support devices), each with
an IU X-Ray-style report and CheXpert labels that agree with it by construction::

    from radllm.phantoms import generate_phantoms
    manifest = generate_phantoms("data/phantoms", n=2000, size=256, seed=0)

or ``radllm phantoms --out data/phantoms --n 2000``. The pieces are usable alone:
`sample_study` draws a `StudySpec`, `render_study` draws its image, `write_report` its report
and `labels_for` its labels.
"""

from radllm.phantoms.dataset import generate_phantoms, make_study, split_for, study_id
from radllm.phantoms.ground_truth import labels_for
from radllm.phantoms.render import Rendering, render_study
from radllm.phantoms.report import write_report
from radllm.phantoms.sampling import sample_findings, sample_study
from radllm.phantoms.spec import FindingSpec, StudySpec

__all__ = [
    "FindingSpec",
    "Rendering",
    "StudySpec",
    "generate_phantoms",
    "labels_for",
    "make_study",
    "render_study",
    "sample_findings",
    "sample_study",
    "split_for",
    "study_id",
    "write_report",
]
