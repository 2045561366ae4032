"""Typed run configs: dataclass defaults ← YAML file ← `key=value` overrides, strictly validated.

Every component owns a dataclass of its options; a run config nests them. Merging goes through
OmegaConf structured configs, which reject unknown keys and values of the wrong type. The merged
result is converted back to plain dataclasses so library code never sees OmegaConf objects, and
is written into the run directory so a run can always be reproduced.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from radllm import atomic
from radllm.errors import RadllmError
from radllm.jsonl import read_text_file

T = TypeVar("T")


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a `schema` instance from its defaults, an optional YAML file and dotted overrides.

    Args:
        schema: a dataclass type whose fields (possibly nested dataclasses) define every option.
        path: YAML file; its keys must all exist in `schema`.
        overrides: strings like ``"optim.lr=3e-4"`` (the `--set` options of entry points).

    Raises:
        RadllmError: naming the file and the offending key or value.
    """
    where = str(path) if path else "defaults"
    try:
        merged = OmegaConf.structured(schema)
        if path is not None:
            if not Path(path).is_file():
                raise RadllmError(f"config file {path} does not exist")
            loaded = yaml.safe_load(read_text_file(path, "config file")) or {}
            if not isinstance(loaded, dict):
                raise RadllmError(f"{path}: expected a YAML mapping at the top level")
            merged = OmegaConf.merge(merged, OmegaConf.create(loaded))
        if overrides:
            where = f"{where} with overrides {list(overrides)}"
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise RadllmError(f"override(s) {bad} must look like key=value")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise RadllmError(f"{where}: required key(s) {missing} have no value")
        check_finite(OmegaConf.to_container(merged), where)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        detail = str(err).splitlines()[0]
        raise RadllmError(f"{where}: invalid config" + (f" at key '{key}'" if key else "") + f": {detail}") from err
    except yaml.YAMLError as err:
        raise RadllmError(f"{path}: not valid YAML: {err}") from err
    return obj  # type: ignore[return-value]


def check_finite(tree: Any, where: str, key: str = "") -> None:
    """Reject NaN and ±inf anywhere in a config tree (YAML reads `.nan` and `.inf` as floats).

    A range check such as `lr <= 0` is silently passed by NaN, so no numeric option may be
    non-finite: this runs before any schema's own `validate` and names the dotted key.
    """
    if isinstance(tree, dict):
        for name, value in tree.items():
            check_finite(value, where, f"{key}.{name}" if key else str(name))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            check_finite(value, where, f"{key}[{index}]")
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise RadllmError(f"{where}: {key} = {tree}; expected a finite number")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (for logging, JSON, and run directories)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the fully merged config as YAML, atomically, so the run is reproducible from it."""
    atomic.write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
