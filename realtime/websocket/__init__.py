"""The WebSocket shell: Autobahn's protocol and factory, the handshake, the sending half."""
