"""
What a uid may be, checked by one function wherever a uid enters: every auth
plugin, and every backend request that names uids.

A uid is shown to people (logs, admin pages, chat names) and compared by
code, so it must look like what it is.  Control characters (C0, DEL, C1) and
format characters (Unicode category Cf: the bidirectional overrides such as
RLO U+202E, the zero-width space, joiners and word joiner, the byte order
mark, the soft hyphen, tag characters) are refused, because they let
``admin\\u200b`` pass for ``admin`` or make ``txt.exe`` read as ``exe.txt``;
so are the line and paragraph separators U+2028/U+2029 and lone surrogates
(which cannot be encoded, so cannot reach a client or a store).  Refusing
the zero-width joiner also refuses emoji sequences built with it; single
emoji, and letters of every script, are fine.

The first-message path runs this for every connection, so it is one
precompiled regex search (and a set lookup for a character beyond the Basic
Multilingual Plane); the character's name is only looked up for the error.
"""

from __future__ import annotations

import re
import unicodedata

MAX_UID_LENGTH = 128

#: the Cc, Cf, Cs, Zl and Zp code points of Unicode 15 (tests/test_core_uids.py
#: checks this covers those of the running Python's C{unicodedata}): those
#: of the Basic Multilingual Plane as regex ranges, the few above it as a set
_REFUSED_BMP = (
    "\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
)
_REFUSED_ASTRAL = frozenset(
    chr(c)
    for first, last in [(0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3),
                        (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F)]  # fmt: skip
    for c in range(first, last + 1)
)
#: a refused character, or any above the BMP (emoji, mostly), which
#: L{_refused} then looks up in L{_REFUSED_ASTRAL}: one range instead of
#: seven keeps the search of every uid as fast as the old C0-only one
_SUSPECT = re.compile(f"[{_REFUSED_BMP}\U00010000-\U0010ffff]")
#: what L{parseUid} takes off either end
_FRAMING = " \t\r\n"


def _refused(uid: str, found: re.Match[str] | None) -> str | None:
    """
    The first character of C{uid}, from L{_SUSPECT}'s match C{found} on,
    that a uid must not hold, if any.
    """
    while found is not None:
        character = found.group()
        if character < "\U00010000" or character in _REFUSED_ASTRAL:
            return character
        found = _SUSPECT.search(uid, found.end())
    return None


def _describe(character: str) -> str:
    """
    Why C{character} makes a uid unusable, for the error a client or backend
    reads.
    """
    category = unicodedata.category(character)
    if category == "Cc":
        return "contains control characters"
    if category == "Cs":
        return "is not valid Unicode"
    name = unicodedata.name(character, "a format character")
    return f"contains U+{ord(character):04X} ({name}), which is invisible or reorders text"


def checkUid(uid: str, name: str = "uid") -> str:
    """
    C{uid} itself, if it is a usable uid: not empty, at most
    L{MAX_UID_LENGTH} characters, no control or format characters, and no
    whitespace at either end (a uid that differs from what is shown by an
    invisible space is as bad as one with a zero-width space).

    @param name: how the error names the uid (C{'"uid"'} for a JSON field).
    @raise ValueError: naming the first rule it breaks.
    """
    if not uid:
        raise ValueError(f"empty {name}")
    if len(uid) > MAX_UID_LENGTH:
        raise ValueError(f"{name} longer than {MAX_UID_LENGTH} characters")
    found = _SUSPECT.search(uid)
    if found is not None:
        character = _refused(uid, found)
        if character is not None:
            raise ValueError(f"{name} {_describe(character)}")
    if uid.strip() != uid:
        raise ValueError(f"{name} begins or ends with whitespace")
    return uid


def parseUid(text: str) -> str:
    """
    The uid in C{text}, a message a client typed or framed: the ASCII
    spaces, tabs and line ends around it removed (``ws.send(uid + "\\n")``),
    then L{checkUid}.  Other whitespace is not framing, so it is refused
    rather than silently dropped.

    @raise ValueError: as L{checkUid}.
    """
    return checkUid(text.strip(_FRAMING))
