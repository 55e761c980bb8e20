/*
 * A realtime client for mini programs: wx.connectSocket with the signature
 * the server's --auth wechat checks, and reconnection with backoff.
 *
 * Each connection needs a fresh ticket (the server refuses a nonce twice and
 * a timestamp more than 300 s off), so getTicket is asked again before every
 * reconnect. The ticket goes in the subprotocol "wx.<uid>.<timestamp>.<nonce>.<signature>":
 * the server echoes it in its 101 answer, which WeChat requires when
 * protocols are given. (The header form, header: {uid, timestamp, nonce,
 * signature}, works too; use it if your uids hold characters a subprotocol
 * token cannot: spaces, @ , / and the like.)
 *
 *   var socket = new RealtimeSocket({url, getTicket, onMessage, onStatus});
 *   socket.close();
 */
function RealtimeSocket(options) {
  this.url = options.url;
  this.getTicket = options.getTicket;        // function () -> Promise of the ticket
  this.onMessage = options.onMessage || function () {};
  this.onStatus = options.onStatus || function () {};
  this.attempt = 0;
  this.closed = false;
  this.task = null;
  this.connect();
}

RealtimeSocket.prototype.connect = function () {
  var self = this;
  self.onStatus("connecting", self.attempt);
  self.getTicket().then(function (ticket) {
    if (self.closed) { return; }
    var task = wx.connectSocket({
      url: self.url,
      protocols: ["wx." + ticket.uid + "." + ticket.timestamp + "." + ticket.nonce + "." + ticket.signature]
    });
    self.task = task;
    task.onOpen(function () { self.attempt = 0; self.onStatus("open"); });
    task.onMessage(function (res) { self.onMessage(res.data); });
    task.onClose(function (res) {
      if (task !== self.task) { return; }
      self.task = null;
      self.onStatus("closed", res.code, res.reason);
      self.reconnectLater();
    });
    task.onError(function () { /* onClose follows */ });
  }, function () {
    self.reconnectLater();
  });
};

RealtimeSocket.prototype.reconnectLater = function () {
  var self = this;
  if (self.closed) { return; }
  var delay = Math.min(30000, 500 * Math.pow(2, self.attempt));
  self.attempt += 1;
  self.timer = setTimeout(function () { self.connect(); }, delay / 2 + Math.random() * delay / 2);
};

RealtimeSocket.prototype.close = function () {
  this.closed = true;
  clearTimeout(this.timer);
  if (this.task) { this.task.close({code: 1000}); }
};

module.exports = RealtimeSocket;
