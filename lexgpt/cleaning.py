"""Cleaning rules: an ordered list of named regex substitutions that a user edits.

The rules live in ``lexgpt/cleaning_rules.toml`` (``LEXGPT_CLEANING_RULES`` points
elsewhere). Each rule is applied to the whole text in order, and every application is
counted, so a user sees what each rule did.

>>> rules = [Rule("dash", "–", "-"), Rule("spaces", r"\\s+", " ")]
>>> clean("a – b   c", rules)
('a - b c', {'dash': 1, 'spaces': 3})
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lexgpt.hashing import sha256_json

DEFAULT_RULES_PATH = Path(__file__).with_name("cleaning_rules.toml")
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


class RuleError(ValueError):
    """A rule in the rules file is malformed (names the file and the rule)."""


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str
    replacement: str
    flags: str = ""
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flags = 0
        for letter in self.flags:
            if letter not in _FLAGS:
                raise RuleError(f"rule {self.name!r}: unknown flag {letter!r} (use i, m, s, x)")
            flags |= _FLAGS[letter]
        try:
            compiled = re.compile(self.pattern, flags)
        except re.error as err:
            raise RuleError(f"rule {self.name!r}: bad pattern {self.pattern!r}: {err}") from err
        object.__setattr__(self, "compiled", compiled)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "pattern": self.pattern, "replacement": self.replacement, "flags": self.flags}


def rules_path() -> Path:
    return Path(os.environ.get("LEXGPT_CLEANING_RULES", DEFAULT_RULES_PATH))


def load_rules(path: str | os.PathLike[str] | None = None) -> list[Rule]:
    """Read the ordered rules; errors name the file and the offending rule."""
    path = Path(path) if path is not None else rules_path()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise RuleError(f"{path}: cannot read cleaning rules: {err}") from err
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc.get("rule", []), start=1):
        missing = {"name", "pattern", "replacement"} - entry.keys()
        if missing:
            raise RuleError(f"{path}: rule #{i} lacks {', '.join(sorted(missing))}")
        unknown = entry.keys() - {"name", "pattern", "replacement", "flags"}
        if unknown:
            raise RuleError(f"{path}: rule #{i} ({entry['name']!r}) has unknown keys {sorted(unknown)}")
        if entry["name"] in seen:
            raise RuleError(f"{path}: rule name {entry['name']!r} is used twice")
        seen.add(entry["name"])
        try:
            rules.append(Rule(entry["name"], entry["pattern"], entry["replacement"], entry.get("flags", "")))
        except RuleError as err:
            raise RuleError(f"{path}: {err}") from err
    return rules


def rules_fingerprint(rules: list[Rule]) -> str:
    """Hash of the rules' content: what they do, not how the file is formatted."""
    return sha256_json([r.as_dict() for r in rules])


def clean(text: str, rules: list[Rule]) -> tuple[str, dict[str, int]]:
    """Apply the rules in order; return the cleaned text and the hit count per rule."""
    hits: dict[str, int] = {}
    for rule in rules:
        text, hits[rule.name] = rule.compiled.subn(rule.replacement, text)
    return text, hits
