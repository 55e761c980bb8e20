/*
 * realtime.js: the browser client of realtime's channels protocol.
 *
 * No dependencies, no build step: load it from the server itself
 * (<script src="/realtime.js"></script>) and it works offline.
 *
 *   var rt = new Realtime("ws://127.0.0.1:8080/ws?token=...");
 *   rt.subscribe("news", function (data, message) { ... });  // message.replayed:
 *                       // true for what a resume replays from history
 *   rt.publish("chat:lobby", {text: "hi"}).then(function (result) { ... });
 *   // requests made before the socket is open wait for it (at most `timeout`
 *   // ms), so the lines above work pasted as one block
 *   rt.presence("chat:lobby").then(function (p) { ... });
 *   rt.send("raw text");                          // routing chat / echo: no protocol
 *   rt.onpush = function (text) { ... };          // pushes addressed to this uid
 *   rt.onevent = function (event) { ... };        // join, leave, error frames, and
 *                       // {type: "identity", uid} when the URL asks ?identity=1
 *                       // (then rt.uid is the uid the server gave this connection)
 *   rt.onstatus = function (status, detail) { ... };   // connecting, open, closed
 *   rt.onsubscribed = function (name, result, error) { ... };  // every subscribe
 *                       // reply, resumes included ({recovered, missed}); error if refused
 *
 * It reconnects by itself with exponential backoff and jitter, and on every
 * reconnect resubscribes each channel from the last offset it received, so
 * messages published while it was away arrive, in order, exactly once.  When
 * the server can no longer serve that position (history expired, server
 * store reset) the channel's onlost callback says so instead of pretending.
 * When the browser comes back online it reconnects at once, not after the
 * backoff.
 *
 * It also works against servers that do not speak the channels protocol
 * (routing uid or chat): every text that is not one of the protocol's frames
 * goes to onpush, as it arrived.
 *
 * Options (second argument):
 *   firstMessage  text sent first on every connection (uid-first-packet auth)
 *   protocols     WebSocket subprotocols (e.g. a WeChat-style signature)
 *   minDelay      first reconnect delay in ms (500)
 *   maxDelay      largest reconnect delay in ms (30000)
 *   timeout       ms before a request without a reply fails, waiting for a
 *                 connection included (10000)
 *   storage       a Storage (window.sessionStorage) to keep positions across
 *                 page reloads; positions are kept in memory otherwise
 */
(function (root) {
  "use strict";

  function Realtime(url, options) {
    if (!(this instanceof Realtime)) { return new Realtime(url, options); }
    options = options || {};
    this.url = url;
    this.options = options;
    this.minDelay = options.minDelay || 500;
    this.maxDelay = options.maxDelay || 30000;
    this.timeout = options.timeout || 10000;
    this.storage = options.storage || null;
    this.channels = {};        // name -> {handler, onlost, epoch, offset, active, resuming, waiters}
    this.pending = {};         // request id -> {resolve, reject, timer}
    this.waiting = [];         // requests made while not connected: {request, resolve, reject, timer}
    this.nextId = 1;
    this.attempt = 0;
    this.closedByUser = false;
    this.socket = null;
    this.connected = false;
    this.uid = null;           // the server's uid for this connection, if the URL asked ?identity=1
    this.onpush = null;        // function (text)
    this.onevent = null;       // function (event): join / leave
    this.onstatus = null;      // function ("connecting" | "open" | "closed", detail)
    this.onsubscribed = null;  // function (name, result, error)
    var self = this;
    if (root.addEventListener) {
      // the browser regained a network: try now rather than after the backoff
      root.addEventListener("online", function () {
        if (!self.socket && !self.closedByUser) { clearTimeout(self._timer); self.connect(); }
      });
    }
    this.connect();
  }

  // the frames of the channels protocol; anything else is a push as it arrived
  var FRAME_TYPES = {reply: true, message: true, push: true, join: true, leave: true, error: true, identity: true};

  Realtime.prototype._status = function (status, detail) {
    if (this.onstatus) { this.onstatus(status, detail); }
  };

  Realtime.prototype.connect = function () {
    var self = this;
    self.closedByUser = false;
    self._status("connecting", {attempt: self.attempt});
    var socket = self.options.protocols ? new WebSocket(self.url, self.options.protocols) : new WebSocket(self.url);
    self.socket = socket;
    socket.onopen = function () {
      if (socket !== self.socket) { return; }
      self.attempt = 0;
      self.connected = true;
      if (self.options.firstMessage) { socket.send(self.options.firstMessage); }
      self._status("open");
      Object.keys(self.channels).forEach(function (name) {
        var waiters = self.channels[name].waiters || [];
        self.channels[name].waiters = null;
        self._sendSubscribe(name).then(function (result) {
          waiters.forEach(function (w) { w.resolve(result); });
        }, function (err) {
          // a resubscribe that fails is reported, not left as an unhandled rejection
          waiters.forEach(function (w) { w.reject(err); });
          if (!waiters.length && self.onsubscribed) { self.onsubscribed(name, null, err); }
        });
      });
      // after the subscribes, so a publish made with them reaches this page too
      var waiting = self.waiting;
      self.waiting = [];
      waiting.forEach(function (w) {
        clearTimeout(w.timer);
        self._sendRequest(w.request).then(w.resolve, w.reject);
      });
    };
    socket.onmessage = function (e) {
      if (socket === self.socket) { self._received(e.data); }
    };
    socket.onclose = function (e) {
      if (socket !== self.socket) { return; }
      self.connected = false;
      self.socket = null;
      Object.keys(self.channels).forEach(function (name) { self.channels[name].active = false; });
      self._failPending("connection closed");
      self._status("closed", {code: e.code, reason: e.reason});
      if (!self.closedByUser) { self._reconnectLater(); }
    };
  };

  Realtime.prototype._reconnectLater = function () {
    var self = this;
    var delay = Math.min(self.maxDelay, self.minDelay * Math.pow(2, self.attempt));
    delay = delay / 2 + Math.random() * delay / 2;
    self.attempt += 1;
    self._timer = setTimeout(function () { self.connect(); }, delay);
  };

  Realtime.prototype.close = function () {
    this.closedByUser = true;
    clearTimeout(this._timer);
    if (this.socket) { this.socket.close(1000); }
    var waiting = this.waiting;
    this.waiting = [];
    waiting.forEach(function (w) { clearTimeout(w.timer); w.reject(new Error("not connected: close() was called")); });
  };

  Realtime.prototype._position = function (name) {
    var channel = this.channels[name];
    if (channel.epoch === undefined && this.storage) {
      try {
        var saved = JSON.parse(this.storage.getItem("realtime:" + name) || "null");
        if (saved) { channel.epoch = saved.epoch; channel.offset = saved.offset; }
      } catch (err) { /* a corrupt entry is no position */ }
    }
    return channel.epoch === undefined ? null : {epoch: channel.epoch, offset: channel.offset};
  };

  Realtime.prototype._remember = function (name, epoch, offset) {
    var channel = this.channels[name];
    if (!channel || epoch === undefined || epoch === null) { return; }
    channel.epoch = epoch;
    channel.offset = offset;
    if (this.storage) {
      try { this.storage.setItem("realtime:" + name, JSON.stringify({epoch: epoch, offset: offset})); } catch (err) { }
    }
  };

  /* Subscribe to a channel; handler(data, message) gets each message.
   * onlost(result) is called when a resume could not be served.  The
   * promise is the server's reply, on the next connection if none is open. */
  Realtime.prototype.subscribe = function (name, handler, onlost) {
    var channel = this.channels[name] = this.channels[name] || {};
    channel.handler = handler;
    channel.onlost = onlost || null;
    if (this.connected) { return this._sendSubscribe(name); }
    return new Promise(function (resolve, reject) {
      (channel.waiters = channel.waiters || []).push({resolve: resolve, reject: reject});
    });
  };

  Realtime.prototype._sendSubscribe = function (name) {
    var self = this;
    var since = self._position(name);
    self.channels[name].resuming = !!since;
    var request = {op: "subscribe", channel: name};
    if (since) { request.since = since; }
    return self._request(request).then(function (result) {
      var channel = self.channels[name];
      if (!channel) { return result; }
      channel.active = true;
      if (since && result.recovered === false && channel.onlost) { channel.onlost(result); }
      // messages released before this reply may already have moved the
      // position past result.offset: never move it back
      if (result.epoch !== undefined &&
          (channel.epoch !== result.epoch || channel.offset === undefined || result.offset > channel.offset)) {
        self._remember(name, result.epoch, result.offset);
      }
      if (self.onsubscribed) { self.onsubscribed(name, result); }
      return result;
    });
  };

  Realtime.prototype.unsubscribe = function (name) {
    delete this.channels[name];
    if (this.storage) { this.storage.removeItem("realtime:" + name); }
    return this.connected ? this._request({op: "unsubscribe", channel: name}) : Promise.resolve(null);
  };

  /* Send a raw text message, for servers without the channels protocol
   * (routing chat or echo).  Returns false when not connected. */
  Realtime.prototype.send = function (text) {
    if (!this.connected) { return false; }
    this.socket.send(text);
    return true;
  };

  Realtime.prototype.publish = function (name, data) {
    return this._request({op: "publish", channel: name, data: data});
  };

  Realtime.prototype.presence = function (name) {
    return this._request({op: "presence", channel: name});
  };

  Realtime.prototype.ping = function () {
    return this._request({op: "ping"});
  };

  Realtime.prototype._request = function (request) {
    var self = this;
    if (self.connected) { return self._sendRequest(request); }
    if (self.closedByUser) { return Promise.reject(new Error("not connected: close() was called")); }
    return new Promise(function (resolve, reject) {
      var entry = {request: request, resolve: resolve, reject: reject};
      entry.timer = setTimeout(function () {
        self.waiting.splice(self.waiting.indexOf(entry), 1);
        reject(new Error("not connected within " + self.timeout + " ms: " + request.op + " not sent"));
      }, self.timeout);
      self.waiting.push(entry);
    });
  };

  Realtime.prototype._sendRequest = function (request) {
    var self = this;
    request.id = self.nextId++;
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        delete self.pending[request.id];
        reject(new Error("no reply to " + request.op + " within " + self.timeout + " ms"));
      }, self.timeout);
      self.pending[request.id] = {resolve: resolve, reject: reject, timer: timer};
      self.socket.send(JSON.stringify(request));
    });
  };

  Realtime.prototype._failPending = function (why) {
    var pending = this.pending;
    this.pending = {};
    Object.keys(pending).forEach(function (id) {
      clearTimeout(pending[id].timer);
      pending[id].reject(new Error(why));
    });
  };

  Realtime.prototype._received = function (text) {
    var message;
    try { message = JSON.parse(text); } catch (err) { message = null; }
    if (!message || typeof message !== "object" || !FRAME_TYPES.hasOwnProperty(message.type)) {
      if (this.onpush) { this.onpush(text); }
      return;
    }
    if (message.type === "reply") {
      var waiting = this.pending[message.id];
      if (!waiting) { return; }
      delete this.pending[message.id];
      clearTimeout(waiting.timer);
      if (message.ok) { waiting.resolve(message.result); } else {
        var error = new Error(message.error.message);
        error.code = message.error.code;
        waiting.reject(error);
      }
    } else if (message.type === "message") {
      var channel = this.channels[message.channel];
      if (!channel) { return; }
      if (message.offset !== undefined) {
        if (channel.epoch === message.epoch && message.offset <= channel.offset) { return; }
        this._remember(message.channel, message.epoch, message.offset);
      }
      // before the reply to a resuming subscribe come the messages missed
      message.replayed = !!channel.resuming && !channel.active;
      if (channel.handler) { channel.handler(message.data, message); }
    } else if (message.type === "push") {
      if (this.onpush) { this.onpush(message.data); }
    } else if (message.type === "identity") {
      this.uid = message.uid;
      if (this.onevent) { this.onevent(message); }
    } else if (this.onevent) {
      this.onevent(message);
    }
  };

  if (typeof module === "object" && module.exports) { module.exports = Realtime; } else { root.Realtime = Realtime; }
})(typeof self !== "undefined" ? self : this);
