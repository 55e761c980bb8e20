"""
Tests for L{realtime.websocket._autobahn.debuglogs}.
"""

from autobahn.twisted import websocket as twistedWebsocket
from autobahn.websocket import protocol as websocketProtocol
from twisted.trial.unittest import SynchronousTestCase

from realtime.websocket._autobahn.debuglogs import plainType, plainValue, useCheapFormatting


class CheapFormattingTests(SynchronousTestCase):
    """
    The plain helpers say the same as Autobahn's, without the cost.
    """

    def test_installed(self) -> None:
        """
        After L{useCheapFormatting} the Autobahn modules use the plain helpers.
        """
        useCheapFormatting()
        for module in (websocketProtocol, twistedWebsocket):
            self.assertIs(module.hltype, plainType)
            self.assertIs(module.hlval, plainValue)

    def test_meaning(self) -> None:
        """
        A function is named by its qualified name; a value is itself.
        """
        self.assertEqual(plainType(CheapFormattingTests.test_meaning), "<CheapFormattingTests.test_meaning>")
        self.assertEqual(plainValue(42), 42)
