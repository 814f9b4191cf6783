"""lexgpt.data.vtt: every fixture parses to exactly these cues or fails at exactly this line."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from lexgpt.data import vtt
from lexgpt.data.vtt import Cue, VTTParseError, _timestamp_ms, parse_vtt, parse_vtt_document, read_vtt, read_vtt_document

FIXTURES = Path(__file__).parent / "fixtures" / "vtt"

GOOD = {
    "basic.vtt": [
        Cue(0.0, 4.2, " As part of MIT course 6S099,", 3),
        Cue(4.2, 6.6, " I've gotten the chance.", 6),
    ],
    "hours.vtt": [
        Cue(3597.2, 3600.16, " one digit hour", 3),
        Cue(3600.16, 3602.0, " two digit hours", 6),
        Cue(442800.0, 442801.999, " many hours", 9),
    ],
    "crlf.vtt": [Cue(1.0, 2.0, " first\n second", 3), Cue(3.0, 4.0, " third", 7)],
    "lone_cr.vtt": [Cue(1.0, 2.0, " first", 3), Cue(3.0, 4.0, " second", 6)],
    "bom.vtt": [Cue(1.0, 2.0, " café", 3)],
    "multiline.vtt": [
        Cue(1.0, 2.0, "line one\nline two\nline three", 4),
        Cue(2.0, 3.5, "- Who?\n- Me.", 10),
    ],
    "settings.vtt": [
        Cue(1.0, 2.0, " left", 3),
        Cue(2.0, 3.0, " tabs", 6),
        Cue(3.0, 4.0, " no spaces", 9),
    ],
    "blocks.vtt": [Cue(1.0, 2.0, " spoken", 13), Cue(2.0, 3.0, " after note", 20)],
    "empty_cue.vtt": [
        Cue(1.0, 2.0, "", 3),
        Cue(2.0, 2.0, " zero length", 5),
        Cue(3.0, 4.0, "", 8),
    ],
    "whitespace.vtt": [
        Cue(1.0, 2.0, " trailing spaces kept   ", 3),
        Cue(2.0, 3.0, " no final newline", 6),
    ],
    "no_blank_between.vtt": [Cue(1.0, 2.0, " first", 2), Cue(2.0, 3.0, " second", 4)],
    "header_only.vtt": [],
}

BAD = {
    "empty.vtt": (1, "empty file"),
    "missing_header.vtt": (1, "missing 'WEBVTT' header"),
    "wrong_header.vtt": (1, "missing 'WEBVTT' header"),
    "truncated_timestamp.vtt": (6, "malformed end timestamp '00:04.0'"),
    "bad_start.vtt": (6, "malformed start timestamp '00:61.000'"),
    "non_utf8.vtt": (7, "not valid UTF-8: byte 0xe9"),
    "end_before_start.vtt": (6, "cue ends before it starts"),
    "orphan_text.vtt": (6, "text without a cue timing line"),
    "arrow_in_payload.vtt": (4, "malformed start timestamp 'he said'"),
}


def test_every_fixture_is_covered():
    on_disk = {p.name for p in FIXTURES.glob("*.vtt")}
    assert on_disk == set(GOOD) | set(BAD)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_fixture(name):
    assert read_vtt(FIXTURES / name) == GOOD[name]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fixture_names_file_and_line(name):
    line, reason = BAD[name]
    path = FIXTURES / name
    with pytest.raises(VTTParseError) as info:
        read_vtt(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.reason.startswith(reason)
    assert str(err).startswith(f"{path}:{line}: {reason}")


def test_allow_backwards_keeps_the_cue():
    cues = read_vtt(FIXTURES / "end_before_start.vtt", allow_backwards=True)
    assert cues[-1] == Cue(967.04, 949.44, " backwards", 6)


def test_str_and_bytes_parse_alike():
    data = (FIXTURES / "multiline.vtt").read_bytes()
    assert parse_vtt(data) == parse_vtt(data.decode()) == GOOD["multiline.vtt"]


def test_error_format_and_pickling():
    err = VTTParseError("a.vtt", 3, "bad")
    assert str(err) == "a.vtt:3: bad"
    assert str(VTTParseError("a.vtt", None, "bad")) == "a.vtt: bad"
    # Errors cross process boundaries in ingest's pool.
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.line, back.reason, str(back)) == ("a.vtt", 3, "bad", "a.vtt:3: bad")
    assert isinstance(back, ValueError)


def test_default_path_label():
    with pytest.raises(VTTParseError, match=r"^<string>:1: "):
        parse_vtt("")


@pytest.mark.parametrize(
    "header", ["WEBVTT", "WEBVTT ", "WEBVTT - title", "WEBVTT\ttabbed", "\ufeffWEBVTT"]
)
def test_header_variants(header):
    assert parse_vtt(f"{header}\n\n00:01.000 --> 00:02.000\nx\n") == [Cue(1.0, 2.0, "x", 3)]


@pytest.mark.parametrize("header", ["webvtt", "WEBVTTX", " WEBVTT", "WEBVTT-x", "\ufeff\ufeffWEBVTT"])
def test_bad_headers(header):
    with pytest.raises(VTTParseError) as info:
        parse_vtt(f"{header}\n\n00:01.000 --> 00:02.000\nx\n")
    assert info.value.line == 1


def test_header_metadata_ends_at_a_timing_line():
    assert parse_vtt("WEBVTT\nKind: captions\n00:01.000 --> 00:02.000\nx") == [Cue(1.0, 2.0, "x", 3)]


def test_note_line_before_timing_is_an_identifier_not_a_comment():
    # Spec: a block whose second line holds "-->" is a cue; "NOTE" is then its identifier.
    assert parse_vtt("WEBVTT\n\nNOTE\n00:01.000 --> 00:02.000\nsaid\n") == [Cue(1.0, 2.0, "said", 4)]


def test_timing_line_inside_note_starts_a_cue():
    doc = "WEBVTT\n\nNOTE\ncomment\n00:01.000 --> 00:02.000\nsaid\n"
    assert parse_vtt(doc) == [Cue(1.0, 2.0, "said", 5)]


def test_nul_becomes_replacement_character():
    assert parse_vtt("WEBVTT\n\n00:01.000 --> 00:02.000\na\0b") == [Cue(1.0, 2.0, "a\ufffdb", 3)]


@pytest.mark.parametrize(
    "timing, line_reason",
    [
        ("00:01.000 --> 00:02.000 --> 00:03.000", "more than one '-->'"),
        ("00:01.000 --> 00:02.000align:start", "malformed end timestamp"),
        ("00:01.000 -->", "malformed end timestamp ''"),
        ("--> 00:02.000", "malformed start timestamp ''"),
        ("id 00:01.000 --> 00:02.000", "malformed start timestamp"),
    ],
)
def test_malformed_timing_lines(timing, line_reason):
    with pytest.raises(VTTParseError) as info:
        parse_vtt(f"WEBVTT\n\n{timing}\nx\n", path="t.vtt")
    assert (info.value.path, info.value.line) == ("t.vtt", 3)
    assert info.value.reason.startswith(line_reason)


def test_identifier_then_bad_timing_reports_the_timing_line():
    with pytest.raises(VTTParseError) as info:
        parse_vtt("WEBVTT\n\ncue-1\n00:01.00 --> 00:02.000\nx\n")
    assert info.value.line == 4


def test_non_utf8_line_counts_crlf_once():
    with pytest.raises(VTTParseError) as info:
        parse_vtt(b"WEBVTT\r\n\r\n00:01.000 --> 00:02.000\r\n\xff\r\n", path="x.vtt")
    assert info.value.line == 4


@pytest.mark.parametrize(
    "tok, ms",
    [
        ("00:00.000", 0),
        ("59:59.999", 3599999),
        ("0:00:00.001", 1),
        ("1:00:00.000", 3600000),
        ("100:00:00.000", 360000000),
        ("60:00.000", None),  # >59 minutes without hours
        ("0:00.000", None),  # minutes must be two digits
        ("00:60.000", None),
        ("00:00:60.000", None),
        ("00:60:00.000", None),
        ("00:00.00", None),
        ("00:00.0000", None),
        ("00:00", None),
        (":00:00.000", None),
        ("0:0:00.000", None),
        ("00:00:00:00.000", None),
        ("+1:00:00.000", None),
        ("1_0:00:00.000", None),
        ("\u0661\u0660:00.000", None),  # Arabic-Indic digits: isdigit() but not ASCII
        ("00:00.00\u00b2", None),
        ("", None),
    ],
)
def test_timestamps(tok, ms):
    assert _timestamp_ms(tok) == ms


def test_times_are_exact_decimal_values():
    (cue,) = parse_vtt("WEBVTT\n\n00:00.100 --> 01:02:03.300\nx")
    assert (cue.start, cue.end) == (0.1, 3723.3)


@pytest.mark.parametrize("hours", ["9" * 7, "9" * 400, "1" * 5000])
def test_huge_hour_fields_are_a_parse_error_not_an_overflow(hours):
    # int() refuses > 4300 digits (ValueError); fewer still overflow a float (OverflowError).
    for timing in (f"{hours}:00:00.000 --> 00:01.000", f"00:01.000 --> {hours}:00:00.000"):
        with pytest.raises(VTTParseError) as info:
            parse_vtt(f"WEBVTT\n\n{timing}\nx\n", path="h.vtt")
        assert info.value.line == 3 and "malformed" in info.value.reason
        assert len(str(info.value)) < 300  # the 5000-digit token is cut short
    assert parse_vtt(f"WEBVTT\n\n{'9' * 6}:00:00.000 --> {'9' * 6}:00:00.001\nx")[0].start == 999999 * 3600


def test_dropped_lines_are_counted():
    doc = parse_vtt_document(
        "WEBVTT - title\nKind: captions\nLanguage: en\n\n"
        "NOTE\nthis comment\nspans lines\n\n"
        "STYLE\n::cue {}\n\nREGION\nid:r\n\n"
        "intro\n00:00.000 --> 00:01.000\n said\n\n"
        "NOTE\n00:01.000 --> 00:02.000\n also said\n"
    )
    assert [c.text for c in doc.cues] == [" said", " also said"]
    assert doc.header_lines == 2
    assert doc.identifiers == ((15, "intro"), (19, "NOTE"))  # "NOTE" right above a timing line is an identifier
    assert (doc.identifier_lines, doc.note_lines, doc.style_lines) == (2, 3, 4)
    # Every line is accounted for: header + metadata + blank + identifiers + blocks + cues.
    n_lines = 22
    payload = sum(c.text.count("\n") + 1 for c in doc.cues)
    assert 1 + doc.header_lines + doc.blank_lines + doc.identifier_lines + doc.note_lines \
        + doc.style_lines + len(doc.cues) + payload == n_lines


def test_oversized_file_is_refused_before_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(vtt, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.vtt"
    path.write_bytes(b"WEBVTT\n\n" + b"00:00.000 --> 00:01.000\nx\n\n" * 10)
    with pytest.raises(VTTParseError, match="larger than"):
        read_vtt_document(path)
