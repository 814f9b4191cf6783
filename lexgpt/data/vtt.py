"""WebVTT parsing: bytes in, a list of cues out, or an error that names file and line.

>>> cues = parse_vtt("WEBVTT\\n\\n00:01.000 --> 00:02.500\\n Hello there.\\n")
>>> cues
[Cue(start=1.0, end=2.5, text=' Hello there.', line=3)]
>>> doc = parse_vtt_document("WEBVTT\\n\\nNOTE a comment\\n\\n7\\n00:01.000 --> 00:02.500\\n Hi\\n")
>>> doc.cues, doc.identifiers, doc.note_lines
([Cue(start=1.0, end=2.5, text=' Hi', line=6)], ((5, '7'),), 1)
>>> parse_vtt("00:01.000 --> 00:02.500\\n", path="ep.vtt")
Traceback (most recent call last):
...
lexgpt.data.vtt.VTTParseError: ep.vtt:1: missing 'WEBVTT' header (file starts with '00:01.000 --> 00:02.500')

Follows the W3C WebVTT parser (https://www.w3.org/TR/webvtt1/#file-parsing) with
these deliberate differences, all in one direction: where the spec would quietly skip
something that may hold transcript text, we raise instead, because a silently lost cue
is the worst thing this module can do.

- A timing line that does not parse raises (the spec drops the whole cue).
- A block of text with no timing line raises (the spec drops it), except NOTE,
  STYLE and REGION blocks, which are skipped anywhere in the file.
- End before start raises unless ``allow_backwards=True`` (the spec keeps it).
  Zero-length cues (end == start) are fine.
- Settings must be separated from the end timestamp by whitespace and must not
  contain ``-->``; they are validated no further and not returned.
- A line of only spaces/tabs counts as blank (the spec would glue it to the cue
  text); it is invisible in an editor, so it must not change what a file means.

- An hours field longer than ``MAX_HOUR_DIGITS`` digits and a file larger than
  ``MAX_FILE_BYTES`` raise (bounded work; the spec sets no limit).

What the spec drops and we keep count of (:class:`VTTDocument`): header metadata
lines, cue identifiers (with their text and line: a transcript line that sits above
a timing line after a blank line *is* an identifier, so it must stay visible), and the
lines of NOTE and STYLE/REGION blocks. Every line of a parsed file is exactly one of:
header, header metadata, blank, identifier, note, style, timing or payload.

Kept as in the spec: a UTF-8 BOM is dropped; CRLF and lone CR are line breaks; NUL
becomes U+FFFD; a line containing ``-->`` always starts a new cue, even without a
blank line before it; a cue with an empty payload is kept with ``text == ""``.
Cue text is returned verbatim (multi-line payloads joined with ``"\\n"``, no stripping:
Whisper's leading space is data, and cleaning is a later, separate step).

Why hand-written rather than ``webvtt-py``: that library matches timestamps with a
regex looser than the spec (it takes ``00:01,000``), strips trailing whitespace from
text, and its ``MalformedCaptionError`` names no line; we need spec-exact, lossless
parsing with file:line errors. A plain string-operations loop is also fast: the 802k
Lexicap cues parse in ~2.6 s on one core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lexgpt.infra.stable_read import UnreadableFileError, read_regular_file

# Lexicap's longest episode is under 5 hours and its largest file ~1 MB; these bounds
# only stop hostile input from costing unbounded time or memory.
MAX_HOUR_DIGITS = 6
MAX_FILE_BYTES = 64 << 20

_WS = " \t\f"  # the spec's whitespace, minus the line breaks already split away
_BOM = "\ufeff"


class VTTParseError(ValueError):
    """A VTT file could not be parsed; ``str(err)`` is ``"{path}:{line}: {reason}"``."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        super().__init__(path, line, reason)
        self.path = path
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Cue:
    """One cue: times in seconds, payload text, and the 1-based line of its timing line."""

    start: float
    end: float
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class VTTDocument:
    """A parsed file: its cues, and a count of every line the cues do not hold.

    ``identifiers`` are ``(line, text)`` pairs; ``note_lines`` and ``style_lines`` count
    every line of NOTE and of STYLE/REGION blocks, keyword line included.
    """

    cues: list[Cue]
    header_lines: int = 0
    identifiers: tuple[tuple[int, str], ...] = ()
    note_lines: int = 0
    style_lines: int = 0
    blank_lines: int = 0

    @property
    def identifier_lines(self) -> int:
        return len(self.identifiers)


def _show(line: str) -> str:
    """A line for an error message, cut short: a corrupt file may have no line breaks."""
    return repr(line) if len(line) <= 80 else repr(line[:80]) + "..."


def _is_blank(line: str) -> bool:
    return not line or not line.strip(" \t")


def _timestamp_ms(tok: str) -> int | None:
    """``"01:02.345"`` or ``"1:01:02.345"`` -> milliseconds; None if malformed.

    Per spec: minutes and seconds are exactly two digits (<= 59), the fraction exactly
    three, hours one or more digits. A two-part stamp whose first part is not two
    digits <= 59 would be hours without minutes, hence malformed.

    >>> _timestamp_ms("01:02.345"), _timestamp_ms("1:00:00.000"), _timestamp_ms("01:02.34")
    (62345, 3600000, None)
    """
    n = len(tok)
    if n == 9 and tok[2] == ":" and tok[5] == ".":  # mm:ss.ttt, most Lexicap stamps
        hh, mm, ss, frac = "0", tok[:2], tok[3:5], tok[6:]
    else:
        head, dot, frac = tok.rpartition(".")
        parts = head.split(":")
        if not dot or len(frac) != 3 or not 2 <= len(parts) <= 3:
            return None
        hh, mm, ss = parts if len(parts) == 3 else ("0", *parts)
        if not hh or len(hh) > MAX_HOUR_DIGITS or len(mm) != 2 or len(ss) != 2:
            return None
    digits = hh + mm + ss + frac
    # isdigit alone accepts non-ASCII digits such as "²" or "٣", which int() would take.
    if not (digits.isascii() and digits.isdigit()):
        return None
    m, s = int(mm), int(ss)
    if m > 59 or s > 59:
        return None
    return ((int(hh) * 60 + m) * 60 + s) * 1000 + int(frac)


def _parse_timing(line: str, lineno: int, path: str, allow_backwards: bool) -> tuple[float, float]:
    arrow = line.find("-->")
    start_tok = line[:arrow].strip(_WS)
    rest = line[arrow + 3 :].lstrip(_WS)
    end_tok = rest
    for sep in _WS:
        k = end_tok.find(sep)
        if k >= 0:
            end_tok = end_tok[:k]
    settings = rest[len(end_tok) :]

    start = _timestamp_ms(start_tok)
    if start is None:
        raise VTTParseError(path, lineno, f"malformed start timestamp {_show(start_tok)} in {_show(line)}")
    end = _timestamp_ms(end_tok)
    if end is None:
        raise VTTParseError(path, lineno, f"malformed end timestamp {_show(end_tok)} in {_show(line)}")
    if "-->" in settings:
        raise VTTParseError(path, lineno, f"more than one '-->' in timing line {_show(line)}")
    if end < start and not allow_backwards:
        raise VTTParseError(path, lineno, f"cue ends before it starts: {_show(line)}")
    # Integer milliseconds divided once: 4200 / 1000 == float("4.2") exactly.
    return start / 1000, end / 1000


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        prefix = data[: err.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line = prefix.count(b"\n") + 1
        raise VTTParseError(
            path, line, f"not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start}"
        ) from None


def _non_cue_block(line: str) -> str | None:
    """``"NOTE"``, ``"STYLE"`` or ``"REGION"`` if ``line`` opens such a block (the word
    alone or followed by a space or tab), else None."""
    for word in ("NOTE", "STYLE", "REGION"):
        if line.startswith(word) and (len(line) == len(word) or line[len(word)] in " \t"):
            return word
    return None


def parse_vtt(data: bytes | str, path: str = "<string>", *, allow_backwards: bool = False) -> list[Cue]:
    """Parse a WebVTT document into cues, in file order. Raises VTTParseError.

    ``path`` only labels errors. ``allow_backwards`` keeps cues whose end is before their
    start (the real Lexicap data has two) instead of raising.
    """
    return parse_vtt_document(data, path, allow_backwards=allow_backwards).cues


def parse_vtt_document(
    data: bytes | str, path: str = "<string>", *, allow_backwards: bool = False
) -> VTTDocument:
    """Like :func:`parse_vtt`, but also counts what is not a cue (see VTTDocument)."""
    text = data if isinstance(data, str) else _decode(bytes(data), path)
    if text.startswith(_BOM):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\0" in text:
        text = text.replace("\0", "\ufffd")
    if not text:
        raise VTTParseError(path, 1, "empty file (expected a 'WEBVTT' header)")

    lines = text.split("\n")
    n = len(lines)
    first = lines[0]
    if not (first == "WEBVTT" or first.startswith(("WEBVTT ", "WEBVTT\t"))):
        raise VTTParseError(path, 1, f"missing 'WEBVTT' header (file starts with {_show(first)})")

    # Header metadata runs to the first blank line; a timing line also ends it (spec).
    i = 1
    while i < n and not _is_blank(lines[i]) and "-->" not in lines[i]:
        i += 1
    header_lines = i - 1

    cues: list[Cue] = []
    append = cues.append
    identifiers: list[tuple[int, str]] = []
    skipped = {"NOTE": 0, "STYLE": 0, "REGION": 0}
    blank = 0
    while i < n:
        line = lines[i]
        if "-->" in line:
            timing = i
        elif _is_blank(line):
            blank += 1
            i += 1
            continue
        elif i + 1 < n and "-->" in lines[i + 1]:
            timing = i + 1  # line i is the cue identifier: dropped by the spec, kept here
            identifiers.append((i + 1, line))
        elif word := _non_cue_block(line):
            block_start = i
            i += 1
            while i < n and not _is_blank(lines[i]) and "-->" not in lines[i]:
                i += 1
            skipped[word] += i - block_start
            continue
        else:
            raise VTTParseError(
                path, i + 1, f"text without a cue timing line (would be lost): {_show(line)}"
            )

        start, end = _parse_timing(lines[timing], timing + 1, path, allow_backwards)
        i = first_payload = timing + 1
        while i < n and "-->" not in lines[i] and not _is_blank(lines[i]):
            i += 1
        if i == first_payload + 1:
            payload = lines[first_payload]  # the common single-line cue, without a join
        else:
            payload = "\n".join(lines[first_payload:i])
        append(Cue(start, end, payload, timing + 1))
    return VTTDocument(
        cues,
        header_lines=header_lines,
        identifiers=tuple(identifiers),
        note_lines=skipped["NOTE"],
        style_lines=skipped["STYLE"] + skipped["REGION"],
        blank_lines=blank,
    )


def read_vtt(path: str | os.PathLike[str], *, allow_backwards: bool = False) -> list[Cue]:
    """Read and parse one VTT file; errors name ``path``."""
    return read_vtt_document(path, allow_backwards=allow_backwards).cues


def read_vtt_document(path: str | os.PathLike[str], *, allow_backwards: bool = False) -> VTTDocument:
    """Read and parse one VTT file, counting what is not a cue; errors name ``path``.

    A file over ``MAX_FILE_BYTES`` is refused before it is read, and so is anything but a
    regular file (a FIFO would block the read forever); see ``stable_read``.
    """
    try:
        data = read_regular_file(path, MAX_FILE_BYTES, "caption file")
    except UnreadableFileError as err:
        raise VTTParseError(err.path, None, err.reason) from None
    return parse_vtt_document(data, os.fspath(path), allow_backwards=allow_backwards)
