"""
The shared fakes provide the interfaces they stand in for.
"""

from twisted.internet.interfaces import IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from realtime.interfaces import (
    IBackupSource,
    IBatchBroker,
    IBatchPublisher,
    IBroker,
    IFirstMessageAuthenticator,
    IMessageStore,
    IPublisher,
    ISession,
)
from realtime.store.memory import MemoryMessageStore
from realtime.values import Accept, Identity
from tests.fakes import (
    BatchingBroker,
    FakeSession,
    FaultyStore,
    GatedStore,
    ManualBackupStore,
    ManualBatchPublisher,
    ManualBroker,
    ProcessClock,
    ScriptedAuthenticator,
    TurnClock,
)


class FakesTests(SynchronousTestCase):
    """
    C{verifyObject} for every fake.
    """

    def test_fakes(self) -> None:
        """
        L{FakeSession}, L{ManualBroker}, L{GatedStore}, L{FaultyStore},
        L{ManualBackupStore}, L{ScriptedAuthenticator} and L{TurnClock}
        provide their interfaces (a faulty store is a backup source when what
        it wraps is).
        """
        self.assertTrue(verifyObject(ISession, FakeSession("u")))
        self.assertTrue(verifyObject(IBroker, ManualBroker()))
        self.assertTrue(verifyObject(IPublisher, ManualBroker()))
        self.assertTrue(verifyObject(IBatchPublisher, ManualBatchPublisher()))
        self.assertTrue(verifyObject(IBatchBroker, BatchingBroker(ManualBroker())))
        self.assertTrue(verifyObject(IMessageStore, GatedStore(MemoryMessageStore())))
        self.assertTrue(verifyObject(IMessageStore, FaultyStore(MemoryMessageStore())))
        self.assertTrue(verifyObject(IMessageStore, ManualBackupStore()))
        self.assertTrue(verifyObject(IBackupSource, ManualBackupStore()))
        self.assertTrue(verifyObject(IBackupSource, FaultyStore(ManualBackupStore())))
        self.assertFalse(IBackupSource.providedBy(FaultyStore(MemoryMessageStore())))
        self.assertTrue(verifyObject(IFirstMessageAuthenticator, ScriptedAuthenticator(Accept(Identity("u")))))
        self.assertTrue(verifyObject(IReactorTime, TurnClock()))

    def test_processFakes(self) -> None:
        """
        L{ProcessClock} starts processes (and tells time); its
        L{FakeProcess} is a process transport.
        """
        clock = ProcessClock()
        self.assertTrue(verifyObject(IReactorProcess, clock))
        self.assertTrue(verifyObject(IReactorTime, clock))
        self.assertTrue(verifyObject(IProcessTransport, clock.spawnProcess(ProcessProtocol(), "x", ["x"])))

    def test_gateKeepsOrder(self) -> None:
        """
        Answers leave the gate in the order they were asked for.
        """
        from realtime.values import Retention

        store = GatedStore(MemoryMessageStore())
        got = []
        for i in range(3):
            store.append("c", b"%d" % i, False, Retention(10, 60), 0.0).addCallback(lambda m: got.append(m.offset))
        self.assertEqual(store.waiting, 3)
        store.open(1)
        self.assertEqual(got, [1])
        store.open()
        self.assertEqual(got, [1, 2, 3])
