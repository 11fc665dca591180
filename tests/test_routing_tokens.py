"""Consistency tokens: opaque, versioned, round-trip exactly, and reject anything else with one error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing import InvalidTokenError, decode_token, encode_token
from routing.tokens import MAX_LSN


@given(st.integers(min_value=0, max_value=MAX_LSN))
def test_round_trip(lsn: int) -> None:
    token = encode_token(lsn)
    assert token.startswith("v2.")
    assert decode_token(token) == lsn


@given(st.one_of(st.text(), st.from_regex(r"v[12]\.[A-Za-z0-9_=+/-]{0,40}", fullmatch=True)))
def test_any_string_decodes_or_raises_invalid_token(text: str) -> None:
    try:
        lsn = decode_token(text)
    except InvalidTokenError:
        return
    assert encode_token(lsn) == text  # only tokens we issue decode


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "v1.",
        "v2.",
        "v1.AAAAAAAAAAA",  # the unsigned format of earlier versions
        "v1.__________8",  # a far-future LSN, unsigned
        "v2." + "A" * 32,  # well-formed, wrong signature
        "v2." + "A" * 31,
        "v1.AAAAAAAAAA",  # too short
        "v1.AAAAAAAAAAAA",  # too long
        "v1.AAAAAAAAAAA=",  # padding is not ours
        "v1.AAAAAAAAAAB",  # non-zero spare bits: a second spelling of another token
        "v1.AAAAAAAAAA+",  # standard, not url-safe, alphabet
        "v1.AAAAAAAAAAA\n",
        "V1.AAAAAAAAAAA",
        "v1.AAAAAAAAAA\u00e9",
        "v1.AAAAAAAAA\u0661\u0662",  # Unicode digits are not base64
        None,
        123,
    ],
)
def test_malformed_tokens(bad: object) -> None:
    with pytest.raises(InvalidTokenError):
        decode_token(bad)  # type: ignore[arg-type]
    assert issubclass(InvalidTokenError, ValueError)


@pytest.mark.parametrize("bad", [-1, MAX_LSN + 1, True, 1.5])
def test_encode_rejects_non_lsns(bad: object) -> None:
    with pytest.raises(ValueError):
        encode_token(bad)  # type: ignore[arg-type]


def test_a_token_is_only_valid_under_its_key() -> None:
    from routing import TokenCodec

    mine, theirs = TokenCodec(b"k" * 32), TokenCodec(b"x" * 32)
    token = mine.encode(123_456)
    assert mine.decode(token) == 123_456
    with pytest.raises(InvalidTokenError):
        theirs.decode(token)
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidTokenError):
        mine.decode(forged)
