"""
The ``realtime`` twistd plugin, and the built-in auth and routing plugins.

The built-ins are bound here, in the C{twisted.plugins} namespace, so that
they are found by C{getPlugins} exactly like a third party's dropin.  This
file imports neither the reactor nor Autobahn: twistd imports every dropin to
list its subcommands.
"""

from twisted.application.service import ServiceMaker

from realtime.auth.anonymous import AnonymousAuthenticatorFactory
from realtime.auth.firstpacket import FirstPacketAuthenticatorFactory
from realtime.auth.token import TokenAuthenticatorFactory
from realtime.auth.wechat import WeChatAuthenticatorFactory
from realtime.routing.channels import ChannelsStrategyFactory
from realtime.routing.chat import ChatStrategyFactory
from realtime.routing.echo import EchoStrategyFactory
from realtime.routing.uid import UidStrategyFactory

realtimeServiceMaker = ServiceMaker(
    "realtime",
    "realtime.tap",
    "A WebSocket push server with pluggable auth and routing.",
    "realtime",
)

anonymousAuth = AnonymousAuthenticatorFactory()
firstPacketAuth = FirstPacketAuthenticatorFactory()
tokenAuth = TokenAuthenticatorFactory()
weChatAuth = WeChatAuthenticatorFactory()

uidRouting = UidStrategyFactory()
chatRouting = ChatStrategyFactory()
echoRouting = EchoStrategyFactory()
channelsRouting = ChannelsStrategyFactory()
