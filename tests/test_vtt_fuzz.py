"""Property test for lexgpt.data.vtt: 10,000 generated documents, each then mutated.

1. Round trip: known cues, serialized with random valid variations (hours or not, BOM,
   LF/CRLF/CR, identifiers, settings, NOTE/STYLE/REGION blocks, header metadata, extra
   or whitespace-only blank lines, no final newline, control characters and NUL in the
   text, documents with no cue at all) parse back to exactly those cues, and to exactly
   the expected counts of header, identifier, NOTE and STYLE/REGION lines.
2. Mutation: after random byte edits (including hour fields of hundreds or thousands of
   digits, control characters, invalid UTF-8) the parser either raises VTTParseError
   (with the path and a line inside the document) or returns one cue per line containing
   "-->", and every line of the document is accounted for by a cue or a count: no line
   vanishes silently. Any other exception fails the test.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lexgpt.data.vtt import Cue, VTTParseError, parse_vtt_document

PATH = "fuzz.vtt"
# A small alphabet that still reaches the parser's edge cases: digits, ':', '.', '-', '>',
# spaces, tabs, a form feed, non-ASCII (incl. digits that isdigit() accepts), a BOM char,
# control characters (ESC, BEL, NUL, NEL) and a noncharacter (U+FFFF).
_ALPHABET = "abcXYZ019:.-> \t\f\u00e9\u00b2\u0661\u4e2d\U0001f600\ufeff\x1b\x07\x00\x85\uffff"
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


_BLOCK_KIND = {"NOTE": "note_lines", "STYLE": "style_lines", "REGION": "style_lines"}


@st.composite
def documents(draw):
    """(document bytes, the cues it must parse to, the counts it must report)."""
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [draw(st.sampled_from(["WEBVTT", "WEBVTT ", "WEBVTT - title", "WEBVTT\tx -> y"]))]
    counts = {"header_lines": 0, "note_lines": 0, "style_lines": 0}
    identifiers = []
    if draw(st.booleans()):
        meta = draw(st.lists(st.sampled_from(["Kind: captions", "Language: en", "X-TIMESTAMP-MAP=1"]), max_size=2))
        lines += meta
        counts["header_lines"] = len(meta)
    cues = []
    t = 0
    for _ in range(draw(st.integers(0, 6))):
        lines += draw(_BLANKS)
        open_block = None  # a block not yet ended by a blank line swallows the next line
        if draw(st.integers(0, 5)) == 0:
            block = draw(_EXTRA_BLOCK)
            lines += block
            counts[_BLOCK_KIND[block[0].split()[0]]] += len(block)
            open_block = _BLOCK_KIND[block[0].split()[0]]
            if draw(st.booleans()):  # spec: a timing line ends a NOTE block even without a blank
                lines += draw(_BLANKS)
                open_block = None
        if draw(st.booleans()):
            lines.append(draw(_IDENTIFIER))
            if open_block:
                counts[open_block] += 1
            else:
                identifiers.append((len(lines), lines[-1]))
        elif open_block and not lines[-2].strip(" \t"):  # a one-line block right above a timing line
            counts[open_block] -= 1  # is that cue's identifier (spec)
            identifiers.append((len(lines), lines[-1]))
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
        # The spec turns NUL into U+FFFD; everything else stays verbatim.
        cues.append(Cue(start / 1000, end / 1000, "\n".join(payload).replace("\0", "\ufffd"), len(lines)))
        lines += payload
    if draw(st.integers(0, 9)) == 0:  # a file with blocks after the cues (or only blocks)
        block = draw(_EXTRA_BLOCK)
        lines += ["", *block]
        counts[_BLOCK_KIND[block[0].split()[0]]] += len(block)
    if draw(st.booleans()):
        lines += draw(_BLANKS)
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    if draw(st.booleans()):
        text = "\ufeff" + text
    counts["identifiers"] = tuple((i, line.replace("\0", "\ufffd")) for i, line in identifiers)
    return text.encode("utf-8"), cues, counts


def _accounted_lines(doc) -> int:
    """Lines the parse explains: header, metadata, blanks, identifiers, blocks, timings, payloads."""
    payload = sum(c.text.count("\n") + 1 for c in doc.cues if c.text)
    return (1 + doc.header_lines + doc.blank_lines + doc.identifier_lines + doc.note_lines
            + doc.style_lines + len(doc.cues) + payload)


_MUTATION = st.tuples(
    st.sampled_from(["replace", "insert", "delete", "duplicate"]),
    st.integers(-1_000, 10_000),  # negative: anywhere, header included; else after it
    st.integers(1, 8),
    st.sampled_from(
        [b"-->", b"\n", b"\r", b"\r\n", b":", b".", b"0", b"9", b" ", b"\x00", b"NOTE ", b"\n\nNOTE\n"]
        + [b"\xff", b"\xc3", b"\xef\xbb\xbf"]  # invalid UTF-8, a lead byte cut short, a BOM
        + [b"\x1b", b"\xef\xbf\xbf", b"\xc2\x85"]  # ESC, U+FFFF, NEL
        + [b"9" * 400, b"1" * 5000]  # hour fields past float range / past int()'s digit limit
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
    data, expected, counts = doc
    parsed = parse_vtt_document(data, PATH)
    assert parsed.cues == expected
    assert parsed.identifiers == counts["identifiers"]
    assert (parsed.header_lines, parsed.note_lines, parsed.style_lines) == (
        counts["header_lines"], counts["note_lines"], counts["style_lines"])
    assert _accounted_lines(parsed) == len(_lines(data))

    mutated = _mutate(data, mutations)
    try:
        parsed = parse_vtt_document(mutated, PATH)
    except VTTParseError as err:
        assert err.path == PATH
        assert err.line is not None
        n_lines = mutated.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        assert 1 <= err.line <= n_lines
        return
    # Parsed: every line holding "-->" (after the header line) must have become a cue,
    # and every other line must be counted as something.
    lines = _lines(mutated)
    cues = parsed.cues
    assert [c.line for c in cues] == [i + 1 for i, line in enumerate(lines) if i > 0 and "-->" in line]
    assert _accounted_lines(parsed) == len(lines)
    for c in cues:
        assert 0 <= c.start <= c.end
        assert "-->" not in c.text
