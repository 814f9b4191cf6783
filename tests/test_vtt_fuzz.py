"""Property test for lexgpt.vtt: 10,000 generated documents, each then mutated.

1. Round trip: known cues, serialized with random valid variations (hours or not, BOM,
   LF/CRLF/CR, identifiers, settings, NOTE/STYLE/REGION blocks, header metadata, extra
   or whitespace-only blank lines, no final newline) parse back to exactly those cues.
2. Mutation: after random byte edits the parser either raises VTTParseError (with the
   path and a line inside the document) or returns one cue per line containing "-->",
   i.e. no cue vanishes silently. Any other exception fails the test.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lexgpt.vtt import Cue, VTTParseError, parse_vtt

PATH = "fuzz.vtt"
# A small alphabet that still reaches the parser's edge cases: digits, ':', '.', '-', '>',
# spaces, tabs, a form feed, non-ASCII (incl. digits that isdigit() accepts), a BOM char.
_ALPHABET = "abcXYZ019:.-> \t\f\u00e9\u00b2\u0661\u4e2d\U0001f600\ufeff"
_LINE = (
    st.text(_ALPHABET, min_size=1, max_size=12)
    .map(lambda s: s.replace("-->", "->"))
    .filter(lambda s: "-->" not in s and s.strip(" \t") != "")  # "---->" -> "--->" still has one
)


def _stamp(ms: int, style: int) -> str:
    """style 0: mm:ss.ttt (if it fits), 1: h:mm:ss.ttt, 2: hh:mm:ss.ttt, 3: hhh:mm:ss.ttt."""
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, t = divmod(rest, 1000)
    if style == 0 and h == 0:
        return f"{m:02d}:{s:02d}.{t:03d}"
    width = max(style, 1)
    return f"{h:0{width}d}:{m:02d}:{s:02d}.{t:03d}"


# Per spec a "NOTE" line directly above a timing line is that cue's identifier, not a comment.
_IDENTIFIER = st.one_of(_LINE, st.sampled_from(["1", "NOTE", "NOTE 7", "STYLE", "REGION", "WEBVTT"]))
_WS = st.sampled_from([" ", "\t", "  ", " \t", ""])
_BLANKS = st.lists(st.sampled_from(["", "", "", " ", "\t ", "   "]), min_size=1, max_size=3).map(
    lambda xs: ["", *xs[1:]]  # at least one truly empty line, then maybe whitespace-only ones
)
_EXTRA_BLOCK = st.sampled_from(
    [
        ["NOTE"],
        ["NOTE a comment"],
        ["NOTE\twith tab", "second line", "NOTE again"],
        ["STYLE", "::cue { color: red }"],
        ["REGION", "id:r1 width:40%"],
    ]
)


@st.composite
def documents(draw):
    """(document bytes, the cues it must parse to)."""
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [draw(st.sampled_from(["WEBVTT", "WEBVTT ", "WEBVTT - title", "WEBVTT\tx -> y"]))]
    if draw(st.booleans()):
        lines += draw(st.lists(st.sampled_from(["Kind: captions", "Language: en", "X-TIMESTAMP-MAP=1"]), max_size=2))
    cues = []
    t = 0
    for _ in range(draw(st.integers(0, 6))):
        lines += draw(_BLANKS)
        if draw(st.integers(0, 5)) == 0:
            lines += draw(_EXTRA_BLOCK)
            if draw(st.booleans()):  # spec: a timing line ends a NOTE block even without a blank
                lines += draw(_BLANKS)
        if draw(st.booleans()):
            lines.append(draw(_IDENTIFIER))
        t += draw(st.integers(0, 4_000_000))
        start, end = t, t + draw(st.integers(0, 5_000_000))
        if draw(st.integers(0, 50)) == 0:
            start, end = start + 400_000_000, end + 400_000_000  # a 3-digit hour
        timing = (
            draw(st.sampled_from(["", " "]))
            + _stamp(start, draw(st.integers(0, 3)))
            + draw(_WS) + "-->" + draw(_WS)
            + _stamp(end, draw(st.integers(0, 3)))
        )
        if draw(st.booleans()):
            timing += draw(st.sampled_from([" ", "\t"]))
            timing += draw(st.sampled_from(["align:start", "line:0 position:10%", ""]))
        timing += draw(st.sampled_from(["", "", " ", "\t"]))
        lines.append(timing)
        payload = draw(st.lists(_LINE, max_size=3))
        cues.append(Cue(start / 1000, end / 1000, "\n".join(payload), len(lines)))
        lines += payload
    if draw(st.booleans()):
        lines += draw(_BLANKS)
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text.encode("utf-8"), cues


_MUTATION = st.tuples(
    st.sampled_from(["replace", "insert", "delete", "duplicate"]),
    st.integers(-1_000, 10_000),  # negative: anywhere, header included; else after it
    st.integers(1, 8),
    st.sampled_from(
        [b"-->", b"\n", b"\r", b"\r\n", b":", b".", b"0", b"9", b" ", b"\x00", b"NOTE "]
        + [b"\xff", b"\xc3", b"\xef\xbb\xbf"]  # invalid UTF-8, a lead byte cut short, a BOM
    ),
)


def _mutate(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for op, pos, size, chunk in mutations:
        # Mostly spare the first 8 bytes: a broken "WEBVTT" ends the parse before the cues.
        pos = -pos % (len(buf) + 1) if pos < 0 else min(8 + pos % (len(buf) + 1), len(buf))
        if op == "replace":
            buf[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            buf[pos:pos] = chunk
        elif op == "delete":
            del buf[pos : pos + size]
        else:
            buf[pos:pos] = buf[pos : pos + size]
    return bytes(buf)


def _lines(data: bytes) -> list[str]:
    text = data.decode("utf-8").removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


@pytest.mark.slow  # ~45 s of CPU; CI runs it (make test-slow / test-all)
@pytest.mark.timeout(300)  # a hang fails instead of blocking the suite
@settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(doc=documents(), mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_parse_roundtrip_then_mutations(doc, mutations):
    data, expected = doc
    assert parse_vtt(data, PATH) == expected

    mutated = _mutate(data, mutations)
    try:
        cues = parse_vtt(mutated, PATH)
    except VTTParseError as err:
        assert err.path == PATH
        assert err.line is not None
        n_lines = mutated.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        assert 1 <= err.line <= n_lines
        return
    # Parsed: every line holding "-->" (after the header line) must have become a cue.
    lines = _lines(mutated)
    assert [c.line for c in cues] == [i + 1 for i, line in enumerate(lines) if i > 0 and "-->" in line]
    for c in cues:
        assert 0 <= c.start <= c.end
        assert "-->" not in c.text
