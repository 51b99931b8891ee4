// A sample page: who am I (a protected API), my phone number (getPhoneNumber button), live updates
// (a WebSocket), log out. Every call goes through the app's wxgate client, which logs in when needed.
const { gateway } = getApp();

Page({
  data: { greeting: '', phone: '', error: '' },

  async onLoad() {
    try {
      // The backend behind wxgate reads X-OpenId; the page never handles a code or a session_key.
      const res = await gateway.request({ url: '/api/me' });
      this.setData({ greeting: res.statusCode === 200 ? JSON.stringify(res.data) : 'status ' + res.statusCode });
      this.socket = await gateway.connectSocket({ url: '/ws/updates' });
      this.socket.onMessage((message) => this.setData({ greeting: String(message.data) }));
    } catch (error) {
      this.setData({ error: error.code || error.message });
    }
  },

  onUnload() {
    if (this.socket) this.socket.close({});
  },

  // <button open-type="getPhoneNumber" bindgetphonenumber="onPhone">
  async onPhone(event) {
    if (!event.detail.code) return; // the user declined
    try {
      const answer = await gateway.phone(event.detail.code);
      this.setData({ phone: answer.phone_info.phoneNumber });
    } catch (error) {
      this.setData({ error: error.code || error.message });
    }
  },

  async onLogout() {
    await gateway.logout();
    this.setData({ greeting: '', phone: '' });
  },
});
