"""
Tests for L{realtime.websocket.routed}: a session's routing answers,
immediate or Deferred, are carried out in the order of its messages; and
for the shell that uses it: bounded, failures logged and closed with 1011,
a closed session's own actions dropped and its deliveries kept.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from realtime import closecodes
from realtime.auth.anonymous import AnonymousAuthenticator
from realtime.interfaces import IRoutingStrategy, ISession, ISessionRegistry
from realtime.values import Close, Deliver, Refuse, Reply
from realtime.websocket.routed import MAX_PENDING, RouteQueue
from tests.support import ProtocolTestCase, clientFrame, closeCode


class Recorder:
    """
    What a L{RouteQueue} was asked to do.
    """

    def __init__(self) -> None:
        self.performed: list[Any] = []
        self.failed: list[Failure] = []
        self.open = True

    def queue(self) -> RouteQueue:
        return RouteQueue(self.performed.extend, self.failed.append, lambda: self.open)


class RouteQueueTests(SynchronousTestCase):
    """
    Answers leave in message order, as soon as every earlier one is in.
    """

    def setUp(self) -> None:
        self.record = Recorder()
        self.routes = self.record.queue()

    def test_immediate(self) -> None:
        """
        An immediate answer behind nothing is carried out at once.
        """
        self.assertTrue(self.routes.add([Reply(b"a")]))
        self.assertEqual(self.record.performed, [Reply(b"a")])
        self.assertTrue(self.routes.idle)

    def test_firedDeferred(self) -> None:
        """
        A Deferred that has already fired is carried out at once as well.
        """
        self.routes.add(succeed([Reply(b"a")]))
        self.assertEqual(self.record.performed, [Reply(b"a")])
        self.assertTrue(self.routes.idle)

    def test_laterWaitsForEarlier(self) -> None:
        """
        Answers behind a pending one wait, immediate or fired, and leave in
        order when it fires; a later Deferred firing first changes nothing.
        """
        first: Deferred[list[Any]] = Deferred()
        third: Deferred[list[Any]] = Deferred()
        self.routes.add(first)
        self.routes.add([Reply(b"2")])
        self.routes.add(third)
        self.routes.add(succeed([Reply(b"4")]))
        third.callback([Reply(b"3")])
        self.assertEqual(self.record.performed, [])
        self.assertEqual(len(self.routes), 4)
        first.callback([Reply(b"1")])
        self.assertEqual(self.record.performed, [Reply(b"1"), Reply(b"2"), Reply(b"3"), Reply(b"4")])
        self.assertTrue(self.routes.idle)

    def test_failureInItsPlace(self) -> None:
        """
        A failed answer is reported in its turn, and does not stop the
        answers behind it.
        """
        first: Deferred[list[Any]] = Deferred()
        self.routes.add(first)
        self.routes.add([Reply(b"2")])
        first.errback(RuntimeError("backend down"))
        [failure] = self.record.failed
        self.assertTrue(failure.check(RuntimeError))
        self.assertEqual(self.record.performed, [Reply(b"2")])

    def test_unreadableAnswer(self) -> None:
        """
        A Deferred firing with something that is not a sequence of actions
        is a failure, not an exception escaping into the Deferred.
        """
        d: Deferred[Any] = Deferred()
        self.routes.add(d)
        d.callback(None)
        [failure] = self.record.failed
        self.assertTrue(failure.check(TypeError))

    def test_performFailing(self) -> None:
        """
        An action that cannot be carried out is reported as a failure, and
        the answers behind it still go.
        """
        performed: list[Any] = []

        def perform(actions: Any) -> None:
            if actions == (Reply(b"bad"),):
                raise TypeError("unknown routing action")
            performed.extend(actions)

        routes = RouteQueue(perform, self.record.failed.append, lambda: True)
        pending: Deferred[list[Any]] = Deferred()
        routes.add(pending)
        routes.add([Reply(b"good")])
        pending.callback([Reply(b"bad")])
        self.assertEqual(performed, [Reply(b"good")])
        self.assertTrue(self.record.failed[0].check(TypeError))

    def test_generatorTakenAtOnce(self) -> None:
        """
        An immediate answer that is a generator is read when it is given,
        not when it leaves.
        """
        state = {"n": 1}
        pending: Deferred[list[Any]] = Deferred()
        self.routes.add(pending)
        self.routes.add(Reply(str(state["n"]).encode()) for _ in range(1))
        state["n"] = 2
        pending.callback([])
        self.assertEqual(self.record.performed, [Reply(b"1")])

    def test_closedKeepsDeliveries(self) -> None:
        """
        Once the session is closed, only deliveries to others are carried out.
        """
        pending: Deferred[list[Any]] = Deferred()
        self.routes.add(pending)
        self.record.open = False
        deliver = Deliver(("other",), b"x")
        pending.callback([Reply(b"r"), deliver, Refuse("c", "m"), Close()])
        self.assertEqual(self.record.performed, [deliver])

    def test_bounded(self) -> None:
        """
        At most L{MAX_PENDING} answers wait; one more is refused, and its
        failure is still observed.
        """
        self.routes.add(Deferred())
        for _ in range(MAX_PENDING - 1):
            self.assertTrue(self.routes.add([]))
        extra: Deferred[list[Any]] = Deferred()
        self.assertFalse(self.routes.add(extra))
        self.assertEqual(len(self.routes), MAX_PENDING)
        extra.errback(RuntimeError("late"))
        self.assertTrue(self.record.failed[0].check(RuntimeError))


@implementer(IRoutingStrategy)
class DeferredStrategy:
    """
    Answers each message with a Deferred the test fires (or with the
    actions in C{immediate}, for a payload found there).

    @ivar pending: C{(payload, Deferred)} of each unanswered message.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, Deferred[Any]]] = []
        self.immediate: dict[bytes, Any] = {}

    def route(self, session: ISession, payload: bytes, isBinary: bool, registry: ISessionRegistry) -> Any:
        if payload in self.immediate:
            return self.immediate[payload]
        d: Deferred[Any] = Deferred()
        self.pending.append((payload, d))
        return d

    def answer(self, payload: bytes, actions: Any) -> None:
        """
        Fire the Deferred of the message C{payload}.
        """
        for i, (p, d) in enumerate(self.pending):
            if p == payload:
                del self.pending[i]
                d.callback(actions)
                return
        raise AssertionError(f"{payload!r} not pending")


class ShellTests(ProtocolTestCase):
    """
    The protocol carries out Deferred answers like immediate ones, in order.
    """

    def setUp(self) -> None:
        super().setUp()
        self.strategy = DeferredStrategy()
        self.assertTrue(verifyObject(IRoutingStrategy, self.strategy))
        self.serve(AnonymousAuthenticator(), self.strategy)
        self.proto, self.transport = self.connect()
        self.transport.clear()

    def test_inOrder(self) -> None:
        """
        Each message is routed when it arrives; the replies reach the wire
        in message order, whichever answer came first.
        """
        self.strategy.immediate[b"now"] = [Reply(b"re now")]
        self.proto.dataReceived(clientFrame(b"slow") + clientFrame(b"now") + clientFrame(b"fast"))
        self.assertEqual([p for p, _ in self.strategy.pending], [b"slow", b"fast"])
        self.strategy.answer(b"fast", [Reply(b"re fast")])
        self.assertEqual(self.frames(self.transport), [])
        self.strategy.answer(b"slow", [Reply(b"re slow")])
        self.assertEqual(self.frames(self.transport), [(1, b"re slow"), (1, b"re now"), (1, b"re fast")])
        self.assertIsNone(self.proto._routes)

    def test_failureClosed(self) -> None:
        """
        A failed answer is logged and closes the connection with 1011.
        """
        self.proto.dataReceived(clientFrame(b"x"))
        self.strategy.pending[0][1].errback(RuntimeError("backend down"))
        [(opcode, payload)] = self.frames(self.transport)
        self.assertEqual(closeCode(payload), (closecodes.INTERNAL_ERROR, "internal error"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_tooManyWaiting(self) -> None:
        """
        A client that has L{MAX_PENDING} answers waiting and sends one more
        is closed with 1008.
        """
        self.proto.dataReceived(b"".join(clientFrame(b"%d" % i) for i in range(MAX_PENDING + 1)))
        [(opcode, payload)] = self.frames(self.transport)
        self.assertEqual(
            closeCode(payload), (closecodes.POLICY_VIOLATION, "too many messages waiting for answers")
        )

    def test_closedMeanwhile(self) -> None:
        """
        An answer that arrives after its sender left: its deliveries to
        others are made, its reply is dropped, nothing is logged.
        """
        other, otherTransport = self.connect()
        otherTransport.clear()
        self.proto.dataReceived(clientFrame(b"x"))
        self.proto.connectionLost(Failure(ConnectionError("gone")))
        self.strategy.answer(b"x", [Reply(b"re x"), Deliver((other,), b"from x")])
        self.assertEqual(self.frames(otherTransport), [(1, b"from x")])
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])


class ChannelsOrderTests(ProtocolTestCase):
    """
    The channels strategy through the shell: replies in request order, the
    requests' work overlapping.
    """

    def setUp(self) -> None:
        super().setUp()
        from realtime.core.channelwire import encodePush
        from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
        from realtime.routing.channels import ChannelsStrategy
        from realtime.store.memory import MemoryMessageStore
        from tests.fakes import GatedStore
        from tests.support import buildRouter

        self.store = GatedStore(MemoryMessageStore())
        rules = NamespaceRules([parseNamespaceSpec("news:*:public=true:publish=true:history=10")])
        router = buildRouter(self.clock, self.store, rules, offline=None, framePush=encodePush)
        self.serve(AnonymousAuthenticator(), ChannelsStrategy(router.channels), router=router)

    def replies(self, transport: Any) -> list[tuple[Any, bool]]:
        import json

        return [(m["id"], m["ok"]) for m in (json.loads(p) for _, p in self.frames(transport)) if m["type"] == "reply"]

    def test_slowHistoryHoldsLaterReplies(self) -> None:
        """
        A subscribe waiting for its history holds back the replies to the
        requests after it, which were carried out meanwhile (both history
        reads were asked for at once); they follow in order when it is in.
        """
        proto, transport = self.connect()
        transport.clear()
        proto.dataReceived(
            clientFrame(b'{"id":1,"op":"subscribe","channel":"news:a"}')
            + clientFrame(b'{"id":2,"op":"subscribe","channel":"news:b"}')
            + clientFrame(b'{"id":3,"op":"ping"}')
            + clientFrame(b'{"id":4,"op":"unsubscribe","channel":"news:x"}')
        )
        self.assertEqual(self.store.waiting, 2)
        self.assertEqual(self.replies(transport), [])
        self.store.open(1)
        self.assertEqual(self.replies(transport), [(1, True)])
        self.store.open(1)
        self.assertEqual(self.replies(transport), [(2, True), (3, True), (4, False)])
        self.assertIsNone(proto._routes)

    def test_subscriptionsOffTheSession(self) -> None:
        """
        A connection's subscriptions are the channel service's, by session
        id, and are gone once the connection is.
        """
        proto, transport = self.connect()
        proto.dataReceived(clientFrame(b'{"id":1,"op":"subscribe","channel":"news:a"}'))
        self.store.drain()
        self.assertEqual(self.replies(transport), [(1, True)])
        channels = self.factory.router.channels
        self.assertEqual(channels.subscriptionsOf(proto.sessionId), ("news:a",))
        self.assertFalse(hasattr(proto, "subscriptions"))
        proto.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(channels.subscriptionsOf(proto.sessionId), ())
        self.assertEqual(self.factory.registry.subscribersOf("news:a"), ())
