"""The configuration reference (docs/configuration.md), generated from the typed run configs.

    python tools/config_reference.py            # rewrite docs/configuration.md
    python tools/config_reference.py --check    # exit 1 when the file is out of date

Hand-maintained option tables drift from the code; this renders every key of every run config
straight from its dataclasses: the dotted key path, the type, the default and the field's comment
(the ``#`` comment on the field's line and any comment lines directly above it, else its entry in
the class docstring's Google-style ``Attributes:`` section), under the section's docstring. Adding a run config to the reference is one entry in `DOCUMENTED_CONFIGS`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from omegaconf import MISSING

from radllm.encoders.train_config import CXREncoderTrainConfig
from radllm.training.config import TrainConfig
from radllm.vq.train_config import VQTrainConfig

REFERENCE_PATH = "docs/configuration.md"


@dataclass(frozen=True)
class DocumentedConfig:
    """One run config in the reference: its title, schema and the command that reads it."""

    title: str
    schema: type
    command: str


DOCUMENTED_CONFIGS: tuple[DocumentedConfig, ...] = (
    DocumentedConfig("CXR encoder training", CXREncoderTrainConfig, "radllm train-cxr-encoder --config configs/demo/cxr_encoder.yaml"),
    DocumentedConfig("VQ-GAN training", VQTrainConfig, "radllm vq-train --config configs/demo/vq.yaml"),
    DocumentedConfig("LLM training (text-only, stage 1, stage 2)", TrainConfig, "deepspeed radllm/train.py --config configs/train/tiny_stage1.yaml"),
)


@dataclass(frozen=True)
class Option:
    """One leaf key of a run config."""

    key: str  # dotted path, e.g. "optim.lr"
    type: str
    default: str  # JSON/YAML literal, or "required"
    doc: str


@cache
def _field_comments(cls: type) -> dict[str, str]:
    """Comments of the fields *defined* in `cls` (not inherited): field name -> text."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(token.start[0])
    class_node = ast.parse(source).body[0]
    out = {}
    for node in class_node.body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above = []
        line = node.lineno - 1
        while line in comments and line not in code_lines:  # comment-only lines directly above
            above.insert(0, comments[line])
            line -= 1
        trailing = [comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments]
        out[node.target.id] = " ".join(above + trailing)
    return out


def _split_docstring(cls: type) -> tuple[str, dict[str, str]]:
    """(summary before ``Attributes:``, {attribute: text}) of the class's own docstring.

    The signature docstring that `dataclass` makes up for a class without one counts as none.
    """
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(f"{cls.__name__}("):
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    if "Attributes:" not in (line.strip() for line in lines):
        return " ".join(" ".join(lines).split()), {}
    at = [line.strip() for line in lines].index("Attributes:")
    attributes: dict[str, list[str]] = {}
    entry_indent = None
    for line in lines[at + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        entry_indent = indent if entry_indent is None else entry_indent
        if indent < entry_indent:
            break  # the next docstring section
        name, sep, text = line.strip().partition(":")
        if indent == entry_indent and sep and name.isidentifier():
            attributes[name] = [text.strip()]
        elif attributes:
            attributes[next(reversed(attributes))].append(line.strip())
    return " ".join(" ".join(lines[:at]).split()), {k: " ".join(v) for k, v in attributes.items()}


def _comment(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return _field_comments(klass).get(name) or _split_docstring(klass)[1].get(name, "")
    return ""


def type_name(annotation: Any) -> str:
    """``str | None``, ``list[str]``, ``dict[str, float]``: the type as written in the source."""
    if annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def default_literal(f: dataclasses.Field) -> str:
    """The default as it would be written in YAML (JSON flow style), or "required"."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value == MISSING:
        return "required"
    return json.dumps(value)


def options(schema: type, prefix: str = "") -> Iterator[tuple[str, type, list[Option]]]:
    """(section key, section class, its leaf options) for `schema` and every nested section, depth first."""
    hints = typing.get_type_hints(schema)
    leaves, nested = [], []
    for f in dataclasses.fields(schema):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            nested.append((f"{prefix}{f.name}", annotation))
        else:
            leaves.append(Option(f"{prefix}{f.name}", type_name(annotation), default_literal(f), _comment(schema, f.name)))
    yield prefix.rstrip("."), schema, leaves
    for key, cls in nested:
        yield from options(cls, f"{key}.")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _docstring(cls: type) -> str:
    return _split_docstring(cls)[0]


def render_reference(configs: tuple[DocumentedConfig, ...] = DOCUMENTED_CONFIGS) -> str:
    """The whole Markdown document."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python tools/config_reference.py` from the config dataclasses; do not edit by hand. -->",
        "",
        "Every run config is YAML validated into typed dataclasses (`radllm/config.py`): unknown keys and",
        "values of the wrong type are errors, `--set key=value` overrides any key, and the merged config is",
        "written into the run directory. Keys marked *required* have no default.",
        "",
    ]
    for config in configs:
        lines += [f"## {config.title}: `{config.schema.__name__}`", "", f"```bash\n{config.command}\n```", ""]
        if _docstring(config.schema):
            lines += [_docstring(config.schema), ""]
        for section, cls, leaves in options(config.schema):
            if section:
                lines += [f"### `{section}` ({cls.__name__})", ""]
                if _docstring(cls):
                    lines += [_docstring(cls), ""]
            if not leaves:
                continue
            lines += ["| key | type | default | description |", "|---|---|---|---|"]
            lines += [f"| `{o.key}` | `{_cell(o.type)}` | `{_cell(o.default)}` | {_cell(o.doc)} |" for o in leaves]
            lines.append("")
    return "\n".join(lines)
