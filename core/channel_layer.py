"""The channel layer: channels_redis's Redis pub/sub layer, plus a notice to the process's
own channels when its subscription to Redis comes back after it was lost.

Pub/sub keeps nothing for a subscriber that is not connected: events published while a
process's subscription is down (Redis restarted, a network blip) never reach it, and
redis-py re-subscribes quietly when it reconnects, so an open dashboard would neither be
closed nor told. channels_redis documents ``on_reconnect`` for this, but its pub/sub layer
no longer calls it (django/channels_redis#406). Here it is called again: once redis-py has
re-subscribed, every channel of the process receives ``{"type": <on_reconnect>}``, so
dashboards re-read what they may have missed and long-polls re-check their action."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from channels_redis.utils import _wrap_close
from redis.asyncio.client import PubSub


class _NotifyingPubSub(PubSub):
    """redis-py calls ``on_connect`` on every reconnect of the subscription connection (not
    on the first connect, redis/redis-py#1332), after which it re-subscribes."""

    def __init__(self, *args: Any, on_resubscribed: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_resubscribed = on_resubscribed

    async def on_connect(self, connection: Any) -> None:
        await super().on_connect(connection)
        self._on_resubscribed()


class _Shard(RedisSingleShardConnection):
    def _ensure_redis(self) -> None:
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = _NotifyingPubSub(
                self._redis.connection_pool,
                event_dispatcher=self._redis._event_dispatcher,
                on_resubscribed=self._tell_every_channel,
            )

    def _tell_every_channel(self) -> None:
        loop_layer = self.channel_layer
        if not loop_layer.on_reconnect:
            return
        message = loop_layer.channel_layer.serialize({"type": loop_layer.on_reconnect})
        for queue in list(loop_layer.channels.values()):
            queue.put_nowait(message)


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]

    async def _subscribe_to_channel(self, channel: str) -> None:
        try:
            await super()._subscribe_to_channel(channel)
        except BaseException:
            # Redis is down: the channel was never subscribed and its creator gets the
            # error, so nobody will ever receive from (or discard) its queue. Without this,
            # every socket or long-poll tried during an outage would leave one behind.
            self.channels.pop(channel, None)
            raise


class NotifyingRedisPubSubChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` whose ``on_reconnect`` option works: with
    ``"on_reconnect": "layer.reconnected"``, each channel of this process receives that
    event after the subscription connection came back (consumers handle it as
    ``layer_reconnected``). Sends nothing itself to Redis."""

    def _get_layer(self) -> RedisPubSubLoopLayer:
        # As the parent's, with the loop layer above (one per event loop).
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
