"""Channel adapters: the interface, typed errors, registry and built-ins."""

from .base import Channel, OutgoingMessage, Receipt
from .errors import ChannelConfigError, ChannelError, PermanentChannelError, TransientChannelError

__all__ = [
    "Channel",
    "ChannelConfigError",
    "ChannelError",
    "OutgoingMessage",
    "PermanentChannelError",
    "Receipt",
    "TransientChannelError",
]
