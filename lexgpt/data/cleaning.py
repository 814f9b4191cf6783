"""Cleaning rules: an ordered list of named regex substitutions that a user edits.

The rules live in ``lexgpt/data/cleaning_rules.toml`` (``LEXGPT_CLEANING_RULES`` points
elsewhere). Each rule is applied to the whole text in order, and every application is
counted, so a user sees what each rule did.

>>> rules = [Rule("dash", "–", "-"), Rule("spaces", r"\\s+", " ")]
>>> clean("a – b   c", rules)
('a - b c', {'dash': 1, 'spaces': 3})

Patterns use the ``regex`` module (Python ``re`` syntax plus ``\\p{...}`` classes)
because it can stop a match after a time limit: a pattern such as ``(a|aa)+$``
backtracks exponentially, and without a limit one bad edit hangs the pipeline. Every
problem with the file (bad TOML, a missing or non-string field, a bad pattern, flag or
replacement) is a RuleError whose one-line message names the file and the rule. So is a
rule that makes an episode's text more than ``MAX_RULE_GROWTH`` times longer (or longer
than ``MAX_EPISODE_CHARS``), stopped before the long text is built, and a run whose rules
take longer than ``$LEXGPT_CLEANING_TIMEOUT_S`` in all (:class:`RunBudget`).

>>> Rule("swap", r"(\\w+) (\\w+)", r"\\2 \\3")
Traceback (most recent call last):
...
lexgpt.data.cleaning.RuleError: rule 'swap': bad replacement '\\\\2 \\\\3': invalid group reference
"""

from __future__ import annotations

import math
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import regex

from lexgpt.infra.hashing import sha256_bytes, sha256_json
from lexgpt.infra.stable_read import UnreadableFileError, read_regular_file

DEFAULT_RULES_PATH = Path(__file__).with_name("cleaning_rules.toml")
RULE_TIMEOUT_S = 10.0  # per rule and episode; the default rules take milliseconds
RUN_TIMEOUT_S = 600.0  # all rules on all episodes; the default rules take seconds
RUN_TIMEOUT_ENV = "LEXGPT_CLEANING_TIMEOUT_S"
# A replacement that adds a 200 kB string per "." made a 297k-character corpus 516M long.
MAX_RULE_GROWTH = 4  # one rule may make a text at most this many times longer...
_GROWTH_SLACK_CHARS = 4096  # ...plus this, so a very short text may still gain a word
MAX_EPISODE_CHARS = 16 << 20  # and never longer than this (Lexicap's longest: ~0.5M)
MAX_RULES_FILE_BYTES = 1 << 20
_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}
_FIELDS = ("name", "pattern", "replacement", "flags")
_TOML_TYPES = {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
               list: "an array", dict: "a table"}


class RuleError(ValueError):
    """A rule is malformed, or a rule ran past its time limit (names the file or episode and the rule)."""


def _kind(value: object) -> str:
    return _TOML_TYPES.get(type(value), type(value).__name__)


def _max_growth(compiled: regex.Pattern, replacement: str) -> int:
    """At most how many times longer one substitution can make a text (beyond a few
    characters): the template's group references (at least 1) plus its literal characters.

    Found by expanding ``replacement`` once against a stand-in pattern with the same groups,
    each matching one marker character. That also surfaces a bad escape or a group the
    pattern lacks now: ``sub`` only parses its template on the first hit, mid-run or never.
    """
    names = {index: name for name, index in compiled.groupindex.items()}
    marker = "\ue000"  # a private-use character: a literal one in the template counts as a reference
    groups = "".join(f"(?P<{names[i]}>{marker})" if i in names else f"({marker})"
                     for i in range(1, compiled.groups + 1))
    expanded = regex.compile(groups + marker).sub(replacement, marker * (compiled.groups + 1))
    refs = expanded.count(marker)
    return max(1, refs) + len(expanded) - refs


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str
    replacement: str
    flags: str = ""
    compiled: regex.Pattern = field(init=False, repr=False, compare=False)
    max_growth: int = field(init=False, repr=False, compare=False)

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
            max_growth = _max_growth(compiled, self.replacement)
        except (regex.error, IndexError, ValueError) as err:
            raise RuleError(f"rule {self.name!r}: bad replacement {self.replacement!r}: {err}") from None
        object.__setattr__(self, "compiled", compiled)
        object.__setattr__(self, "max_growth", max_growth)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "pattern": self.pattern, "replacement": self.replacement, "flags": self.flags}


def rules_path() -> Path:
    return Path(os.environ.get("LEXGPT_CLEANING_RULES", DEFAULT_RULES_PATH))


def _read_toml(path: Path) -> dict:
    try:  # regular files only, size checked first: a FIFO here would hang every command
        raw = read_regular_file(path, MAX_RULES_FILE_BYTES, "cleaning rules file")
        return tomllib.loads(raw.decode("utf-8"))
    except UnreadableFileError as err:
        raise RuleError(f"{err} (LEXGPT_CLEANING_RULES names the file)") from None
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
            return "unloadable:" + sha256_bytes(read_regular_file(path, MAX_RULES_FILE_BYTES))
        except UnreadableFileError as err:
            return f"unreadable:{err}"


class RunBudget:
    """A time bound on applying the rules to every episode of one run, and who spent it.

    ``seconds`` defaults to ``$LEXGPT_CLEANING_TIMEOUT_S`` (else ``RUN_TIMEOUT_S``);
    ``clock`` is injectable so the bound can be tested without waiting.
    """

    def __init__(self, seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.seconds = run_timeout_s() if seconds is None else seconds
        self.clock = clock
        self.started = clock()
        self.spent: dict[str, float] = {}

    def remaining(self) -> float:
        return self.seconds - (self.clock() - self.started)

    def charge(self, rule: str, seconds: float) -> None:
        self.spent[rule] = self.spent.get(rule, 0.0) + seconds

    def exceeded(self, where: str) -> RuleError:
        slowest = max(self.spent, key=self.spent.__getitem__, default="?")
        return RuleError(
            f"the cleaning rules ran longer than {self.seconds:g} s in all and were stopped at "
            f"{where}; the slowest rule is {slowest!r} ({self.spent.get(slowest, 0.0):.1f} s): "
            f"simplify its pattern, or raise {RUN_TIMEOUT_ENV}"
        )


def run_timeout_s() -> float:
    """``$LEXGPT_CLEANING_TIMEOUT_S`` (a positive number of seconds), else ``RUN_TIMEOUT_S``."""
    raw = os.environ.get(RUN_TIMEOUT_ENV, "").strip()
    if not raw:
        return RUN_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise RuleError(f"{RUN_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return seconds


def _growth_limit(text: str) -> int:
    """The longest text one rule may make of ``text``."""
    return min(MAX_RULE_GROWTH * len(text) + _GROWTH_SLACK_CHARS, max(MAX_EPISODE_CHARS, len(text)))


class _Overgrown(Exception):
    pass


def _overgrown(rule: Rule, where: str, limit: int, before: int) -> RuleError:
    return RuleError(
        f"rule {rule.name!r} would make {where} longer than {limit} characters ({before} before "
        f"it; a rule may grow a text at most {MAX_RULE_GROWTH}x, and an episode is capped at "
        f"{MAX_EPISODE_CHARS}): shorten its replacement"
    )


def _apply(rule: Rule, text: str, timeout: float, limit: int) -> tuple[str, int]:
    """``rule`` on ``text``; raises _Overgrown before building a text longer than ``limit``."""
    if rule.max_growth <= MAX_RULE_GROWTH:  # cannot pass the limit: the fast C template path
        return rule.compiled.subn(rule.replacement, text, timeout=timeout)
    room = [limit - len(text)]

    def expand(match: regex.Match) -> str:
        out = match.expand(rule.replacement)
        room[0] -= len(out) - (match.end() - match.start())
        if room[0] < 0:
            raise _Overgrown
        return out

    return rule.compiled.subn(expand, text, timeout=timeout)


def clean(
    text: str, rules: list[Rule], *, timeout: float | None = None, where: str = "the text",
    budget: RunBudget | None = None,
) -> tuple[str, dict[str, int]]:
    """Apply the rules in order; return the cleaned text and the hit count per rule.

    A rule that runs longer than ``timeout`` seconds (default ``RULE_TIMEOUT_S``), or makes
    the text more than ``MAX_RULE_GROWTH`` times longer (or past ``MAX_EPISODE_CHARS``),
    raises RuleError naming the rule and ``where`` (e.g. "episode 7 (episode_007_large.vtt)").
    With a ``budget``, running past the whole run's time bound raises too.
    """
    timeout = RULE_TIMEOUT_S if timeout is None else timeout
    budget = RunBudget(seconds=math.inf) if budget is None else budget
    hits: dict[str, int] = {}
    for rule in rules:
        left = budget.remaining()
        if left <= 0:
            raise budget.exceeded(where)
        started, limit = budget.clock(), _growth_limit(text)
        try:
            out, hits[rule.name] = _apply(rule, text, min(timeout, left), limit)
        except TimeoutError:
            budget.charge(rule.name, budget.clock() - started)
            if budget.remaining() <= 0:  # the run's bound, not the rule's, stopped it
                raise budget.exceeded(where) from None
            raise RuleError(
                f"rule {rule.name!r} ran longer than {timeout:g} s on {where} and was stopped; "
                "its pattern probably backtracks (nested repeats such as (a|aa)+): simplify it"
            ) from None
        except _Overgrown:
            raise _overgrown(rule, where, limit, len(text)) from None
        if len(out) > limit:
            raise _overgrown(rule, where, limit, len(text))
        budget.charge(rule.name, budget.clock() - started)
        if budget.remaining() <= 0:
            raise budget.exceeded(where)
        text = out
    return text, hits
