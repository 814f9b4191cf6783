import time
from pathlib import Path

import pytest

from lexgpt.data.cleaning import (
    DEFAULT_RULES_PATH,
    Rule,
    RuleError,
    clean,
    load_rules,
    rules_fingerprint,
    rules_version,
)


def test_default_rules_load_in_order():
    rules = load_rules(DEFAULT_RULES_PATH)
    names = [r.name for r in rules]
    assert names[:2] == ["control_characters", "curly_single_quotes"]
    assert names[-2:] == ["collapse_whitespace", "strip_edges"]


def test_default_rules_clean_typical_caption_text():
    rules = load_rules(DEFAULT_RULES_PATH)
    text, hits = clean("  He said “hi” — then… [Music]  it ’s  over .  ", rules)
    assert text == "He said \"hi\" - then... it 's over."
    assert hits["curly_double_quotes"] == 2
    assert hits["sound_annotations"] == 1
    assert hits["dashes_to_hyphen"] == 1


def test_default_rules_remove_control_characters_and_count_them():
    rules = load_rules(DEFAULT_RULES_PATH)
    # NUL reaches the text as U+FFFD (the parser follows the spec); ESC, BEL, DEL, C1
    # controls, U+FFFF and other noncharacters are dropped; tab, VT, FF and NEL are spaces.
    text, hits = clean("a\ufffdb\x1b[31mc\x07d\x7f\x9b\uffff\U0010fffe\ufdd0e\tf\x0bg\x0ch\x85i", rules)
    assert text == "ab[31mcde f g h i"
    assert hits["control_characters"] == 8


def test_rules_apply_in_order_and_count_hits():
    rules = [Rule("a_to_b", "a", "b"), Rule("b_to_c", "b", "c")]
    assert clean("aab", rules) == ("ccc", {"a_to_b": 2, "b_to_c": 3})


def test_flags_and_backreferences():
    rules = [Rule("upper", r"(hello)", r"<\1>", flags="i")]
    assert clean("HeLLo", rules)[0] == "<HeLLo>"


def test_fingerprint_follows_content_not_formatting(tmp_path: Path):
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text("[[rule]]\nname='x'\npattern='a'\nreplacement='b'\n")
    b.write_text("# comment\n[[rule]]\nname = \"x\"\npattern = 'a'\nreplacement = 'b'\n")
    assert rules_fingerprint(load_rules(a)) == rules_fingerprint(load_rules(b))
    b.write_text("[[rule]]\nname='x'\npattern='a'\nreplacement='c'\n")
    assert rules_fingerprint(load_rules(a)) != rules_fingerprint(load_rules(b))


@pytest.mark.parametrize(
    "body, message",
    [
        ("[[rule]]\nname='x'\npattern='('\nreplacement=''\n", "bad pattern"),
        ("[[rule]]\nname='x'\nreplacement=''\n", "lacks pattern"),
        ("[[rule]]\nname='x'\npattern='a'\nreplacement=''\nflags='q'\n", "unknown flag"),
        ("[[rule]]\nname='x'\npattern='a'\nreplacement=''\n[[rule]]\nname='x'\npattern='b'\nreplacement=''\n", "used twice"),
        ("[[rule]\n", "cannot read"),
        ("[[rule]]\nname='x'\npattern=5\nreplacement=''\n", "rule 'x': pattern must be a string, got an integer (5)"),
        ("[[rule]]\nname='x'\npattern='a'\nreplacement=['b']\n", "rule 'x': replacement must be a string, got an array"),
        ("[[rule]]\nname=3\npattern='a'\nreplacement=''\n", "rule #1: name must be a non-empty string, got 3"),
        ("rule = 'x'\n", "'rule' must be a list of [[rule]] tables, got a string"),
        ("rule = ['x']\n", "'rule' must be a list of [[rule]] tables, got an array"),
        ("[[rules]]\nname='x'\npattern='a'\nreplacement=''\n", "unknown top-level key(s) ['rules']"),
        ("[[rule]]\nname='x'\npattern='a'\nreplacement='\\q'\n", "rule 'x': bad replacement '\\\\q': bad escape"),
        ("[[rule]]\nname='x'\npattern='a'\nreplacement='\\1'\n", "rule 'x': bad replacement '\\\\1': invalid group reference"),
        ("[[rule]]\nname='x'\npattern='(?P<w>a)'\nreplacement='\\g<v>'\n", "rule 'x': bad replacement"),
        ("[[rule]]\nname='x'\npattern='a'\nreplacement='\\'\n", "rule 'x': bad replacement"),
        (b"\xff\xfe".decode("latin-1"), "cannot read"),
    ],
)
def test_bad_rules_files_name_the_file_and_problem(tmp_path: Path, body: str, message: str):
    path = tmp_path / "rules.toml"
    path.write_bytes(body.encode("latin-1") if body.startswith("\xff") else body.encode())
    with pytest.raises(RuleError) as err:
        load_rules(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    # A broken file still has a version (so the Dagster definitions load), and every edit moves it.
    version = rules_version(path)
    path.write_bytes(path.read_bytes() + b"\n# edited\n")
    assert rules_version(path) != version


def test_good_replacements_load():
    rules = [Rule("named", r"(?P<w>\w+)!", r"\g<w>."), Rule("numbered", r"(a)(b)", r"\2\1\n")]
    assert clean("hi! ab", rules)[0] == "hi. ba\n"


def test_rules_version_ignores_formatting_of_a_valid_file(tmp_path: Path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("[[rule]]\nname='x'\npattern='a'\nreplacement='b'\n")
    b.write_text("# a comment\n[[rule]]\nname = 'x'\npattern = 'a'\nreplacement = 'b'\n")
    assert rules_version(a) == rules_version(b) == rules_fingerprint(load_rules(a))
    assert rules_version(tmp_path / "missing.toml").startswith("unreadable:")


def test_a_backtracking_rule_is_stopped_and_named():
    rules = [Rule("fine", "x", "y"), Rule("catastrophic", r"(a|aa)+$", "")]
    started = time.perf_counter()
    with pytest.raises(RuleError) as err:
        clean("a" * 60 + "b", rules, timeout=0.2, where="episode 7 (episode_007_large.vtt)")
    assert time.perf_counter() - started < 5
    assert "rule 'catastrophic' ran longer than 0.2 s on episode 7 (episode_007_large.vtt)" in str(err.value)


def test_env_var_points_at_another_rules_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "rules.toml"
    path.write_text("[[rule]]\nname='only'\npattern='a'\nreplacement='b'\n")
    monkeypatch.setenv("LEXGPT_CLEANING_RULES", str(path))
    assert [r.name for r in load_rules()] == ["only"]
