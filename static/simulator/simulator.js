// The chat simulator page. Talks only to /simulator/api/*; every text from the
// server is shown with textContent, never as HTML.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  const state = {
    users: [], current: null, mode: "plain", safeAvailable: false, menu: null,
    threads: new Map(),  // openid -> entries shown in the thread
    cursors: new Map(),  // openid -> last emulator message id seen
  };

  async function api(method, path, body) {
    const options = { method, headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new Error("无法连接服务，请确认演示环境仍在运行");
    }
    let data = null;
    try { data = await response.json(); } catch (err) { /* not JSON */ }
    if (!response.ok) {
      const message = data && data.error ? data.error.message : `请求失败（HTTP ${response.status}）`;
      throw new Error(message);
    }
    return data;
  }

  let toastTimer = null;
  function toast(message) {
    const box = $("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 4000);
  }

  // -- the thread --------------------------------------------------------------

  function threadOf(openid) {
    if (!state.threads.has(openid)) state.threads.set(openid, []);
    return state.threads.get(openid);
  }

  function add(openid, entry) {
    threadOf(openid).push(entry);
    if (openid === state.current) {
      $("thread").appendChild(render(entry));
      scrollDown();
    }
    remember();
  }

  // Threads and cursors outlive a reload of the page (this tab only): what was
  // said and answered is not on the server to be fetched again.
  const SAVED = "wetoop-simulator";
  const KEPT = 200;  // entries per thread

  function remember() {
    const threads = {};
    for (const [openid, entries] of state.threads) {
      threads[openid] = entries.slice(-KEPT).map(({ wire, ...kept }) => kept);  // the XML stays out
    }
    try {
      sessionStorage.setItem(SAVED, JSON.stringify({ threads, cursors: Object.fromEntries(state.cursors) }));
    } catch (err) { /* storage full or off: the thread just lasts until the reload */ }
  }

  function recall() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(SAVED) || "{}");
      for (const [openid, entries] of Object.entries(saved.threads || {})) state.threads.set(openid, entries);
      for (const [openid, id] of Object.entries(saved.cursors || {})) state.cursors.set(openid, id);
    } catch (err) { /* unreadable: start empty */ }
  }

  function scrollDown() {
    const thread = $("thread");
    thread.scrollTop = thread.scrollHeight;
  }

  function render(entry) {
    if (entry.side === "system") {
      const line = document.createElement("div");
      line.className = "system" + (entry.error ? " error" : "");
      const span = document.createElement("span");
      span.textContent = entry.text;
      if (entry.link) {
        span.append(" ");
        const a = document.createElement("a");
        a.href = entry.link; a.target = "_blank"; a.rel = "noopener noreferrer";
        a.textContent = entry.link;
        span.appendChild(a);
      }
      line.appendChild(span);
      return line;
    }
    const msg = document.createElement("div");
    msg.className = `msg from-${entry.side}` + (entry.label ? " live" : "");
    if (entry.kind) msg.dataset.kind = entry.kind;
    const avatar = document.createElement("div");
    avatar.className = "avatar" + (entry.side === "bot" ? " bot" : "");
    avatar.textContent = entry.side === "bot" ? "微" : (currentUser()?.nickname || "我").slice(0, 1);
    const body = document.createElement("div");
    body.className = "body";
    if (entry.label) {
      const tag = document.createElement("span");
      tag.className = "tag " + (entry.kind || "");
      tag.textContent = entry.label;
      body.appendChild(tag);
    }
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = entry.text;
    body.appendChild(bubble);
    if (entry.wire) body.appendChild(wireDetails(entry.wire));
    msg.append(avatar, body);
    return msg;
  }

  // What went over the wire, for the curious: the signed push and the raw answer.
  function wireDetails(wire) {
    const details = document.createElement("details");
    details.className = "wire";
    const summary = document.createElement("summary");
    summary.textContent = "XML";
    const pre = document.createElement("pre");
    const query = Object.entries(wire.query).map(([k, v]) => `${k}=${v}`).join("&");
    pre.textContent = `POST /wechat?${query}\n\n${wire.request}\n\n← HTTP ${wire.status}\n${wire.response}`;
    details.append(summary, pre);
    return details;
  }

  function renderThread() {
    const thread = $("thread");
    thread.replaceChildren(...(state.current ? threadOf(state.current).map(render) : []));
    scrollDown();
  }

  // -- users ---------------------------------------------------------------------

  function currentUser() {
    return state.users.find((u) => u.openid === state.current) || null;
  }

  async function loadUsers() {
    state.users = await api("GET", "/simulator/api/users");
    renderUsers();
  }

  function renderUsers() {
    const list = $("user-list");
    list.replaceChildren(...state.users.map((user) => {
      const li = document.createElement("li");
      li.className = "user" + (user.openid === state.current ? " selected" : "");
      li.dataset.openid = user.openid;
      const avatar = document.createElement("div");
      avatar.className = "avatar";
      avatar.textContent = (user.nickname || user.openid).slice(0, 1);
      const who = document.createElement("div");
      who.className = "who";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = user.nickname || user.openid;
      const st = document.createElement("span");
      st.className = "state" + (user.subscribed ? " on" : "");
      st.textContent = user.subscribed ? "已关注" : "未关注";
      who.append(name, st);
      li.append(avatar, who);
      li.addEventListener("click", () => select(user.openid));
      return li;
    }));
    renderHeader();
  }

  function select(openid) {
    state.current = openid;
    try { sessionStorage.setItem(SAVED + ":current", openid); } catch (err) { /* off: the first user then */ }
    $("sidebar").classList.remove("open");
    renderUsers();
    renderThread();
    poll(true);
  }

  function renderHeader() {
    const user = currentUser();
    const follow = $("follow-btn");
    const following = !!(user && user.subscribed);
    $("chat-title").textContent = user ? (user.nickname || user.openid) + " × 微拓" : "微拓";
    $("chat-subtitle").textContent = user
      ? `openid：${user.openid}` + (user.miniprogram_code ? ` · 小程序 API 登录 code：${user.miniprogram_code}（同一人；每次登录换末尾数字）` : "")
      : "请先在左侧新建或选择一个用户";
    follow.disabled = !user;
    follow.textContent = following ? "取消关注" : "关注";
    follow.classList.toggle("following", following);
    $("text-input").disabled = !following;
    $("send-btn").disabled = !following;
    $("text-input").placeholder = following ? "输入消息，回车发送（Shift+回车换行）" : "关注后才能发消息";
    document.querySelectorAll(".menu-item, .submenu button").forEach((b) => { b.disabled = !following; });
  }

  // -- sending -------------------------------------------------------------------

  async function push(request) {
    const openid = state.current;
    try {
      const result = await api("POST", "/simulator/api/send", { openid, mode: state.mode, ...request });
      if (result.reply) add(openid, { side: "bot", text: result.reply, wire: result.wire });
      return result;
    } catch (err) {
      add(openid, { side: "system", error: true, text: `发送失败：${err.message}` });
      return null;
    }
  }

  async function sendText(text) {
    if (!state.current || !text.trim()) return;
    add(state.current, { side: "user", text });
    await push({ kind: "text", content: text });
  }

  async function toggleFollow() {
    const user = currentUser();
    if (!user) return;
    const kind = user.subscribed ? "unsubscribe" : "subscribe";
    add(user.openid, { side: "system", text: kind === "subscribe" ? "你关注了公众号“微拓”" : "你已取消关注公众号" });
    await push({ kind });
    await loadUsers();
  }

  // -- the menu --------------------------------------------------------------------

  function renderMenu() {
    const bar = $("menu-bar");
    const buttons = (state.menu && state.menu.button) || [];
    bar.replaceChildren(...buttons.map((button) => {
      const group = document.createElement("div");
      group.className = "menu-group";
      const item = document.createElement("button");
      item.type = "button";
      item.className = "menu-item";
      item.textContent = button.name;
      group.appendChild(item);
      if (Array.isArray(button.sub_button) && button.sub_button.length) {
        item.classList.add("has-sub");
        const pop = document.createElement("div");
        pop.className = "submenu";
        pop.hidden = true;
        for (const leaf of button.sub_button) {
          const b = document.createElement("button");
          b.type = "button";
          b.textContent = leaf.name;
          b.addEventListener("click", () => { pop.hidden = true; tap(leaf); });
          pop.appendChild(b);
        }
        group.appendChild(pop);
        item.addEventListener("click", (event) => {
          event.stopPropagation();
          const wasHidden = pop.hidden;
          closeSubmenus();
          pop.hidden = !wasHidden;
        });
      } else {
        item.addEventListener("click", () => { closeSubmenus(); tap(button); });
      }
      return group;
    }));
    renderHeader();
  }

  function closeSubmenus() {
    document.querySelectorAll(".submenu").forEach((p) => { p.hidden = true; });
  }

  async function tap(button) {
    if (!state.current) return;
    if (button.type === "click") {
      add(state.current, { side: "system", text: `点击菜单“${button.name}”` });
      await push({ kind: "click", key: button.key });
    } else if (button.type === "view") {
      // WeChat opens the page and tells the account with a VIEW event.
      add(state.current, { side: "system", text: `打开网页：`, link: button.url });
      await push({ kind: "view", url: button.url });
    } else {
      add(state.current, { side: "system", text: `模拟器不支持“${button.type}”类型的菜单` });
    }
  }

  // -- live messages (customer-service, template, mass) ------------------------------

  let pollTimer = null;
  let polling = false;

  async function poll(now) {
    clearTimeout(pollTimer);
    if (!now && polling) return;
    const openid = state.current;
    if (openid && !polling) {
      polling = true;
      try {
        const since = state.cursors.get(openid) || 0;
        const messages = await api("GET", `/simulator/api/messages?openid=${encodeURIComponent(openid)}&since=${since}`);
        for (const m of messages) {
          if (m.id <= (state.cursors.get(openid) || 0)) continue;
          state.cursors.set(openid, m.id);
          add(openid, { side: "bot", kind: m.kind, label: m.label, text: m.text });
        }
      } catch (err) {
        // A restart of the demo is not worth a toast every second; the next poll retries.
      } finally {
        polling = false;
      }
    }
    pollTimer = setTimeout(() => poll(false), POLL_MS);
  }

  // -- wiring -----------------------------------------------------------------------

  function setMode(mode) {
    if (mode === "safe" && !state.safeAvailable) {
      toast("服务未配置 WECHAT_AES_KEY，只能使用明文模式");
      return;
    }
    if (mode === "plain" && state.plainAvailable === false) {
      toast("服务配置为安全模式（WECHAT_ENCRYPT_MODE=safe），只能发送加密消息");
      return;
    }
    state.mode = mode;
    document.querySelectorAll(".mode-btn").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
  }

  async function start() {
    recall();
    $("new-user-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("new-user-nickname");
      try {
        const user = await api("POST", "/simulator/api/users", { nickname: input.value });
        input.value = "";
        await loadUsers();
        select(user.openid);
      } catch (err) {
        toast(err.message);
      }
    });
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("text-input");
      const text = input.value;
      input.value = "";
      sendText(text);
    });
    $("text-input").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("follow-btn").addEventListener("click", toggleFollow);
    document.querySelectorAll(".mode-btn").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
    $("toggle-users").addEventListener("click", () => $("sidebar").classList.toggle("open"));
    document.addEventListener("click", closeSubmenus);

    try {
      const info = await api("GET", "/simulator/api/state");
      state.safeAvailable = info.safe_mode_available;
      state.plainAvailable = info.plain_mode_available;
      $("mode-plain").disabled = !state.plainAvailable;
      if (!state.plainAvailable) $("mode-plain").title = "服务配置为安全模式，只接收加密消息";
      state.menu = info.menu;
      $("mode-safe").disabled = !state.safeAvailable;
      $("mode-safe").title = state.safeAvailable ? "消息加密后发送（EncodingAESKey）" : "服务未配置 WECHAT_AES_KEY";
      if (state.safeAvailable) setMode("safe");
      renderMenu();
      await loadUsers();
      const last = sessionStorage.getItem(SAVED + ":current");  // the user picked before a reload
      const again = state.users.find((u) => u.openid === last);
      if (again || state.users.length) select((again || state.users[0]).openid);
    } catch (err) {
      toast(err.message);
    }
    document.body.dataset.ready = "1";
  }

  start();
})();
