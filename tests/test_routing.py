"""
Tests for the built-in routing strategies in L{realtime.routing}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from realtime.core.registry import SessionRegistry
from realtime.interfaces import IRoutingStrategy
from realtime.routing.chat import ChatStrategyFactory
from realtime.routing.echo import EchoStrategyFactory
from realtime.routing.uid import UidStrategyFactory
from realtime.testing import FakeSession, sessionRegistry, verifyPlugin
from realtime.values import Deliver, Refuse, Reply

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
