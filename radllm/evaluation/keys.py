"""Naming of the flat keys in ``metrics.json`` (documented in the README, "Evaluation").

Keys are ``<group>/<metric>`` with group ``report``, ``image`` or ``vqa``; averages end in
``_micro``/``_macro`` plus the observation set (``_14`` all CheXpert observations, ``_5`` the
common five); per-observation values are ``<group>/<metric>/<observation slug>``.
"""

from __future__ import annotations


#: Set names `radllm evaluate` writes itself: the reference reports' coherence
#: (``report/reference/contradiction_rate``) and, for generated images, an image in which the
#: classifier finds nothing (``image/baseline_absent/...``). A prediction file may not take them.
REFERENCE = "reference"
ABSENT_IMAGES = "baseline_absent"

#: What report.html and the demo table call the prediction sets `radllm evaluate` is usually given.
SET_LABELS = {
    "": "model",
    "baseline_normal": "baseline: always normal",
    "baseline_nearest": "baseline: nearest train study by codes",
    "baseline_probe": "baseline: code probe in a template",
    "baseline_prior": "baseline: answer prior, no image",
    ABSENT_IMAGES: "baseline: image showing nothing",
    "shuffled": "control: shuffled images",
    REFERENCE: "reference reports",
}


def set_label(name: str) -> str:
    """Reader-facing label of a prediction set ("" is the unnamed one, the model); unknown names as given."""
    return SET_LABELS.get(name, name)


def set_key(group: str, name: str, metric: str) -> str:
    """The metrics.json key of `metric` of the set `name` ("" = unnamed): ``report/ce_f1_micro_14``, ``report/shuffled/ce_f1_micro_14``."""
    return f"{group}/{name}/{metric}" if name else f"{group}/{metric}"
