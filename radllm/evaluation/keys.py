"""Naming of the flat keys in ``metrics.json`` (documented in the README, "Evaluation").

Keys are ``<group>/<metric>`` with group ``report``, ``image`` or ``vqa``; averages end in
``_micro``/``_macro`` plus the observation set (``_14`` all CheXpert observations, ``_5`` the
common five); per-observation values are ``<group>/<metric>/<observation slug>``.
"""

from __future__ import annotations


def slug(observation: str) -> str:
    """"Pleural Effusion" -> "pleural_effusion"."""
    return observation.lower().replace(" ", "_")
