"""Every private name of Autobahn and Twisted the server touches, in one room."""
