// Where the servers are. In production both must be https/wss domains listed
// in the mini program's console (开发管理 > 开发设置 > 服务器域名: request and
// socket 合法域名); during development tick 不校验合法域名 in the devtools.
module.exports = {
  // your backend: hands out signed tickets (server/ticket.php or ../python/ticket.py)
  ticketUrl: "https://api.example.com/realtime-ticket",
  // the realtime server's WebSocket: twistd realtime --auth wechat --auth-option token=...
  socketUrl: "wss://push.example.com/ws"
};
