"""
Channel adapters, by channel name. A new channel is one module, one `register` line at the
bottom of this file, one test module and one CHANGELOG line; a second adapter for a channel
name is refused at import time.
"""

from __future__ import annotations

from typing import Any

from collect.channels.base import ChannelAdapter


class DuplicateChannel(ValueError):
    """Two adapters claim one channel name: which one parses its input would be an accident."""


ADAPTERS: dict[str, type[ChannelAdapter[Any]]] = {}


def register(adapter: type[ChannelAdapter[Any]]) -> type[ChannelAdapter[Any]]:
    """Add an adapter class under its `channel`; refuses a name taken already."""
    name = adapter.channel
    if name in ADAPTERS and ADAPTERS[name] is not adapter:
        raise DuplicateChannel(f"channel {name!r} has an adapter already: {ADAPTERS[name].__qualname__}")
    ADAPTERS[name] = adapter
    return adapter


def adapter_for(channel: str) -> type[ChannelAdapter[Any]]:
    """The adapter class of a channel; KeyError for a channel no adapter serves."""
    return ADAPTERS[channel]


# One line per channel.
from collect.channels.api import ApiAdapter  # noqa: E402
from collect.channels.calls import CallsAdapter  # noqa: E402
from collect.channels.paper import PaperAdapter  # noqa: E402
from collect.channels.sms import SmsAdapter  # noqa: E402
from collect.channels.web import WebBallotAdapter  # noqa: E402
from collect.channels.window import WindowAdapter  # noqa: E402

register(WebBallotAdapter)
register(ApiAdapter)
register(CallsAdapter)
register(SmsAdapter)
register(PaperAdapter)
register(WindowAdapter)

__all__ = ["ADAPTERS", "ChannelAdapter", "DuplicateChannel", "adapter_for", "register"]
