from pathlib import Path

import pytest

from lexgpt.cleaning import DEFAULT_RULES_PATH, Rule, RuleError, clean, load_rules, rules_fingerprint


def test_default_rules_load_in_order():
    rules = load_rules(DEFAULT_RULES_PATH)
    names = [r.name for r in rules]
    assert names[0] == "curly_single_quotes"
    assert names[-2:] == ["collapse_whitespace", "strip_edges"]


def test_default_rules_clean_typical_caption_text():
    rules = load_rules(DEFAULT_RULES_PATH)
    text, hits = clean("  He said “hi” — then… [Music]  it ’s  over .  ", rules)
    assert text == "He said \"hi\" - then... it 's over."
    assert hits["curly_double_quotes"] == 2
    assert hits["sound_annotations"] == 1
    assert hits["dashes_to_hyphen"] == 1


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
    ],
)
def test_bad_rules_files_name_the_file_and_problem(tmp_path: Path, body: str, message: str):
    path = tmp_path / "rules.toml"
    path.write_text(body)
    with pytest.raises(RuleError) as err:
        load_rules(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_env_var_points_at_another_rules_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "rules.toml"
    path.write_text("[[rule]]\nname='only'\npattern='a'\nreplacement='b'\n")
    monkeypatch.setenv("LEXGPT_CLEANING_RULES", str(path))
    assert [r.name for r in load_rules()] == ["only"]
