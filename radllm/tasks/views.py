"""Which views of a study a task shows the model and which one it asks the model to draw."""

from __future__ import annotations

from collections.abc import Sequence

from radllm.manifest import FRONTAL_VIEWS


def _is_frontal(view: str) -> bool:
    return view.upper() in FRONTAL_VIEWS


def select_input_views(views: Sequence[str], max_views: int) -> list[int]:
    """Indices of the views given to the model as input (report generation, VQA).

    Frontal views come first (a report is written mainly from the frontal image), then the rest,
    each group in study order, capped at `max_views` so a 4-image study does not fill a row.
    """
    order = [i for i, v in enumerate(views) if _is_frontal(v)] + [i for i, v in enumerate(views) if not _is_frontal(v)]
    return order[:max_views]


def select_target_view(views: Sequence[str]) -> int:
    """Index of the view image generation learns to draw: the first frontal view, else view 0.

    Reports describe the frontal image; drawing a lateral from a report would teach a mostly
    arbitrary mapping.
    """
    for index, view in enumerate(views):
        if _is_frontal(view):
            return index
    return 0
