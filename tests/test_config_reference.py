"""The generated configuration reference: comment extraction on a toy config, every key of every
documented config (checked against OmegaConf's own view of the schema), and docs/ being current."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, DictConfig, OmegaConf

from radllm.config_reference import DOCUMENTED_CONFIGS, REFERENCE_PATH, Option, options, render_reference

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ToyBase:
    """Base section."""

    inherited: int = 3  # documented in the base class


@dataclass
class ToySection(ToyBase):
    """A nested section.

    Attributes:
        listed: from the Attributes section,
            continued on the next line.
    """

    listed: list[str] = field(default_factory=lambda: ["a", "b"])
    # The comment block above a field
    # spans two lines.
    above: float | None = None  # and a trailing one


@dataclass
class ToyConfig:
    name: str = MISSING  # the only required key
    weights: dict[str, float] = field(
        default_factory=lambda: {"x": 0.5}
    )  # comment after a multi-line field
    section: ToySection = field(default_factory=ToySection)
    flag: bool = True


def test_toy_config_rows() -> None:
    sections = list(options(ToyConfig))
    assert [(key, cls) for key, cls, _ in sections] == [("", ToyConfig), ("section", ToySection)]
    assert sections[0][2] == [
        Option("name", "str", "required", "the only required key"),
        Option("weights", "dict[str, float]", '{"x": 0.5}', "comment after a multi-line field"),
        Option("flag", "bool", "true", ""),
    ]
    assert sections[1][2] == [
        Option("section.inherited", "int", "3", "documented in the base class"),
        Option("section.listed", "list[str]", '["a", "b"]', "from the Attributes section, continued on the next line."),
        Option("section.above", "float | None", "null", "The comment block above a field spans two lines. and a trailing one"),
    ]
    text = render_reference()
    assert "| `optim.lr` | `float` |" in text and "`str \\| None`" in text  # pipes escaped inside tables


def _omegaconf_leaves(node: DictConfig, prefix: str = "") -> set[str]:
    keys = set()
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and OmegaConf.get_type(child) not in (dict, None):
            keys |= _omegaconf_leaves(child, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_every_key_of_every_documented_config_is_listed() -> None:
    for config in DOCUMENTED_CONFIGS:
        listed = [o.key for _, _, leaves in options(config.schema) for o in leaves]
        assert len(listed) == len(set(listed))
        assert set(listed) == _omegaconf_leaves(OmegaConf.structured(config.schema)), config.title


def test_committed_reference_is_current() -> None:
    committed = ROOT / REFERENCE_PATH
    current = render_reference()
    assert committed.is_file() and committed.read_text(encoding="utf-8") == current, (
        f"{REFERENCE_PATH} is out of date with the config dataclasses: regenerate it with "
        "`python tools/config_reference.py` and commit the result"
    )
