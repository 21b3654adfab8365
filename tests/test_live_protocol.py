"""realtime.live_protocol: the wire formats of live delivery, built and read in one place."""

from __future__ import annotations

import re

import orjson
import pytest
import redis

from realtime.live_protocol import (LUA_ADDRESSED, CloseCode, LiveClose, LiveEvent, ProtocolError, addressed,
                                    delete_frame, parse_auth_frame, parse_client_frame, probe_message, probe_nonce,
                                    ready_frame, tweet_frame, unaddress)

from .support import ROOT


def test_the_lua_scripts_and_python_address_a_message_alike_and_the_hub_reads_both(single_redis):
    client = redis.Redis.from_url(single_redis.url, decode_responses=True)
    try:
        event = tweet_frame({"id": "7", "from": "ann", "content": "a\nline break, escaped in JSON"})
        from_lua = client.eval(LUA_ADDRESSED + "return addressed(ARGV[1], ARGV[2])", 0, "ann bob", event)
    finally:
        client.close()
    assert from_lua == addressed(["ann", "bob"], event)
    assert unaddress(from_lua) == (["ann", "bob"], event)


def test_the_close_codes_are_the_ones_the_api_reference_lists():
    reference = (ROOT / "docs" / "API.md").read_text()
    paragraph = reference[reference.index("Close codes:"):][:600]
    documented = {int(code) for code in re.findall(r"\b(1\d{3}|4\d{3})\b", paragraph)}
    # 1008 is sent before the handshake completes (Origin refused): browsers see a failed connect.
    assert documented == set(CloseCode) - {CloseCode.POLICY}


@pytest.mark.parametrize("frame, since", [
    ({"type": "auth", "token": "t"}, None),
    ({"type": "auth", "token": "t", "since": "123"}, 123),
    ({"type": "auth", "token": "t", "since": 45}, 45),
    ({"type": "auth", "since": None}, None),
])
def test_an_auth_frame_gives_its_token_and_since(frame, since):
    auth = parse_auth_frame(frame)
    assert (auth.token, auth.since) == (frame.get("token"), since)


@pytest.mark.parametrize("text", [None, "not json", "[1]", '"auth"', '{"type": "ping"}', '{"type": "auth", "token": 5}',
                                  '{"type": "auth", "since": true}', '{"type": "auth", "since": -1}',
                                  '{"type": "auth", "since": "12a"}', '{"type": "auth", "since": "12345678901234567"}'])
def test_a_malformed_first_frame_closes_4400(text):
    with pytest.raises(ProtocolError) as refused:
        parse_auth_frame(parse_client_frame(text))
    assert isinstance(refused.value, LiveClose) and refused.value.code == CloseCode.MALFORMED == 4400


def test_frames_to_the_client_are_the_documented_json():
    assert orjson.loads(ready_frame("Ann", 3)) == {"type": "ready", "username": "Ann", "replayed": 3}
    assert orjson.loads(delete_frame(42)) == {"type": "delete", "id": "42"}
    tweet = {"id": "9", "retweet_id": "11", "timestamp": 1.5}
    event = LiveEvent.of_tweet(tweet)
    assert orjson.loads(event.frame) == {"type": "tweet", "tweet": tweet}
    assert (event.entry_id, event.posted_at, event.dedupe_key) == (11, 1.5, 11)
    assert LiveEvent.of_delete(42).dedupe_key == -42


def test_a_probe_names_no_recipient_and_an_event_is_no_probe():
    probe = probe_message("abc123")
    assert probe_nonce(probe) == "abc123"
    assert unaddress(probe)[0] == [""]  # no subscriber has an empty name
    assert probe_nonce(addressed(["ann"], delete_frame(1))) is None
