"""The 14 CheXpert observations and the label encoding every artifact uses.

A label is 1 (positive), 0 (negative), -1 (uncertain) or None (not mentioned / blank), exactly as in
`mimic-cxr-2.0.0-chexpert.csv`. Phantoms, dataset preparation, VQA tasks, the rule-based labeler
and evaluation all index observations through this list, so its order is part of the artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping

OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: The five observations most papers report clinical efficacy on (CheXpert competition set).
COMMON_FIVE: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
)

#: The observation that is the absence of the others: positive when none of them but Support Devices
#: is positive or uncertain (`radllm.labeler`).
NO_FINDING = "No Finding"

VALID_VALUES = (1, 0, -1, None)

Labels = dict[str, "int | None"]


def slug(observation: str) -> str:
    """"Pleural Effusion" -> "pleural_effusion": an observation's name in metric keys."""
    return observation.lower().replace(" ", "_")


def empty_labels() -> Labels:
    """All 14 observations blank."""
    return {name: None for name in OBSERVATIONS}


def validate_labels(labels: Mapping[str, object], where: str) -> Labels:
    """Return a complete, ordered label dict or raise ValueError naming `where` and the bad entry.

    Missing observations become None (blank); unknown names and values outside {1, 0, -1, None}
    are errors because they would silently corrupt evaluation.
    """
    unknown = set(labels) - set(OBSERVATIONS)
    if unknown:
        raise ValueError(f"{where}: unknown observation(s) {sorted(unknown)}; expected names from {list(OBSERVATIONS)}")
    out = empty_labels()
    for name, value in labels.items():
        if isinstance(value, float) and value in (1.0, 0.0, -1.0):
            value = int(value)
        if value not in VALID_VALUES or isinstance(value, bool):
            raise ValueError(f"{where}: label {name!r} = {value!r}; expected 1, 0, -1 or null")
        out[name] = value
    return out
