/*
 * The demo page: a chat room over the channels protocol, and a push console
 * that calls the HTTP API.  It asks /config.json how the server is set up
 * and adapts: a chat room with who-is-online (--routing channels), a relay
 * chat (--routing chat), or a push receiver (--routing uid, the default),
 * and says which options give the chat when they are missing.
 *
 * Everything a peer or the backend sends is shown with textContent, never
 * as HTML.
 */
(function () {
  "use strict";

  var CHAT_START = "twistd -n realtime --routing channels \\\n" +
      "    --namespace 'chat:*:public=true:publish=true:presence=true:history=100:ttl=3600'";
  var MAX_LINES = 500;
  var $ = function (id) { return document.getElementById(id); };

  var config = null;     // /config.json
  var mode = null;       // "channels" | "relay" | "listen"
  var rt = null;         // the Realtime client
  var me = null;         // the name (uid) we joined as
  var online = {};       // uid -> connections, from presence
  var wasOpen = false;   // whether the connection that just closed had opened (one line per outage)

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function clock() {
    var d = new Date();
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2) + ":" + ("0" + d.getSeconds()).slice(-2);
  }

  function line(kind, who, text) {
    var list = $("messages");
    var li = el("li", kind);
    li.appendChild(el("span", "time", clock()));
    if (who) { li.appendChild(el("span", "who", who)); }
    li.appendChild(document.createTextNode(text));
    list.appendChild(li);
    while (list.children.length > MAX_LINES) { list.removeChild(list.firstChild); }
    list.scrollTop = list.scrollHeight;
  }

  function system(text) { line("system", null, text); }

  function setStatus(state, text) {
    var pill = $("status");
    pill.setAttribute("data-state", state);
    pill.textContent = text;
  }

  function explain(paragraphs, command) {
    var box = $("notice");
    paragraphs.forEach(function (text) { box.appendChild(el("p", null, text)); });
    if (command) { box.appendChild(el("pre", null, command)); }
    box.hidden = false;
  }

  // -- how the server is set up ---------------------------------------------

  function decide() {
    var chat = config.chat || {};
    $("channel").textContent = config.routing === "channels" ? chat.channel : "";
    $("server").textContent = "routing " + config.routing + ", auth " + config.auth;
    if (config.routing === "channels" && chat.public && chat.publish) {
      mode = "channels";
      if (!chat.presence) { $("who-note").textContent = "presence is off for chat:* (add presence=true)"; }
    } else if (config.routing === "channels") {
      mode = "listen";
      explain(["This server speaks the channels protocol, but its chat:* namespace is not open: " +
               "clients need public=true and publish=true (and presence=true for who is online). " +
               "You can still connect and receive pushes. Start it with:"], CHAT_START);
    } else if (config.routing === "chat") {
      mode = "relay";
      $("who-note").textContent = "who is online needs --routing channels with presence=true";
    } else {
      mode = "listen";
      explain(["This server runs routing '" + config.routing + "' (the default 'uid' is the Workerman push " +
               "service: backends push, clients only listen), so there is no chat room here. Connect as a uid " +
               "below and push to it from the console, the line port or the HTTP API. For the chat room, " +
               "start the server with:"], CHAT_START);
    }
    if (mode === "listen") {
      $("chat-title").textContent = "Pushes";
      $("name-label").textContent = "uid";
      $("name").value = "uid1";
      $("join-button").textContent = "Connect";
      $("who-note").textContent = "who is online needs --routing channels with presence=true";
    }
    if (config.auth !== "uid-first-packet" && config.auth !== "anonymous") {
      explain(["Auth '" + config.auth + "' decides who you are at the handshake, from credentials this page " +
               "does not have. Open the page with them in its query string (it passes it on to /ws), e.g. " +
               "/?token=<JWT> for --auth token; the name below is then only a display name."]);
    }
  }

  // -- the connection --------------------------------------------------------

  function wsUrl() {
    // ?identity=1: the server says which uid it gave this page (anonymous auth makes one up)
    var query = (location.search ? location.search + "&" : "?") + "identity=1";
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + query;
  }

  // what a close code means, for the one line a disconnection gets
  var CLOSE_WORDS = {
    1000: "closed", 1001: "the server is shutting down or restarting", 1006: "the connection was lost",
    1008: "policy violation", 1009: "a message was too large", 1011: "server error",
    1013: "the server dropped a slow connection", 4001: "authentication failed",
    4002: "no authentication in time", 4008: "too many connections for this uid",
    4029: "rate limited"
  };

  function closeWords(detail) {
    // the server's own reason says it best; a browser's 1006 has none
    var code = detail && detail.code;
    if (detail && detail.reason) { return detail.reason; }
    return CLOSE_WORDS[code] || (code ? "closed with code " + code : "the connection was lost");
  }

  function join(name) {
    me = name;
    var options = {maxDelay: 5000};
    if (config.auth === "uid-first-packet") { options.firstMessage = name; }
    rt = new Realtime(wsUrl(), options);
    rt.onstatus = onStatus;
    rt.onpush = onPush;
    rt.onevent = onEvent;
    rt.onsubscribed = onSubscribed;
    if (mode === "channels") {
      rt.subscribe(config.chat.channel, onChatMessage, function (result) {
        system("the server could not replay what was missed (history gone); now at offset " + result.offset);
      }).catch(function (err) { system("could not join " + config.chat.channel + ": " + err.message); });
    }
    $("join").hidden = true;
    $("text").disabled = $("send").disabled = mode === "listen";
    if (mode !== "listen") { $("text").focus(); }
    if ($("target-kind").value === "uid") { $("target").value = name; }
    renderOnline();
  }

  function connectedAs() {
    var uid = rt && rt.uid;
    return "connected as " + (uid || me) + (uid && uid !== me ? " (shown as " + me + ")" : "");
  }

  function onStatus(status, detail) {
    if (status === "open") {
      wasOpen = true;
      setStatus("open", connectedAs());
      if (mode !== "channels") { system("connected"); }
    } else if (status === "connecting") {
      if (!detail || !detail.attempt) { setStatus("connecting", "connecting"); }
    } else {
      // one line per disconnection, however many attempts it takes to come back
      if (wasOpen) { system("disconnected (" + closeWords(detail) + "); reconnecting by itself"); }
      wasOpen = false;
      setStatus("closed", "reconnecting: " + closeWords(detail));
      online = {};
      renderOnline();
    }
  }

  function onSubscribed(name, result, error) {
    if (error) { system("could not rejoin " + name + ": " + error.message); return; }
    if (result.recovered) {
      system("reconnected: " + result.missed + " missed message" + (result.missed === 1 ? "" : "s") + " recovered");
    } else if (result.recovered === undefined) {
      system("joined " + name + " as " + me);
    }
    if (config.chat.presence) {
      rt.presence(name).then(function (p) { online = p.uids || {}; renderOnline(); }, function () {});
    }
  }

  function onChatMessage(data, message) {
    var who = data && typeof data === "object" && typeof data.name === "string" ? data.name : null;
    var text = data && typeof data === "object" && typeof data.text === "string" ? data.text
        : (typeof data === "string" ? data : JSON.stringify(data));
    var label = (who === null ? "backend" : who) + (message && message.replayed ? " (replayed)" : "");
    line(who === null ? "backend" : (who === me ? "mine" : "theirs"), label, text);
  }

  function onPush(text) {
    if (mode === "relay") {
      try {
        var data = JSON.parse(text);
        if (data && typeof data.name === "string" && typeof data.text === "string") {
          line("theirs", data.name, data.text);
          return;
        }
      } catch (err) { /* not ours: shown as it came */ }
      line("theirs", null, text);
      return;
    }
    line("push", "push", text);
  }

  function onEvent(event) {
    if (event.type === "identity") {
      // the uid pushes must name: under anonymous auth not the name typed
      setStatus("open", connectedAs());
      if ($("target-kind").value === "uid" && $("target").value === me) { $("target").value = event.uid; }
      if (event.uid !== me) { system("the server knows this page as " + event.uid + ": push to that uid"); }
      return;
    }
    if (event.type === "join") {
      online[event.uid] = online[event.uid] || 1;
      if (event.uid !== me) { system(event.uid + " joined"); }
    } else if (event.type === "leave") {
      delete online[event.uid];
      system(event.uid + " left");
    } else if (event.type === "error") {
      system("server: " + event.message);
    }
    renderOnline();
  }

  function renderOnline() {
    var list = $("online");
    list.textContent = "";
    var names = Object.keys(online);
    if (mode !== "channels" && me && rt && rt.connected) { names = [me]; }
    names.sort().forEach(function (uid) {
      var li = el("li", uid === me ? "me" : null, uid);
      if (online[uid] > 1) { li.appendChild(el("span", "muted small", " \u00d7" + online[uid])); }
      list.appendChild(li);
    });
    $("count").textContent = String(names.length);
  }

  function say(text) {
    if (mode === "channels") {
      rt.publish(config.chat.channel, {name: me, text: text}).catch(function (err) {
        system("not sent: " + err.message);
      });
    } else if (mode === "relay") {
      rt.send(JSON.stringify({name: me, text: text}));
      line("mine", me, text);  // relay chat does not send it back to its sender
    }
  }

  // -- the push console --------------------------------------------------------

  function shellQuote(text) { return "'" + text.replace(/'/g, "'\\''") + "'"; }

  function consoleSetup() {
    var api = config.api || {};
    var url = sessionStorage.getItem("realtime:api-url") ||
        (api.port ? location.protocol + "//" + location.hostname + ":" + api.port : "");
    $("api-url").value = url;
    $("api-key").value = sessionStorage.getItem("realtime:api-key") || "";
    $("target").value = "uid1";
    if (!api.port) { $("answer").hidden = false; $("answer").textContent = "The HTTP API is off on this server (--api-port none): enter its URL if it runs elsewhere."; }
    if (!api.cors) { $("answer").hidden = false; $("answer").textContent = "This server does not let pages call its API (--api-cors-origin none): push with curl instead."; }
    $("target-kind").onchange = function () {
      var kind = $("target-kind").value;
      $("target").disabled = kind === "broadcast";
      $("target").value = kind === "channel" ? (config.chat.channel || "chat:lobby") : (kind === "uid" ? (me || "uid1") : "");
    };
  }

  function pushFromPage() {
    var base = $("api-url").value.replace(/\/+$/, "");
    var key = $("api-key").value.trim();
    sessionStorage.setItem("realtime:api-url", base);
    sessionStorage.setItem("realtime:api-key", key);
    var kind = $("target-kind").value;
    var raw = $("data").value;
    var data;
    try { data = JSON.parse(raw); } catch (err) { data = raw; }
    var body = {data: data};
    var path = "/api/broadcast";
    if (kind === "uid") { body.uid = $("target").value.trim(); path = "/api/push"; }
    if (kind === "channel") { body.channel = $("target").value.trim(); path = "/api/publish"; }
    var json = JSON.stringify(body);
    var answer = $("answer");
    answer.hidden = false;
    answer.textContent = "\u2026";
    $("curl").hidden = false;
    $("curl").textContent = "curl -s -H \"Authorization: Bearer $(cat realtime-api.key)\" -d " + shellQuote(json) + " " + base + path;
    fetch(base + path, {
      method: "POST",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
      body: json
    }).then(function (response) {
      return response.text().then(function (text) {
        var shown = text;
        try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (err) { /* shown as is */ }
        answer.setAttribute("data-ok", String(response.ok));
        answer.textContent = "HTTP " + response.status + "\n" + shown;
      });
    }).catch(function (err) {
      answer.setAttribute("data-ok", "false");
      answer.textContent = "could not reach the API at " + base + " (" + err.message + "). It listens on " +
          "127.0.0.1 by default: open this page on the same machine, or set --api-port.";
    });
  }

  // -- start -------------------------------------------------------------------

  $("join").onsubmit = function (e) {
    e.preventDefault();
    var name = $("name").value.trim();
    if (name) { join(name); }
  };
  $("say").onsubmit = function (e) {
    e.preventDefault();
    var text = $("text").value;
    if (text.trim() && rt && rt.connected) { say(text); $("text").value = ""; }
  };
  $("push").onsubmit = function (e) { e.preventDefault(); pushFromPage(); };

  fetch("/config.json").then(function (r) { return r.json(); }).then(function (c) {
    config = c;
    decide();
    consoleSetup();
    document.body.setAttribute("data-mode", mode);
  }).catch(function (err) {
    explain(["Could not read /config.json from the server: " + err.message]);
  });
})();
