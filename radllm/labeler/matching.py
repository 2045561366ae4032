"""Fast whole-word matching of many regex phrases: `PhraseMatcher`.

A single `re` alternation of a hundred phrases is tried at every character of the text, which
made the labeler ~300 reports/s. Here each phrase is filed under every first word it can have
(worked out from its parsed regex: r"(?:cardio)?mediastin(?:um|al)" is filed under
"cardiomediastinum", "cardiomediastinal", "mediastinum" and "mediastinal"), and at each word of
the text only the phrases filed under that word are tried, with one dictionary lookup. Results
are those of one alternation of all phrases, longest phrase first, scanned left to right without
overlaps (like `re.finditer`), restricted to whole words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from re import _constants as sre
from re import _parser as sre_parse

_WORD = re.compile(r"[a-z0-9]+|[,;:]")
_PUNCTUATION = ",;:"
# Bound on first-word expansion, so a phrase like r"\w+" fails loudly instead of looping.
_MAX_FIRST_WORDS = 5000
_MAX_REPEAT = 30

Token = tuple[int, str]
_State = tuple[str, bool]  # (first word so far, whether it is complete)


def tokens(text: str) -> list[Token]:
    """(start, word) of every word (run of [a-z0-9]) and of every , ; : in lower-case text."""
    return [(m.start(), m.group()) for m in _WORD.finditer(text)]


def _append(states: set[_State], chars: Iterable[str]) -> set[_State]:
    out = set()
    for word, done in states:
        if done:
            out.add((word, done))
            continue
        for c in chars:
            if c.isalnum():
                out.add((word + c, False))
            elif word:
                out.add((word, True))
            elif c in _PUNCTUATION:
                out.add((c, True))
            else:
                raise ValueError(f"a phrase may not start with {c!r}")
    if len(out) > _MAX_FIRST_WORDS:
        raise ValueError("phrase has too many possible first words")
    return out


def _expand(items: Iterable, states: set[_State]) -> set[_State]:
    for op, av in items:
        if all(done for _, done in states):
            break
        if op is sre.LITERAL:
            states = _append(states, chr(av))
        elif op is sre.IN:
            chars: list[str] = []
            for kind, value in av:
                if kind is sre.LITERAL:
                    chars.append(chr(value))
                elif kind is sre.RANGE:
                    chars += [chr(c) for c in range(value[0], value[1] + 1)]
                else:
                    raise ValueError(f"unsupported character class item {kind} in a phrase")
            states = _append(states, chars)
        elif op is sre.BRANCH:
            states = set().union(*(_expand(branch, states) for branch in av[1]))
        elif op is sre.SUBPATTERN:
            states = _expand(av[-1], states)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, body = av
            result = set(states) if low == 0 else set()
            current = states
            for count in range(1, min(high, _MAX_REPEAT) + 1):
                current = _expand(body, current)
                if count >= low:
                    result |= current
                if all(done for _, done in current):
                    break
            else:
                if high > _MAX_REPEAT:
                    raise ValueError("unbounded repetition inside a phrase's first word")
            states = result
        elif op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue  # zero-width
        else:
            raise ValueError(f"unsupported regex construct {op} in a phrase's first word")
    return states


def first_words(pattern: str) -> set[str]:
    """Every first word (or leading , ; :) a match of `pattern` can have."""
    words = {word for word, _ in _expand(sre_parse.parse(pattern), {("", False)})}
    if "" in words:
        raise ValueError(f"phrase {pattern!r} can match an empty first word")
    return words


class PhraseMatcher:
    """Whole-word matches of tagged regex phrases in lower-case text."""

    def __init__(self, tagged: Iterable[tuple[str, object]]) -> None:
        tags: dict[str, set] = {}
        for phrase, tag in tagged:
            tags.setdefault(phrase, set()).add(tag)
        #: phrase -> its tags, longest phrase first (the order in which phrases are tried).
        self.phrases: dict[str, frozenset] = {p: frozenset(tags[p]) for p in sorted(tags, key=lambda p: (-len(p), p))}
        self._buckets: dict[str, list[tuple[int, re.Pattern[str], frozenset]]] = {}
        for rank, phrase in enumerate(self.phrases):
            try:
                words = first_words(phrase)
            except ValueError as err:
                raise ValueError(f"phrase {phrase!r}: {err}") from None
            compiled = re.compile(rf"(?:{phrase})(?![a-z0-9])")
            for word in words:
                self._buckets.setdefault(word, []).append((rank, compiled, self.phrases[phrase]))

    def find(self, text: str, words: list[Token] | None = None) -> list[tuple[int, int, frozenset]]:
        """(start, end, tags) of each match, left to right, non-overlapping.

        `words` is `tokens(text)`, passed in when several matchers scan the same text.
        """
        out = []
        position = 0
        buckets = self._buckets
        for start, word in tokens(text) if words is None else words:
            if start < position:
                continue
            bucket = buckets.get(word)
            if bucket is None:
                continue
            for _rank, compiled, tags in bucket:
                m = compiled.match(text, start)
                if m:
                    out.append((start, m.end(), tags))
                    position = m.end()
                    break
        return out
