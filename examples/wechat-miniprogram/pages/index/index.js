var config = require("../../config.js");
var RealtimeSocket = require("../../utils/realtime.js");

// Ask your backend for a signed ticket. It knows who this user is from its
// own session (wx.login -> code2Session), so the uid never comes from here.
function getTicket() {
  return new Promise(function (resolve, reject) {
    wx.login({
      success: function (login) {
        wx.request({
          url: config.ticketUrl,
          method: "POST",
          data: {code: login.code},
          success: function (res) {
            if (res.statusCode === 200 && res.data && res.data.signature) { resolve(res.data); } else { reject(res); }
          },
          fail: reject
        });
      },
      fail: reject
    });
  });
}

Page({
  data: {status: "connecting", statusText: "connecting", uid: "", messages: [], last: ""},
  nextId: 1,

  onLoad: function () {
    var page = this;
    page.socket = new RealtimeSocket({
      url: config.socketUrl,
      getTicket: function () {
        return getTicket().then(function (ticket) { page.setData({uid: ticket.uid}); return ticket; });
      },
      onStatus: function (status, detail) {
        var text = status === "open" ? "connected" : status === "closed" ? "reconnecting" : "connecting";
        page.setData({status: status, statusText: text});
      },
      onMessage: function (data) {
        var d = new Date();
        var id = page.nextId++;
        var message = {id: id, time: d.toTimeString().slice(0, 8), text: String(data)};
        page.setData({messages: page.data.messages.concat([message]).slice(-200), last: "m" + id});
      }
    });
  },

  onUnload: function () {
    this.socket.close();
  }
});
