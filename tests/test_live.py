"""Live delivery over /ws: real uvicorn processes, real websockets clients, a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from realtime.config import WS_IMPLEMENTATIONS

from .support import Api, LiveClient, ServiceProcess, async_metric, eventually


async def test_a_follower_receives_a_tweet_live(api, service):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    async with LiveClient(service.url, bob.token) as live:
        assert live.ready == {"type": "ready", "username": bob.username, "replayed": 0}
        tweet_id = await alice.aio.post_tweet("live!")
        frame = await live.next_frame(timeout=1.0)
    assert frame["type"] == "tweet"
    assert frame["tweet"]["id"] == tweet_id and frame["tweet"]["from"] == alice.username


async def test_no_follower_no_delivery_and_unfollow_stops_delivery(api, service, fanout_idle):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    async with LiveClient(service.url, bob.token) as live:
        first = await alice.aio.post_tweet("you follow me")
        assert await live.next_tweet_id() == first
        assert (await bob.aio.request("DELETE", f"/users/{alice.username}/follow")).status_code == 204
        await alice.aio.post_tweet("you no longer follow me")
        await fanout_idle.wait()
        # Bob's own tweet enters his timeline after that fan-out finished: if the unfollowed
        # tweet had been published to bob, it would have arrived first.
        sentinel = await bob.aio.post_tweet("sentinel")
        assert await live.next_tweet_id() == sentinel


async def test_a_mention_delivers_to_a_non_follower(api, service):
    alice, carol = await api.aio_sign_in(), await api.aio_sign_in()
    async with LiveClient(service.url, carol.token) as live:
        tweet_id = await alice.aio.post_tweet(f"hey @{carol.username}")
        assert await live.next_tweet_id() == tweet_id


async def test_a_delete_reaches_live_followers_as_a_delete_event(api, service):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    async with LiveClient(service.url, bob.token) as live:
        tweet_id = await alice.aio.post_tweet("oops")
        assert await live.next_tweet_id() == tweet_id
        await alice.aio.delete_tweet(tweet_id)
        assert await live.next_frame() == {"type": "delete", "id": tweet_id}


async def test_reconnecting_with_since_replays_exactly_what_was_missed_oldest_first(api, service, fanout_idle):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    async with LiveClient(service.url, bob.token) as live:
        seen = await alice.aio.post_tweet("seen live")
        assert await live.next_tweet_id() == seen
    missed = [await alice.aio.post_tweet(f"missed {n}") for n in range(5)]
    await fanout_idle.wait()
    async with LiveClient(service.url, bob.token, since=seen) as again:
        assert [f["tweet"]["id"] for f in again.replayed] == missed
        assert again.ready["replayed"] == 5
        later = await alice.aio.post_tweet("after the replay")
        assert await again.next_tweet_id() == later


async def test_a_delete_made_while_offline_is_replayed_after_reconnecting_with_since(api, service, fanout_idle):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    async with LiveClient(service.url, bob.token) as live:
        held = [await alice.aio.post_tweet(f"held {n}") for n in range(3)]
        assert [await live.next_tweet_id() for _ in held] == held
    await alice.aio.delete_tweet(held[0])
    await alice.aio.delete_tweet(held[2])  # `since` itself
    missed = await alice.aio.post_tweet("missed")
    await fanout_idle.wait()
    async with LiveClient(service.url, bob.token, since=held[2]) as again:
        assert again.replayed == [
            {"type": "tweet", "tweet": again.replayed[0]["tweet"]},
            {"type": "delete", "id": held[0]}, {"type": "delete", "id": held[2]}]
        assert again.replayed[0]["tweet"]["id"] == missed and again.ready["replayed"] == 3
        later = await alice.aio.post_tweet("after the replay")
        assert await again.next_tweet_id() == later  # and no delete again on the way


async def test_deletes_from_before_since_arrived_are_not_replayed(api, service, fanout_idle):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    early = await alice.aio.post_tweet("deleted before bob saw anything newer")
    await alice.aio.delete_tweet(early)
    seen = await alice.aio.post_tweet("seen")
    await fanout_idle.wait()
    async with LiveClient(service.url, bob.token, since=seen) as again:
        assert again.replayed == [] and again.ready["replayed"] == 0
    async with LiveClient(service.url, bob.token) as fresh:  # holds nothing: no deletes at all
        assert [frame["type"] for frame in fresh.replayed] == ["tweet"]


async def test_posting_continuously_while_a_client_connects_shows_no_gap_and_no_duplicate(api, service, fanout_idle):
    alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
    await bob.aio.follow(alice)
    posted: list[str] = []
    stop = asyncio.Event()

    async def post_continuously():
        for n in range(400):  # bounded
            if stop.is_set():
                break
            posted.append(await alice.aio.post_tweet(f"stream {n}"))

    deferred_before = await async_metric(service.url, "chirp_socket_writes_deferred_total")
    poster = asyncio.create_task(post_continuously())
    while len(posted) < 20:
        await asyncio.sleep(0.01)  # let the stream get going before connecting mid-stream
    live = await LiveClient(service.url, bob.token, since=posted[5]).connect()
    received = [f["tweet"]["id"] for f in live.replayed]
    while len(posted) < len(received) + 30:
        await asyncio.sleep(0.01)
    stop.set()
    await poster
    await fanout_idle.wait()
    expected = posted[6:]
    while len(received) < len(expected):
        received.append(await live.next_tweet_id())
    await live.socket.close()
    assert received == expected  # every tweet after `since`, once, in order
    # A client that keeps reading never makes uvicorn's send wait: every frame went inline.
    assert await async_metric(service.url, "chirp_socket_writes_deferred_total") == deferred_before


async def test_one_users_several_sockets_on_two_processes_all_receive(api, service, redis_server, tmp_path):
    from .support import ServiceProcess

    second = ServiceProcess(redis_server.url).start(tmp_path)
    try:
        alice = await api.aio_sign_in()
        bob = await api.aio_sign_in()
        await bob.aio.follow(alice)
        other = Api(second.url)
        bob_token_2 = (await other.aio_sign_in(bob.username)).token
        async with LiveClient(service.url, bob.token) as on_first, \
                LiveClient(second.url, bob.token) as on_second, \
                LiveClient(second.url, bob_token_2) as another_tab:
            via_second = await (await other.aio_sign_in(alice.username)).aio.post_tweet("through the other process")
            for socket in (on_first, on_second, another_tab):
                assert await socket.next_tweet_id() == via_second
        await other.aclose()
    finally:
        second.stop()


async def test_close_codes_for_bad_auth_frames(api, service):
    bob = await api.aio_sign_in()
    cases = [
        ("not json", 4400),
        ('["auth"]', 4400),
        ('{"type": "hello"}', 4400),
        ('{"type": "auth", "token": 42}', 4400),
        ('{"type": "auth", "token": "%s", "since": "yesterday"}' % bob.token, 4400),
        ('{"type": "auth", "token": "not-a-token"}', 4401),
        ('{"type": "auth", "token": null}', 4401),
        ('{"type": "auth"}', 4401),
    ]
    for frame, code in cases:
        client = await LiveClient(service.url, None).connect(auth=False)
        await client.socket.send(frame)
        assert await client.close_code() == code, frame


async def test_no_auth_frame_in_time_closes_4408(service):
    client = await LiveClient(service.url, None).connect(auth=False)
    assert await client.close_code() == 4408


async def test_a_malformed_frame_after_auth_closes_4400_and_ping_gets_pong(api, service):
    bob = await api.aio_sign_in()
    async with LiveClient(service.url, bob.token) as live:
        await live.send({"type": "ping"})
        assert await live.next_frame() == {"type": "pong"}
        await live.socket.send("{{{")
        assert await live.close_code() == 4400


async def test_signing_out_closes_that_sessions_sockets_with_4401_and_not_the_others(api, service):
    bob = await api.aio_sign_in()
    other_session = await api.aio_sign_in(bob.username)
    async with LiveClient(service.url, bob.token) as doomed, LiveClient(service.url, other_session.token) as kept:
        assert (await bob.aio.request("POST", "/auth/signout")).status_code == 204
        assert await doomed.close_code() == 4401
        tweet_id = await other_session.aio.post_tweet("still here")
        assert await kept.next_tweet_id() == tweet_id


async def test_a_session_that_expires_while_connected_closes_4401(api, service, redis_server):
    from realtime.sessions import Sessions
    from realtime.text import normalize_username

    bob = await api.aio_sign_in()
    client = await redis_server.async_client()
    token = await Sessions(client).create(normalize_username(bob.username), time.time() + 1.0)
    await client.aclose()
    async with LiveClient(service.url, token) as live:
        assert await live.close_code() == 4401


async def test_a_foreign_origin_is_refused(api, service):
    bob = await api.aio_sign_in()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await LiveClient(service.url, bob.token, origin="https://evil.example").connect()
    assert refused.value.response.status_code == 403
    same = f"http://127.0.0.1:{service.port}"
    async with LiveClient(service.url, bob.token, origin=same) as live:
        assert live.ready["username"] == bob.username


@pytest.mark.parametrize("ws_impl", WS_IMPLEMENTATIONS)
async def test_every_websocket_implementation_offered_speaks_the_whole_protocol(single_redis, tmp_path, ws_impl):
    """WS_IMPL picks uvicorn's WebSocket implementation: each value offered replays, delivers
    live, answers pings, sends frames through the raw-send path and closes 4400 on a bad frame."""
    service = ServiceProcess(single_redis.url, ws_impl=ws_impl).start(tmp_path)
    try:
        api = Api(service.url)
        alice, bob = await api.aio_sign_in(), await api.aio_sign_in()
        await bob.aio.follow(alice)
        before = await alice.aio.post_tweet("before the socket")

        async def in_bobs_home() -> bool:  # its fan-out done: the connect replays it, not live
            return before in [t["id"] for t in (await bob.aio.request("GET", "/timelines/home")).json()["tweets"]]

        await eventually(in_bobs_home, what="the tweet to reach bob's home timeline")
        async with LiveClient(service.url, bob.token) as live:
            assert [frame["tweet"]["id"] for frame in live.replayed] == [before]
            live_id = await alice.aio.post_tweet(f"live over {ws_impl}")
            assert await live.next_tweet_id() == live_id
            await live.send({"type": "ping"})
            assert await live.next_frame() == {"type": "pong"}
            await live.send({"type": "auth", "token": bob.token})  # only the first frame may be one
            assert await live.close_code() == 4400
        await api.aclose()
    finally:
        service.stop()
