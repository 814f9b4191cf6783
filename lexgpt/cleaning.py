"""Cleaning rules: an ordered list of named regex substitutions that a user edits.

The rules live in ``lexgpt/cleaning_rules.toml`` (``LEXGPT_CLEANING_RULES`` points
elsewhere). Each rule is applied to the whole text in order, and every application is
counted, so a user sees what each rule did.

>>> rules = [Rule("dash", "–", "-"), Rule("spaces", r"\\s+", " ")]
>>> clean("a – b   c", rules)
('a - b c', {'dash': 1, 'spaces': 3})

Patterns use the ``regex`` module (Python ``re`` syntax plus ``\\p{...}`` classes)
because it can stop a match after a time limit: a pattern such as ``(a|aa)+$``
backtracks exponentially, and without a limit one bad edit hangs the pipeline. Every
problem with the file (bad TOML, a missing or non-string field, a bad pattern, flag or
replacement) is a RuleError whose one-line message names the file and the rule.

>>> Rule("swap", r"(\\w+) (\\w+)", r"\\2 \\3")
Traceback (most recent call last):
...
lexgpt.cleaning.RuleError: rule 'swap': bad replacement '\\\\2 \\\\3': invalid group reference
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import regex

from lexgpt.hashing import sha256_bytes, sha256_json

DEFAULT_RULES_PATH = Path(__file__).with_name("cleaning_rules.toml")
RULE_TIMEOUT_S = 10.0  # per rule and episode; the default rules take milliseconds
MAX_RULES_FILE_BYTES = 1 << 20
_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}
_FIELDS = ("name", "pattern", "replacement", "flags")
_TOML_TYPES = {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
               list: "an array", dict: "a table"}


class RuleError(ValueError):
    """A rule is malformed, or a rule ran past its time limit (names the file or episode and the rule)."""


def _kind(value: object) -> str:
    return _TOML_TYPES.get(type(value), type(value).__name__)


def _check_replacement(compiled: regex.Pattern, replacement: str) -> None:
    """Expand ``replacement`` once against a stand-in pattern with the same groups.

    ``sub`` only parses its template when something matches, so a bad escape or a group
    the pattern lacks would otherwise surface on the first hit, mid-run, or never.
    """
    names = {index: name for name, index in compiled.groupindex.items()}
    stand_in = "".join(f"(?P<{names[i]}>)" if i in names else "()" for i in range(1, compiled.groups + 1))
    regex.compile(stand_in).sub(replacement, "")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str
    replacement: str
    flags: str = ""
    compiled: regex.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise RuleError(f"a rule's name must be a non-empty string, got {self.name!r}")
        for key in _FIELDS[1:]:
            value = getattr(self, key)
            if not isinstance(value, str):
                raise RuleError(f"rule {self.name!r}: {key} must be a string, got {_kind(value)} ({value!r})")
        flags = 0
        for letter in self.flags:
            if letter not in _FLAGS:
                raise RuleError(f"rule {self.name!r}: unknown flag {letter!r} (use i, m, s, x)")
            flags |= _FLAGS[letter]
        try:
            compiled = regex.compile(self.pattern, flags | regex.VERSION0)
        except (regex.error, ValueError, OverflowError) as err:
            raise RuleError(f"rule {self.name!r}: bad pattern {self.pattern!r}: {err}") from None
        try:
            _check_replacement(compiled, self.replacement)
        except (regex.error, IndexError, ValueError) as err:
            raise RuleError(f"rule {self.name!r}: bad replacement {self.replacement!r}: {err}") from None
        object.__setattr__(self, "compiled", compiled)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "pattern": self.pattern, "replacement": self.replacement, "flags": self.flags}


def rules_path() -> Path:
    return Path(os.environ.get("LEXGPT_CLEANING_RULES", DEFAULT_RULES_PATH))


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RULES_FILE_BYTES + 1)
        if len(raw) > MAX_RULES_FILE_BYTES:
            raise RuleError(f"{path}: larger than {MAX_RULES_FILE_BYTES >> 20} MiB; not a rules file")
        return tomllib.loads(raw.decode("utf-8"))
    except OSError as err:
        raise RuleError(f"{path}: cannot read cleaning rules: {err.strerror or err}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise RuleError(f"{path}: cannot read cleaning rules: {err}") from None


def load_rules(path: str | os.PathLike[str] | None = None) -> list[Rule]:
    """Read and check the ordered rules; any problem is a one-line RuleError naming the file
    and, where there is one, the rule."""
    path = Path(path) if path is not None else rules_path()
    doc = _read_toml(path)
    unknown = sorted(doc.keys() - {"rule"})
    if unknown:
        raise RuleError(f"{path}: unknown top-level key(s) {unknown}; each rule is a [[rule]] table")
    entries = doc.get("rule", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RuleError(f"{path}: 'rule' must be a list of [[rule]] tables, got {_kind(entries)}")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, start=1):
        label = f"rule #{i}" + (f" ({entry['name']!r})" if isinstance(entry.get("name"), str) else "")
        missing = [k for k in _FIELDS[:3] if k not in entry]
        if missing:
            raise RuleError(f"{path}: {label} lacks {', '.join(missing)}")
        extra = sorted(entry.keys() - set(_FIELDS))
        if extra:
            raise RuleError(f"{path}: {label} has unknown keys {extra}")
        if not isinstance(entry["name"], str) or not entry["name"]:
            raise RuleError(f"{path}: {label}: name must be a non-empty string, got {entry['name']!r}")
        if entry["name"] in seen:
            raise RuleError(f"{path}: rule name {entry['name']!r} is used twice")
        try:
            rules.append(Rule(entry["name"], entry["pattern"], entry["replacement"], entry.get("flags", "")))
        except RuleError as err:
            raise RuleError(f"{path}: {err}") from None
        seen.add(entry["name"])
    return rules


def rules_fingerprint(rules: list[Rule]) -> str:
    """Hash of the rules' content: what they do, not how the file is formatted."""
    return sha256_json([r.as_dict() for r in rules])


def rules_version(path: str | os.PathLike[str] | None = None) -> str:
    """What the cleaning code version hashes; never raises, so a broken rules file cannot
    stop the Dagster definitions from loading (the asset reports the problem when it runs).

    A valid file gives :func:`rules_fingerprint` (formatting-independent); a broken one
    the hash of its bytes, so every edit still shows as a change.
    """
    path = Path(path) if path is not None else rules_path()
    try:
        return rules_fingerprint(load_rules(path))
    except RuleError:
        try:
            return "unloadable:" + sha256_bytes(path.read_bytes())
        except OSError as err:
            return f"unreadable:{path}:{err.errno}"


def clean(
    text: str, rules: list[Rule], *, timeout: float | None = None, where: str = "the text"
) -> tuple[str, dict[str, int]]:
    """Apply the rules in order; return the cleaned text and the hit count per rule.

    A rule that runs longer than ``timeout`` seconds (default ``RULE_TIMEOUT_S``) raises
    RuleError naming the rule and ``where`` (e.g. "episode 7 (episode_007_large.vtt)").
    """
    timeout = RULE_TIMEOUT_S if timeout is None else timeout
    hits: dict[str, int] = {}
    for rule in rules:
        try:
            text, hits[rule.name] = rule.compiled.subn(rule.replacement, text, timeout=timeout)
        except TimeoutError:
            raise RuleError(
                f"rule {rule.name!r} ran longer than {timeout:g} s on {where} and was stopped; "
                "its pattern probably backtracks (nested repeats such as (a|aa)+): simplify it"
            ) from None
    return text, hits
