"""
Tests for L{realtime.push.router}: offline queues, channel history and the seam
between history and live messages, with a store whose answers the test
releases by hand.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from realtime.core.channelwire import Request, encodePush
from realtime.core.namespaces import NamespaceRules, parseNamespaceSpec
from realtime.interfaces import IBatchPublisher, IBroker, IChannelAuthorizer, IChannelService, IPublisher, ISession
from realtime.push.channels import MAX_SUBSCRIPTIONS, RequestError
from realtime.push.offline import KeyedSerializer
from realtime.push.router import Router
from realtime.store.health import StoreUnavailable
from realtime.store.memory import MemoryMessageStore
from realtime.values import Envelope, Identity, OfflineLimits, Position, PushResult, ToAll, ToChannel, ToUids
from tests.fakes import BatchingBroker, FakeSession, FaultyStore, GatedStore
from tests.support import buildRouter, publishing

LIMITS = OfflineLimits(maxCount=3, ttl=60)


def messages(session: FakeSession) -> list[dict[str, Any]]:
    """
    The JSON frames a session received.
    """
    return [json.loads(p) for p, _ in session.sent]


class RouterTestCase(SynchronousTestCase):
    """
    A router over a gated memory store, on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = GatedStore(MemoryMessageStore())
        self.store.gated = False

    def build(self, *namespaces: str, offline: OfflineLimits | None = LIMITS, **kw: Any) -> Router:
        rules = NamespaceRules(parseNamespaceSpec(s) for s in namespaces)
        self.router = buildRouter(self.clock, self.store, rules, offline=offline, **kw)
        return self.router

    def connect(self, uid: str, **kw: Any) -> FakeSession:
        session = FakeSession(uid, **kw)
        self.router.sessionOpened(session)
        return session

    def known(self, *uids: str) -> None:
        """
        These uids connected before, so pushes to them may be queued.
        """
        for uid in uids:
            self.successResultOf(self.store.inner.markSeen({uid: self.clock.seconds()}))

    def push(self, uid: str, text: str) -> Any:
        return self.successResultOf(publishing(self.router, Envelope(ToUids((uid,)), text.encode())))

    def call(self, session: FakeSession, op: str, channel: str | None = None, **kw: Any) -> Deferred[Any]:
        return self.router.channels.request(session, Request(1, op, channel, **kw))

    def publish(self, channel: str, data: object) -> Deferred[Any]:
        return publishing(self.router, Envelope(ToChannel(channel), json.dumps(data).encode()))


class OfflineTests(RouterTestCase):
    """
    A push to a uid with no connection waits for it, and arrives once, in order.
    """

    def test_interface(self) -> None:
        """
        The router is what the push APIs push through (L{IPublisher}); it
        is not a broker, it holds one.
        """
        router = self.build()
        self.assertTrue(verifyObject(IPublisher, router))
        self.assertFalse(IBroker.providedBy(router))
        self.assertTrue(verifyObject(IBroker, router.broker))

    def test_queuedThenDeliveredOnce(self) -> None:
        """
        Pushes to an offline uid are answered as queued, delivered in order
        at its next connection, and never again.
        """
        self.build()
        self.known("u1")
        for i in range(3):
            result = self.push("u1", f"m{i}")
            self.assertEqual((result.delivered, result.queued), (0, ("u1",)))
        first = self.connect("u1")
        self.assertEqual(first.texts, ["m0", "m1", "m2"])
        second = self.connect("u1")
        self.assertEqual(second.texts, [])
        self.assertEqual(self.push("u1", "live").delivered, 2)
        self.assertEqual(first.texts[-1], "live")

    def test_pushWhileDraining(self) -> None:
        """
        A push that arrives while the queue is being read reaches the session
        after the queued ones.
        """
        self.build()
        self.known("u1")
        self.push("u1", "old")
        self.store.gated = True
        session = self.connect("u1")
        d = publishing(self.router, Envelope(ToUids(("u1",)), b"new"))
        self.assertEqual(self.successResultOf(d).delivered, 1)
        self.assertEqual(session.texts, [])
        self.store.open()
        self.assertEqual(session.texts, ["old", "new"])

    def test_connectWhileQueueing(self) -> None:
        """
        A uid connecting while its push is being queued gets that push: the
        queue write and the drain happen one after the other, per uid.
        """
        self.build()
        self.known("u1")
        self.store.gated = True
        d = publishing(self.router, Envelope(ToUids(("u1",)), b"racing"))
        session = self.connect("u1")
        self.store.drain()
        self.assertEqual(self.successResultOf(d).queued, ("u1",))
        self.assertEqual(session.texts, ["racing"])

    def test_closedDuringDrainKeepsMessages(self) -> None:
        """
        Messages taken for a connection that closed meanwhile go back to the
        queue for the next one.
        """
        self.build()
        self.known("u1")
        self.push("u1", "keep me")
        self.store.gated = True
        gone = self.connect("u1")
        gone.open = False
        self.router.sessionClosed(gone)
        self.store.drain()
        self.store.gated = False
        self.assertEqual(self.connect("u1").texts, ["keep me"])

    def test_fullQueueRefuses(self) -> None:
        """
        Beyond the limit a push is refused, visibly, not dropped.
        """
        self.build()
        self.known("u1")
        for i in range(3):
            self.push("u1", str(i))
        result = self.push("u1", "one too many")
        self.assertEqual((result.queued, result.refused), ((), ("u1",)))
        self.assertEqual(self.connect("u1").texts, ["0", "1", "2"])

    def test_expired(self) -> None:
        """
        Queued pushes older than the TTL are not delivered.
        """
        self.build()
        self.known("u1")
        self.push("u1", "stale")
        self.clock.advance(61)
        self.assertEqual(self.connect("u1").texts, [])

    def test_unknownUid(self) -> None:
        """
        A uid that never connected gets no queue: the push is undelivered,
        as Workerman answered ``fail``.
        """
        self.build()
        result = self.push("never-seen", "x")
        self.assertEqual((result.delivered, result.queued, result.refused), (0, (), ()))

    def test_connectMakesKnown(self) -> None:
        """
        A connection makes its uid known for later offline pushes.
        """
        self.build()
        session = self.connect("u2")
        session.open = False
        self.router.sessionClosed(session)
        self.assertEqual(self.push("u2", "later").queued, ("u2",))

    def test_pushWhileLastConnectionCloses(self) -> None:
        """
        A push to a uid whose only connection is closing (still registered,
        no longer writable) is queued for its next connection, not answered
        as undelivered: the broker counts it 0, which is what queues.
        """
        self.build()
        closing = self.connect("u1")
        closing.open = False
        self.assertEqual(self.push("u1", "first").queued, ("u1",))
        self.assertEqual(self.push("u1", "second").queued, ("u1",))
        self.router.sessionClosed(closing)
        self.assertEqual(self.connect("u1").texts, ["first", "second"])

    def test_pushToSeveralWhileOneCloses(self) -> None:
        """
        With several uids, the one whose connection is closing is queued and
        the others are delivered, each once.
        """
        self.build()
        here = self.connect("here")
        closing = self.connect("u1")
        closing.open = False
        result = self.successResultOf(publishing(self.router, Envelope(ToUids(("here", "u1")), b"both")))
        self.assertEqual((result.delivered, result.queued), (1, ("u1",)))
        self.assertEqual(here.texts, ["both"])
        self.router.sessionClosed(closing)
        self.assertEqual(self.connect("u1").texts, ["both"])

    def test_seenWrittenInBatches(self) -> None:
        """
        Connections' uids are written to the store together, a second later,
        and a uid reconnecting within the hour is not written again.
        """
        from realtime.push.offline import SEEN_FLUSH_DELAY

        self.build()
        for uid in ("a", "b", "c"):
            self.connect(uid)
        self.assertFalse(self.successResultOf(self.store.inner.wasSeen("a", self.clock.seconds())))
        self.store.gated = True
        self.clock.advance(SEEN_FLUSH_DELAY)
        self.assertEqual(self.store.waiting, 1)
        self.store.drain()
        for uid in ("a", "b", "c"):
            self.assertTrue(self.successResultOf(self.store.inner.wasSeen(uid, self.clock.seconds())))
        self.connect("a")
        self.clock.advance(SEEN_FLUSH_DELAY)
        self.assertEqual(self.store.waiting, 0)

    def test_sharedStoreSeenAtOnce(self) -> None:
        """
        With a store other nodes share, a connection's uid is written at the
        end of the reactor turn, not a second later: a node killed within
        that second would take the record with it, and every other node
        would answer pushes for the uid that just left C{fail} instead of
        queueing them.
        """
        self.build(sharedStore=True)
        for uid in ("a", "b"):
            self.connect(uid)
        self.clock.advance(0)
        for uid in ("a", "b"):
            self.assertTrue(self.successResultOf(self.store.inner.wasSeen(uid, self.clock.seconds())))

    def test_nothingWaitingNoStoreRead(self) -> None:
        """
        Once the router knows which uids have pushes waiting, a uid without any
        connects without a store read, and without waiting.
        """
        self.known("u1")
        self.build()
        self.push("u1", "waiting")
        self.store.gated = True
        fresh = self.connect("fresh")
        self.assertEqual(self.store.waiting, 0)
        self.successResultOf(publishing(self.router, Envelope(ToUids(("fresh",)), b"now")))
        self.assertEqual(fresh.texts, ["now"])
        waiting = self.connect("u1")
        self.assertEqual(waiting.texts, [])
        self.store.open()
        self.assertEqual(waiting.texts, ["waiting"])

    def test_queuedWhileLoading(self) -> None:
        """
        A push queued before the router learnt which uids have pushes waiting is
        still delivered at the uid's next connection.
        """
        self.known("u1")
        self.store.gated = True
        self.build()
        d = publishing(self.router, Envelope(ToUids(("u1",)), b"early"))
        self.store.drain()
        self.assertEqual(self.successResultOf(d).queued, ("u1",))
        self.store.gated = False
        self.assertEqual(self.connect("u1").texts, ["early"])

    def test_disabled(self) -> None:
        """
        Without an offline queue, a push to nobody is just undelivered.
        """
        self.build(offline=None)
        result = self.push("u1", "x")
        self.assertEqual((result.delivered, result.queued), (0, ()))
        self.assertEqual(self.connect("u1").texts, [])

    def test_framedForChannelsClients(self) -> None:
        """
        With push framing (the channels protocol), live and offline pushes
        arrive framed.
        """
        self.build(framePush=encodePush)
        self.known("u1")
        self.push("u1", "offline")
        session = self.connect("u1")
        self.push("u1", "live")
        self.assertEqual(messages(session), [{"type": "push", "data": "offline"}, {"type": "push", "data": "live"}])
        self.successResultOf(publishing(self.router, Envelope(ToAll(), b"all")))
        self.assertEqual(messages(session)[-1], {"type": "push", "data": "all"})


class SerializerTests(SynchronousTestCase):
    """
    L{KeyedSerializer} runs jobs one at a time per key.
    """

    def test_order(self) -> None:
        """
        A job waits for the earlier jobs of its key only; failures pass through.
        """
        serial = KeyedSerializer()
        gate: Deferred[None] = Deferred()
        order: list[str] = []
        serial.run("a", lambda: gate.addCallback(lambda _: order.append("a1")))
        b = serial.run("b", lambda: order.append("b1"))
        failed = serial.run("a", lambda: 1 / 0)
        serial.run("a", lambda: order.append("a3"))
        self.assertEqual(order, ["b1"])
        self.successResultOf(b)
        gate.callback(None)
        self.assertEqual(order, ["b1", "a1", "a3"])
        self.failureResultOf(failed, ZeroDivisionError)
        self.assertEqual(len(serial), 0)


class HistoryTests(RouterTestCase):
    """
    Channel messages get offsets; resuming subscribers get exactly what they
    missed, then live messages, nothing lost or doubled at the seam.
    """

    def setUp(self) -> None:
        super().setUp()
        self.build("news:*:history=100:public=true", "secret:*:history=10", "*:public=true:history=0")

    def subscribe(self, session: FakeSession, channel: str, since: Position | None = None) -> Deferred[Any]:
        return self.call(session, "subscribe", channel, since=since)

    def test_offsets(self) -> None:
        """
        Publishes get consecutive offsets in one epoch.
        """
        results = [self.successResultOf(self.publish("news:a", i)) for i in range(3)]
        self.assertEqual([r.offset for r in results], [1, 2, 3])
        self.assertEqual(len({r.epoch for r in results}), 1)

    def test_resumeWithPublishesDuringIt(self) -> None:
        """
        A subscriber resuming from offset 2 while publishes keep coming gets
        3..N exactly once, in order.
        """
        for i in range(5):
            self.publish("news:a", i)
        epoch = self.successResultOf(self.publish("news:a", 5)).epoch
        self.store.gated = True
        session = self.connect("reader")
        d = self.subscribe(session, "news:a", Position(epoch, 2))
        pending = [self.publish("news:a", i) for i in range(6, 9)]
        self.store.open(1)  # the history read answers first: it sees offsets up to 6
        self.store.open()
        for p in pending:
            self.successResultOf(p)
        result = self.successResultOf(d)
        self.assertEqual(result, {"channel": "news:a", "epoch": epoch, "offset": 6, "recovered": True, "missed": 4})
        got = messages(session)
        self.assertEqual([m["offset"] for m in got], [3, 4, 5, 6, 7, 8, 9])
        self.assertEqual([m["data"] for m in got], [2, 3, 4, 5, 6, 7, 8])
        self.assertEqual({m["epoch"] for m in got}, {epoch})

    def test_liveCopyOfHistoryNotDoubled(self) -> None:
        """
        A message that is both in the history read and held live is written once.
        """
        epoch = self.successResultOf(self.publish("news:a", "zero")).epoch
        self.store.gated = True
        session = self.connect("reader")
        published = self.publish("news:a", "one")  # appended before the history read...
        d = self.subscribe(session, "news:a", Position(epoch, 1))
        self.store.open()  # ...but delivered live after the subscription exists
        self.successResultOf(published)
        self.assertEqual(self.successResultOf(d)["missed"], 1)
        self.assertEqual([m["offset"] for m in messages(session)], [2])

    def test_plainSubscribePosition(self) -> None:
        """
        A subscribe without a position is told the position it starts from:
        everything after it is delivered.
        """
        for i in range(3):
            self.publish("news:a", i)
        session = self.connect("reader")
        result = self.successResultOf(self.subscribe(session, "news:a"))
        self.assertEqual(result["offset"], 3)
        self.assertNotIn("recovered", result)
        self.publish("news:a", "next")
        self.assertEqual([m["offset"] for m in messages(session)], [4])

    def test_outOfRange(self) -> None:
        """
        A position older than the history kept, in the future, or of another
        epoch is reported as not recovered, and nothing is replayed.
        """
        for i in range(15):
            self.publish("secret:x", i)
        epoch = self.successResultOf(self.publish("secret:x", 15)).epoch
        reader = FakeSession("r")
        reader.identity = Identity("r", channels=frozenset({"secret:*"}))
        self.router.sessionOpened(reader)
        for since in (Position(epoch, 2), Position(epoch, 99), Position("other-epoch", 15)):
            result = self.successResultOf(self.subscribe(reader, "secret:x", since))
            self.assertEqual((result["recovered"], result["offset"]), (False, 16))
            self.successResultOf(self.call(reader, "unsubscribe", "secret:x"))
        self.assertEqual(reader.sent, [])

    def test_noHistoryNamespace(self) -> None:
        """
        Channels without history have no offsets; a resume is not recovered.
        """
        session = self.connect("reader")
        result = self.successResultOf(self.subscribe(session, "lobby", Position("e", 1)))
        self.assertEqual(result, {"channel": "lobby", "recovered": False})
        publish = self.successResultOf(self.publish("lobby", "hi"))
        self.assertEqual((publish.offset, publish.delivered), (None, 1))
        self.assertEqual(messages(session), [{"type": "message", "channel": "lobby", "data": "hi"}])


class PermissionTests(RouterTestCase):
    """
    Who may subscribe and publish, and the protocol's refusals.
    """

    def setUp(self) -> None:
        super().setUp()
        self.build("chat:*:publish=true:presence=true:public=true", "news:*:publish=true")

    def test_identityChannels(self) -> None:
        """
        Without a public namespace, the identity's channel patterns and its own
        user channel decide.
        """
        alice = FakeSession("alice")
        alice.identity = Identity("alice", channels=frozenset({"news:sport*"}))
        self.router.sessionOpened(alice)
        self.successResultOf(self.call(alice, "subscribe", "news:sports"))
        self.successResultOf(self.call(alice, "subscribe", "user:alice"))
        e = self.failureResultOf(self.call(alice, "subscribe", "news:politics"), RequestError)
        self.assertEqual(e.value.code, "forbidden")
        e = self.failureResultOf(self.call(alice, "subscribe", "user:bob"), RequestError)
        self.assertEqual(e.value.code, "forbidden")

    def test_publish(self) -> None:
        """
        Clients publish only where the namespace allows it and they may subscribe.
        """
        alice, bob = self.connect("alice"), self.connect("bob")
        self.successResultOf(self.call(bob, "subscribe", "chat:room"))
        result = self.successResultOf(self.call(alice, "publish", "chat:room", data=b'{"text":"hi"}'))
        self.assertEqual((result["offset"], result["delivered"]), (1, 1))
        self.assertEqual(messages(bob)[-1]["data"], {"text": "hi"})
        for channel in ("news:x", "other"):
            e = self.failureResultOf(self.call(alice, "publish", channel, data=b"1"), RequestError)
            self.assertEqual(e.value.code, "forbidden")

    def test_authorizer(self) -> None:
        """
        An authenticator providing L{IChannelAuthorizer} decides, possibly later.
        """

        @implementer(IChannelAuthorizer)
        class Authorizer:
            def __init__(self) -> None:
                self.answer: Deferred[bool] = Deferred()

            def maySubscribe(self, identity: Identity, channel: str) -> Deferred[bool]:
                return self.answer

            def mayPublish(self, identity: Identity, channel: str) -> bool:
                return identity.uid == "admin"

        authorizer = Authorizer()
        self.build("news:*:publish=true", authorizer=authorizer)
        admin, other = self.connect("admin"), self.connect("other")
        d = self.call(other, "subscribe", "news:x")
        self.assertNoResult(d)
        authorizer.answer.callback(True)
        self.successResultOf(d)
        self.successResultOf(self.call(admin, "publish", "news:x", data=b"1"))
        self.failureResultOf(self.call(other, "publish", "news:x", data=b"1"), RequestError)

    def test_protocolRefusals(self) -> None:
        """
        Double subscribe, unknown unsubscribe, presence where it is off, and
        too many subscriptions each have their code.
        """
        alice = self.connect("alice")
        self.successResultOf(self.call(alice, "subscribe", "chat:a"))
        cases = [
            (self.call(alice, "subscribe", "chat:a"), "already_subscribed"),
            (self.call(alice, "unsubscribe", "chat:b"), "not_subscribed"),
            (self.call(alice, "presence", "news:x"), "presence_disabled"),
        ]
        for d, code in cases:
            self.assertEqual(self.failureResultOf(d, RequestError).value.code, code)
        for i in range(MAX_SUBSCRIPTIONS - 1):
            self.successResultOf(self.call(alice, "subscribe", f"chat:{i}"))
        e = self.failureResultOf(self.call(alice, "subscribe", "chat:last"), RequestError)
        self.assertEqual(e.value.code, "too_many_subscriptions")

    def test_presence(self) -> None:
        """
        Joins and leaves are announced to the other subscribers once per uid;
        presence lists uids with their subscription counts.
        """
        alice, alice2, bob = self.connect("alice"), self.connect("alice"), self.connect("bob")
        self.successResultOf(self.call(bob, "subscribe", "chat:room"))
        self.successResultOf(self.call(alice, "subscribe", "chat:room"))
        self.successResultOf(self.call(alice2, "subscribe", "chat:room"))
        self.assertEqual(messages(bob), [{"type": "join", "channel": "chat:room", "uid": "alice"}])
        result = self.successResultOf(self.call(bob, "presence", "chat:room"))
        self.assertEqual(result, {"channel": "chat:room", "uids": {"bob": 1, "alice": 2}, "connections": 3})
        self.successResultOf(self.call(alice, "unsubscribe", "chat:room"))
        self.assertEqual(len(messages(bob)), 1)
        alice2.open = False
        self.router.sessionClosed(alice2)
        self.assertEqual(messages(bob)[-1], {"type": "leave", "channel": "chat:room", "uid": "alice"})
        self.assertEqual(self.successResultOf(self.router.presence("chat:room"))["uids"], {"bob": 1})


class SubscriptionsBySessionTests(RouterTestCase):
    """
    The channel service keeps each session's subscriptions by session id;
    a session holds none of them.
    """

    def test_interface(self) -> None:
        """
        The service is a verified L{IChannelService}; L{ISession} names no
        subscriptions.
        """
        self.build("chat:*:public=true")
        self.assertTrue(verifyObject(IChannelService, self.router.channels))
        self.assertNotIn("subscriptions", ISession.names())

    def test_keptBySessionId(self) -> None:
        """
        Subscriptions are listed per session id, apart for two sessions of
        one uid, and nothing is set on the session.
        """
        self.build("chat:*:public=true")
        alice, alice2 = self.connect("alice"), self.connect("alice")
        self.successResultOf(self.call(alice, "subscribe", "chat:a"))
        self.successResultOf(self.call(alice, "subscribe", "chat:b"))
        self.successResultOf(self.call(alice2, "subscribe", "chat:a"))
        channels = self.router.channels
        self.assertEqual(channels.subscriptionsOf(alice.sessionId), ("chat:a", "chat:b"))
        self.assertEqual(channels.subscriptionsOf(alice2.sessionId), ("chat:a",))
        self.assertEqual(channels.subscriptionsOf("nobody"), ())
        self.assertFalse(hasattr(alice, "subscriptions"))
        self.successResultOf(self.call(alice, "unsubscribe", "chat:a"))
        self.assertEqual(channels.subscriptionsOf(alice.sessionId), ("chat:b",))

    def test_forgottenAtClose(self) -> None:
        """
        A closed session leaves its channels and is forgotten; closing it
        again, or one never seen, changes nothing.
        """
        self.build("chat:*:public=true")
        alice, bob = self.connect("alice"), self.connect("bob")
        self.successResultOf(self.call(alice, "subscribe", "chat:a"))
        self.successResultOf(self.call(bob, "subscribe", "chat:a"))
        alice.open = False
        self.router.sessionClosed(alice)
        self.assertEqual(self.router.channels.subscriptionsOf(alice.sessionId), ())
        self.assertEqual(self.router.channels._bySession.keys(), {bob.sessionId})
        self.assertEqual(self.router.registry.presenceOf("chat:a"), {"bob": 1})
        self.router.sessionClosed(alice)
        self.router.channels.sessionClosed(FakeSession("ghost"))
        self.assertEqual(self.router.registry.presenceOf("chat:a"), {"bob": 1})

    def test_closedWhileAuthorizing(self) -> None:
        """
        A subscribe whose authorization answers after the session closed
        indexes nothing and keeps no entry for it.
        """
        pending: Deferred[bool] = Deferred()

        @implementer(IChannelAuthorizer)
        class Slow:
            def maySubscribe(self, identity: Identity, channel: str) -> Deferred[bool]:
                return pending

            def mayPublish(self, identity: Identity, channel: str) -> bool:
                return False

        self.build("room:*", authorizer=Slow())
        alice = self.connect("alice")
        d = self.call(alice, "subscribe", "room:1")
        alice.open = False
        self.router.sessionClosed(alice)
        pending.callback(True)
        self.successResultOf(d)
        self.assertEqual(self.router.registry.subscribersOf("room:1"), ())
        self.assertEqual(self.router.channels._bySession, {})


class SynchronousAnswerTests(RouterTestCase):
    """
    C{publish} answers with the result itself when nothing has to wait (no
    Deferred: the line port's hot path), with a Deferred otherwise, and the
    result is the same either way.
    """

    def test_online(self) -> None:
        """
        A push to uids that all have sessions, or to everyone, is delivered
        and answered at once.
        """
        self.build()
        a, a2, b = self.connect("a"), self.connect("a"), self.connect("b")
        self.assertEqual(self.router.publish(Envelope(ToUids(("a",)), b"x")), PushResult(2, {"a": 2}))
        self.assertEqual(self.router.publish(Envelope(ToUids(("a", "b", "a")), b"y")), PushResult(3, {"a": 2, "b": 1}))
        self.assertEqual(self.router.publish(Envelope(ToAll(), b"z")), PushResult(3))
        self.assertEqual(a.texts, ["x", "y", "z"])
        self.assertEqual(a2.texts, ["x", "y", "z"])
        self.assertEqual(b.texts, ["y", "z"])

    def test_offlineWaits(self) -> None:
        """
        With an offline queue, a uid without sessions waits for the store:
        the others are delivered at once, the answer comes later; a channel
        with history waits for its append.
        """
        self.build("c:history=10")
        a = self.connect("a")
        self.known("gone")
        self.store.gated = True
        d = self.router.publish(Envelope(ToUids(("a", "gone")), b"x"))
        self.assertIsInstance(d, Deferred)
        self.assertEqual(a.texts, ["x"])
        self.assertIsInstance(self.router.publish(Envelope(ToChannel("c"), b"1")), Deferred)
        self.store.drain()
        self.assertEqual(self.successResultOf(d), PushResult(1, {"a": 1, "gone": 0}, ("gone",)))

    def test_noOfflineQueue(self) -> None:
        """
        Without an offline queue, nobody connected is simply 0, at once.
        """
        self.build(offline=None)
        self.assertEqual(self.router.publish(Envelope(ToUids(("gone",)), b"x")), PushResult(0, {"gone": 0}))

    def test_framed(self) -> None:
        """
        Pushes are framed for the routing's protocol.
        """
        self.build(framePush=encodePush)
        a = self.connect("a")
        self.router.publish(Envelope(ToUids(("a",)), b"hi"))
        self.assertEqual(messages(a), [{"type": "push", "data": "hi"}])

    def test_behindChunkedDelivery(self) -> None:
        """
        While a chunked delivery is under way, a push waits its turn (a
        Deferred, nothing written yet), and is answered at once again after.
        """
        self.build()
        fanout = self.router.broker.fanout  # type: ignore[attr-defined]
        fanout.chunkSize = 2
        sessions = [self.connect(f"u{i}") for i in range(3)]
        pending = publishing(self.router, Envelope(ToAll(), b"big"))
        self.assertNoResult(pending)
        small = self.router.publish(Envelope(ToUids(("u0",)), b"small"))
        self.assertIsInstance(small, Deferred)
        self.assertEqual(sessions[0].texts, [])
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(pending).delivered, 3)
        self.assertEqual(self.successResultOf(small).delivered, 1)  # type: ignore[arg-type]
        self.assertEqual(self.router.publish(Envelope(ToUids(("u0",)), b"again")), PushResult(1, {"u0": 1}))
        self.assertEqual(sessions[0].texts, ["big", "small", "again"])


class BatchTests(RouterTestCase):
    """
    A batch of pushes (the line port's read, on a broker that answers
    later) is one operation of a broker that has a batch path, with each
    push's outcome what a publish of it alone would have answered.
    """

    def outcomes(self, *envelopes: Envelope) -> list[Any]:
        return self.successResultOf(self.router.publishBatch(envelopes))

    def test_interface(self) -> None:
        """
        The router has a batch path (L{IBatchPublisher}).
        """
        self.assertTrue(verifyObject(IBatchPublisher, self.build()))

    def test_oneBatchOfTheBroker(self) -> None:
        """
        Pushes to uids go to the broker as one batch; a uid without a
        connection has its push queued, as a single push's would be, and
        gets it when it connects.
        """
        self.build(wrapBroker=BatchingBroker)
        self.known("off")
        online = self.connect("on")
        a, b, c = (Envelope(ToUids(uids), text) for uids, text in (
            (("on",), b"m1"), (("off",), b"m2"), (("on", "off"), b"m3"),
        ))  # fmt: skip
        outcomes = self.outcomes(a, b, c)
        self.assertEqual(self.router.broker.batches, [[a, b, c]])
        self.assertEqual(
            [(o.delivered, o.queued) for o in outcomes], [(1, ()), (0, ("off",)), (1, ("off",))]
        )
        self.assertEqual(online.texts, ["m1", "m3"])
        self.assertEqual(self.connect("off").texts, ["m2", "m3"])

    def test_aChannelOneByOne(self) -> None:
        """
        A batch with a channel message in it is published one push at a
        time: a channel's message goes through its history first.
        """
        self.build("news:*:history=10:public=true", wrapBroker=BatchingBroker)
        session = self.connect("on")
        self.successResultOf(self.call(session, "subscribe", "news:a"))
        outcomes = self.outcomes(Envelope(ToUids(("on",)), b"m1"), Envelope(ToChannel("news:a"), b'{"x":1}'))
        self.assertEqual(self.router.broker.batches, [])
        self.assertEqual([o.delivered for o in outcomes], [1, 1])
        self.assertEqual(outcomes[1].offset, 1)

    def test_brokerWithoutBatches(self) -> None:
        """
        Over a broker without a batch path (the memory broker), a batch is
        published one push at a time, with the same outcomes.
        """
        self.build()
        self.connect("on")
        outcomes = self.outcomes(Envelope(ToUids(("on",)), b"m1"), Envelope(ToUids(("nobody",)), b"m2"))
        self.assertEqual([(o.delivered, o.queued) for o in outcomes], [(1, ()), (0, ())])

    def test_queueingFailsAlone(self) -> None:
        """
        A push whose queueing failed (the store is down) fails alone in
        its place; the others are answered.
        """
        self.known("off")
        self.store = FaultyStore(self.store)  # type: ignore[assignment]
        self.build(wrapBroker=BatchingBroker)
        self.connect("on")
        self.store.fault = StoreUnavailable("disk full")  # type: ignore[attr-defined]
        outcomes = self.outcomes(Envelope(ToUids(("off",)), b"m1"), Envelope(ToUids(("on",)), b"m2"))
        self.assertIsInstance(outcomes[0], Failure)
        self.assertTrue(outcomes[0].check(StoreUnavailable))
        self.assertEqual(outcomes[1].delivered, 1)
