"""The channel layer across a Redis restart, on a Redis of the test's own: each channel of
the process is told once the subscription is back, and channels tried during the outage
leave nothing behind."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.channel_layer import NotifyingRedisPubSubChannelLayer
from tests.throwaway import ThrowawayRedis

pytestmark = pytest.mark.multiprocess
WAIT = 30  # seconds: generous; redis-py reconnects about a second after Redis is back


async def test_redis_restart__every_channel_told_after_resubscribing__then_events_flow():
    redis = ThrowawayRedis()
    redis.start()
    layer = NotifyingRedisPubSubChannelLayer(
        hosts=[{"address": redis.url, "socket_connect_timeout": 2}],
        on_reconnect="layer.reconnected",
    )
    try:
        dashboard, long_poll = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("agent.a", dashboard)
        await asyncio.to_thread(redis.stop)
        # A subscription is only written to the socket, so one asked for before the layer
        # has noticed the outage still succeeds (and is re-subscribed like the others)
        before_noticed = []
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    before_noticed.append(await layer.new_channel())
                except RedisConnectionError:
                    break
                await asyncio.sleep(0.1)  # the layer notices at its next read
        # Channels asked for during the outage fail, and keep no queue nobody would read
        for _ in range(3):
            with pytest.raises(RedisConnectionError):
                await layer.new_channel()
        assert set(layer._get_layer().channels) == {dashboard, long_poll, *before_noticed}
        await asyncio.to_thread(redis.start)
        for channel in (dashboard, long_poll, *before_noticed):
            notice = await asyncio.wait_for(layer.receive(channel), WAIT)
            assert notice == {"type": "layer.reconnected"}
        # The group subscription came back with the connection
        await layer.group_send("agent.a", {"type": "action.changed", "action_id": 1})
        event = await asyncio.wait_for(layer.receive(dashboard), WAIT)
        assert event == {"type": "action.changed", "action_id": 1}
    finally:
        await layer.flush()
        await asyncio.to_thread(redis.remove)
