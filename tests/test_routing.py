"""
Tests for the built-in routing strategies in L{realtime.routing}.
"""

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from realtime.core.channelwire import Request
from realtime.core.registry import SessionRegistry
from realtime.interfaces import (
    IChannelService,
    IPushFraming,
    IRoutingContext,
    IRoutingContextUser,
    IRoutingStrategy,
    IRoutingStrategyFactory,
)
from realtime.push.channels import RequestError
from realtime.routing.channels import ChannelsStrategy, ChannelsStrategyFactory
from realtime.routing.chat import ChatStrategyFactory
from realtime.routing.context import RoutingContext, buildStrategy
from realtime.routing.echo import EchoStrategyFactory
from realtime.routing.uid import UidStrategyFactory
from realtime.store.health import StoreUnavailable
from realtime.testing import FakeSession, sessionRegistry, verifyPlugin
from realtime.values import Deliver, Refuse, Reply
from tests.support import buildRouter

FACTORIES = [UidStrategyFactory(), ChatStrategyFactory(), EchoStrategyFactory()]


class FactoryTests(SynchronousTestCase):
    """
    Every built-in factory is a verified plugin that refuses unknown options.
    """

    def test_interfaces(self) -> None:
        """
        Factories provide L{IPlugin} and L{IRoutingStrategyFactory}; what they
        build provides L{IRoutingStrategy}.
        """
        for factory in FACTORIES:
            self.assertTrue(IRoutingStrategy.providedBy(verifyPlugin(factory)))

    def test_unknownOption(self) -> None:
        """
        An option the strategy does not take is refused, naming it.
        """
        for factory in FACTORIES:
            e = self.assertRaises(ValueError, factory.buildRoutingStrategy, {"fast": "yes"}, Clock())
            self.assertIn(f"{factory.name}: unknown option 'fast'", str(e))


class StrategyTests(SynchronousTestCase):
    """
    What each strategy decides.
    """

    def setUp(self) -> None:
        self.a, self.b, self.c = FakeSession("a"), FakeSession("b"), FakeSession("c")
        self.registry = sessionRegistry(self.a, self.b, self.c)

    def route(self, factory, payload=b"hi", isBinary=False):
        strategy = factory.buildRoutingStrategy({}, Clock())
        return list(strategy.route(self.a, payload, isBinary, self.registry))

    def test_echo(self) -> None:
        """
        Echo replies with the message, text as text and binary as binary.
        """
        self.assertEqual(self.route(EchoStrategyFactory()), [Reply(b"hi", False)])
        self.assertEqual(self.route(EchoStrategyFactory(), b"\x00\xff", True), [Reply(b"\x00\xff", True)])

    def test_chatRelaysToOthers(self) -> None:
        """
        Chat delivers to every other session and not to the sender.
        """
        [action] = self.route(ChatStrategyFactory(), b"yo", True)
        self.assertIsInstance(action, Deliver)
        self.assertEqual(set(action.sessions), {self.b, self.c})
        self.assertEqual((action.payload, action.isBinary), (b"yo", True))

    def test_chatAlone(self) -> None:
        """
        A lone chatter's message goes nowhere, and that is not an error.
        """
        registry = SessionRegistry()
        registry.add(self.a)
        strategy = ChatStrategyFactory().buildRoutingStrategy({}, Clock())
        [action] = strategy.route(self.a, b"x", False, registry)
        self.assertEqual(action.sessions, ())

    def test_uidRefuses(self) -> None:
        """
        Uid routing answers client messages with a clear error, not silence.
        """
        [action] = self.route(UidStrategyFactory())
        self.assertIsInstance(action, Refuse)
        self.assertEqual(action.code, "push-only")
        self.assertIn("only pushes", action.message)


@implementer(IChannelService)
class ScriptedChannels:
    """
    A channel service answering each request with the Deferred the test
    sets, recording what it was asked.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[object, Request]] = []
        self.answer: Deferred[Any] = Deferred()

    def request(self, session: object, request: Request) -> Deferred[Any]:
        self.requests.append((session, request))
        return self.answer

    def subscriptionsOf(self, sessionId: str) -> tuple[str, ...]:
        return ()

    def sessionClosed(self, session: object) -> None:
        pass


class ChannelsFactoryTests(SynchronousTestCase):
    """
    The channels plugin is built in the server's routing context, like any
    third-party plugin that asks for one.
    """

    def setUp(self) -> None:
        self.router = buildRouter(Clock(), offline=None)
        self.context = RoutingContext(self.router.registry, self.router.channels)

    def test_interfaces(self) -> None:
        """
        The factory is a verified plugin that asks for the context; the
        context and the service are verified too; the strategy frames pushes.
        """
        factory = ChannelsStrategyFactory()
        self.assertTrue(verifyObject(IPlugin, factory))
        self.assertTrue(verifyObject(IRoutingStrategyFactory, factory))
        self.assertTrue(verifyObject(IRoutingContextUser, factory))
        self.assertTrue(verifyObject(IRoutingContext, self.context))
        self.assertTrue(verifyObject(IChannelService, self.router.channels))
        self.assertTrue(verifyObject(IChannelService, ScriptedChannels()))
        strategy = buildStrategy(factory, {}, Clock(), self.context)
        self.assertTrue(verifyObject(IRoutingStrategy, strategy))
        self.assertTrue(verifyObject(IPushFraming, strategy))
        self.assertIs(strategy.channels, self.router.channels)

    def test_notWithoutContext(self) -> None:
        """
        Built without the context it is refused, saying why; an unknown
        option is refused either way.
        """
        factory = ChannelsStrategyFactory()
        e = self.assertRaises(ValueError, factory.buildRoutingStrategy, {}, Clock())
        self.assertIn("channel service", str(e))
        e = self.assertRaises(ValueError, buildStrategy, factory, {"fast": "yes"}, Clock(), self.context)
        self.assertIn("channels: unknown option 'fast'", str(e))

    def test_plainFactories(self) -> None:
        """
        A factory that does not ask for the context is built as before.
        """
        for factory in FACTORIES:
            self.assertTrue(verifyObject(IRoutingStrategy, buildStrategy(factory, {}, Clock(), self.context)))


class ChannelsStrategyTests(SynchronousTestCase):
    """
    The strategy parses, asks the service, and encodes the answer itself.
    """

    def setUp(self) -> None:
        self.channels = ScriptedChannels()
        self.strategy = ChannelsStrategy(self.channels)
        self.session = FakeSession("a")

    def route(self, payload: bytes, isBinary: bool = False) -> Any:
        return self.strategy.route(self.session, payload, isBinary, SessionRegistry())

    def reply(self, answer: Any) -> dict[str, Any]:
        [action] = self.successResultOf(answer)
        self.assertIsInstance(action, Reply)
        return json.loads(action.payload)

    def test_malformedAtOnce(self) -> None:
        """
        A request that cannot be parsed is answered at once, without the
        service.
        """
        [action] = self.route(b"{nope")
        self.assertEqual(json.loads(action.payload)["error"]["code"], "bad_json")
        self.assertEqual(self.channels.requests, [])

    def test_answerEncoded(self) -> None:
        """
        The service's result becomes the reply, with the request's id.
        """
        answer = self.route(b'{"id": 7, "op": "ping"}')
        self.assertNoResult(answer)
        [(session, request)] = self.channels.requests
        self.assertEqual((session, request.op), (self.session, "ping"))
        self.channels.answer.callback({"pong": True})
        self.assertEqual(self.reply(answer), {"type": "reply", "id": 7, "ok": True, "result": {"pong": True}})

    def test_errorsEncoded(self) -> None:
        """
        A refusal keeps its code, a failing store is C{unavailable} (not
        logged here: its monitor did), anything else is C{internal} and
        logged.
        """
        cases = [
            (RequestError("forbidden", "no"), ("forbidden", "no"), 0),
            (StoreUnavailable("disk full"), ("unavailable", "disk full"), 0),
            (ZeroDivisionError("bug"), ("internal", "internal error"), 1),
        ]
        for error, expected, logged in cases:
            self.channels.answer = Deferred()
            answer = self.route(b'{"id": 1, "op": "ping"}')
            self.channels.answer.errback(error)
            reply = self.reply(answer)
            self.assertEqual((reply["ok"], reply["error"]["code"], reply["error"]["message"]), (False, *expected))
            self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), logged)
