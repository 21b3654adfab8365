"""What a tweet and a username may contain, and what a tweet mentions and tags."""

from __future__ import annotations

import re
import unicodedata

from .errors import BadRequest, Unprocessable

__all__ = [
    "MAX_TWEET_LENGTH", "MAX_DISPLAY_NAME", "MAX_BIO", "normalize_username", "check_username",
    "clean_content", "parse_mentions", "parse_hashtags", "clean_profile_field",
]

MAX_TWEET_LENGTH = 280
MAX_DISPLAY_NAME = 50
MAX_BIO = 160

USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")
# "# or @ followed by [A-Za-z0-9_]+, not preceded by a word character" (API.md).
_MENTION = re.compile(r"(?<!\w)@([A-Za-z0-9_]+)")
_HASHTAG = re.compile(r"(?<!\w)#([A-Za-z0-9_]+)")


def check_username(name: object) -> str:
    """``name`` as chosen, or 422 when it is not a valid username."""
    if name is None:
        raise BadRequest("username is required.", code="missing_field")
    if not isinstance(name, str):
        raise BadRequest("username must be a string.", code="wrong_type")
    if not USERNAME.fullmatch(name):
        raise Unprocessable("A username is 1 to 15 letters, digits or underscores.", code="invalid_username")
    return name


def normalize_username(name: str) -> str:
    """The key form of a username: unique case-insensitively."""
    return name.lower()


def clean_content(content: object) -> str:
    """Tweet text, NFC-normalized and stripped, 1..280 code points, or 400/422."""
    if content is None:
        raise BadRequest("content is required.", code="missing_field")
    if not isinstance(content, str):
        raise BadRequest("content must be a string.", code="wrong_type")
    text = unicodedata.normalize("NFC", content).strip()
    if not any(map(_visible, text)):
        raise Unprocessable("A tweet cannot be empty (nor only invisible characters).", code="empty_tweet")
    if len(text) > MAX_TWEET_LENGTH:
        raise Unprocessable(
            f"A tweet is at most {MAX_TWEET_LENGTH} characters; this one has {len(text)}.", code="tweet_too_long"
        )
    return text


#: Letters and symbols that draw nothing: the Hangul fillers, the blank Braille pattern,
#: the Khmer inherent vowels. (Spaces, controls, format characters such as zero-width space,
#: joiners and the BOM, and lone combining marks are caught by their category.)
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def _visible(char: str) -> bool:
    return char not in _BLANK and unicodedata.category(char) not in _INVISIBLE_CATEGORIES


def clean_profile_field(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string.", code="wrong_type")
    text = unicodedata.normalize("NFC", value).strip()
    if len(text) > limit:
        raise Unprocessable(f"{field} is at most {limit} characters.", code=f"{field}_too_long")
    return text


def _unique_lower(matches: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for match in matches:
        seen.setdefault(match.lower(), None)
    return list(seen)


def parse_mentions(text: str) -> list[str]:
    """Lowercase names mentioned, in order of first appearance, that could be usernames."""
    return [name for name in _unique_lower(_MENTION.findall(text)) if len(name) <= 15]


def parse_hashtags(text: str) -> list[str]:
    """Lowercase tags without their '#', in order of first appearance."""
    return [tag for tag in _unique_lower(_HASHTAG.findall(text)) if len(tag) <= 100]
