// tchat browser client: speaks the JSON protocol of docs/protocol.md over
// the WebSocket at /ws.  Plain ES2020, no dependencies.
//
// Safety rule for this file: text from the server (nicks, messages, topics,
// room names, reasons, the MOTD, error messages) only ever reaches the page
// through textContent / createTextNode; no HTML string is ever parsed.
"use strict";

(() => {
  // -- settings ------------------------------------------------------------

  const WS_URL =
    (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws";
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_FACTOR = 2;
  const BACKOFF_MAX_MS = 15000;
  const REFRESH_MS = 1000; // at most one automatic rooms / who / topic request per second
  const LOG_LIMIT = 1000; // lines kept per room
  const NICK_RETRIES = 6; // after a reconnect the old connection may still hold the nick
  const NICK_RETRY_MS = 2500;
  const NO_ROOM = ""; // the log shown while in no room
  const MAX_FRAME_BYTES = 60 * 1024; // the server's default limit is 64 KiB
  const POLL_ROOMS_MS = 15000; // rooms we are not in send no events: poll the list
  const encoder = new TextEncoder();

  // -- DOM -------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    reconnect: $("reconnect"),
    brand: $("brand"),
    rooms: $("rooms"),
    joinForm: $("join-form"),
    joinRoom: $("join-room"),
    roomName: $("room-name"),
    topic: $("topic"),
    topicBy: $("topic-by"),
    leave: $("leave"),
    messages: $("messages"),
    newBelow: $("new-below"),
    nick: $("nick"),
    composer: $("composer"),
    message: $("message"),
    members: $("members"),
    memberCount: $("member-count"),
    toggleRooms: $("toggle-rooms"),
    toggleMembers: $("toggle-members"),
    backdrop: $("backdrop"),
  };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function space() {
    return document.createTextNode(" ");
  }

  function doorClass(door) {
    return /^[a-z0-9-]{1,20}$/.test(door) ? door : "other";
  }

  function badge(door) {
    const name = typeof door === "string" && door ? door : "?";
    return el("span", "badge door-" + doorClass(name), name);
  }

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function timeNode(ts) {
    const date =
      typeof ts === "number" && Number.isFinite(ts) ? new Date(ts * 1000) : new Date();
    const node = el("time", "time", `[${pad2(date.getHours())}:${pad2(date.getMinutes())}]`);
    node.dateTime = date.toISOString();
    node.title = date.toLocaleString();
    return node;
  }

  function str(value) {
    return typeof value === "string" ? value : value == null ? "" : String(value);
  }

  // -- state -----------------------------------------------------------------

  const state = {
    ws: null,
    welcomed: false, // on the current connection
    everWelcomed: false,
    quit: false, // the server said goodbye: do not reconnect on our own
    nick: null, // the real nick, from welcome and nick events
    chosenNick: null, // a nick the user took (restored after a reconnect)
    welcomeRoom: null,
    current: null, // the room we talk in
    joined: [], // rooms we are in, in joining order
    logs: new Map(), // room -> {nodes: Element[], unread: number}
    members: new Map(), // room -> [{name, door}]
    topics: new Map(), // room -> {topic, setBy}
    serverRooms: [], // last rooms list: [{name, members, topic}]
    colors: new Map(), // nick (lower case) -> CSS colour, as seen in messages
    pending: new Map(), // client_id -> pending message element
    // Replies to requests the page made on its own are not shown as notices.
    quiet: { rooms: 0, topic: 0, who: new Map(), status: new Map() },
    restore: null, // {nick, rooms, current} to re-establish after a reconnect
    nickRequest: null, // {name, clientId, retries}
    serverName: "tchat",
    welcomeJoinPending: false,
  };

  let clientSeq = 0;
  const clientPrefix = Math.random().toString(36).slice(2, 7);
  function clientId(kind) {
    clientSeq += 1;
    return `${kind}-${clientPrefix}-${clientSeq}`;
  }

  const sameName = (a, b) =>
    typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase();
  const isMe = (name) => sameName(name, state.nick);

  function findJoined(room) {
    return state.joined.find((r) => sameName(r, room)) || null;
  }

  // -- sending ---------------------------------------------------------------

  function connected() {
    return state.ws !== null && state.ws.readyState === WebSocket.OPEN && state.welcomed;
  }

  function send(frame) {
    if (state.ws === null || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  // Calls fn at most once per interval; a call inside the interval is
  // deferred to its end (one trailing call, however many were asked for).
  function throttle(fn, interval) {
    let last = -Infinity;
    let timer = null;
    const run = () => {
      timer = null;
      last = performance.now();
      fn();
    };
    const call = () => {
      if (timer !== null) return;
      const wait = last + interval - performance.now();
      if (wait <= 0) run();
      else timer = setTimeout(run, wait);
    };
    call.cancel = () => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      last = -Infinity;
    };
    return call;
  }

  const refreshRooms = throttle(() => {
    if (!connected()) return;
    if (send({ type: "rooms", client_id: clientId("auto-rooms") })) state.quiet.rooms += 1;
  }, REFRESH_MS);

  const refreshWho = throttle(() => {
    const room = state.current;
    if (!connected() || !room) return;
    if (send({ type: "who", room, client_id: clientId("auto-who") })) {
      state.quiet.who.set(room, (state.quiet.who.get(room) || 0) + 1);
    }
  }, REFRESH_MS);

  const refreshTopic = throttle(() => {
    if (!connected() || !state.current) return;
    if (send({ type: "topic", client_id: clientId("auto-topic") })) state.quiet.topic += 1;
  }, REFRESH_MS);

  function cancelRefreshes() {
    refreshRooms.cancel();
    refreshWho.cancel();
    refreshTopic.cancel();
  }

  // -- message logs ----------------------------------------------------------

  function logFor(room) {
    const key = room || NO_ROOM;
    let log = state.logs.get(key);
    if (!log) {
      log = { nodes: [], unread: 0 };
      state.logs.set(key, log);
    }
    return log;
  }

  function viewRoom() {
    return state.current || NO_ROOM;
  }

  let stickToBottom = true;

  function atBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 30;
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    stickToBottom = true;
    ui.newBelow.hidden = true;
  }

  function addLine(room, node, { unread = false } = {}) {
    const key = room || NO_ROOM;
    node.dataset.room = key;
    const log = logFor(key);
    log.nodes.push(node);
    if (log.nodes.length > LOG_LIMIT) {
      const old = log.nodes.shift();
      old.remove();
    }
    if (key === viewRoom()) {
      ui.messages.append(node);
      if (stickToBottom) scrollToBottom();
      else ui.newBelow.hidden = false;
      if (unread && document.hidden) bumpTitle();
    } else if (unread) {
      log.unread += 1;
      renderRooms();
    }
  }

  function removeLine(node) {
    const log = state.logs.get(node.dataset.room);
    if (log) {
      const i = log.nodes.indexOf(node);
      if (i >= 0) log.nodes.splice(i, 1);
    }
    node.remove();
  }

  function showView() {
    const log = logFor(viewRoom());
    log.unread = 0;
    ui.messages.replaceChildren(...log.nodes);
    scrollToBottom();
  }

  let hiddenUnread = 0;
  function bumpTitle() {
    hiddenUnread += 1;
    document.title = `(${hiddenUnread}) ${state.serverName || "tchat"}`;
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      hiddenUnread = 0;
      document.title = state.serverName || "tchat";
      refreshRooms();
    }
  });

  // -- rendering lines -------------------------------------------------------

  function nickNode(name, color) {
    const node = el("span", "nick", name);
    if (color) node.style.color = color;
    return node;
  }

  function fillUserMessage(node, m) {
    const action = m.action === true;
    node.className = "msg " + (action ? "msg-action" : "msg-user");
    if (isMe(m.name)) node.classList.add("msg-own");
    const text = str(m.message);
    if (!isMe(m.name) && state.nick && mentions(text, state.nick)) {
      node.classList.add("msg-mention");
    }
    if (m.id !== undefined) node.dataset.id = String(m.id);
    node.dataset.nick = str(m.name);
    const parts = [timeNode(m.ts), space(), badge(m.door), space()];
    if (action) parts.push(el("span", "star", "*"), space());
    parts.push(nickNode(str(m.name), m.color), space(), el("span", "text", text));
    node.replaceChildren(...parts);
  }

  function mentions(text, nick) {
    const escaped = nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`(^|[^\\p{L}\\p{N}_-])${escaped}($|[^\\p{L}\\p{N}_-])`, "iu").test(text);
  }

  function userMessage(m) {
    const room = str(m.room) || state.current;
    if (typeof m.color === "string" && m.name) state.colors.set(str(m.name).toLowerCase(), m.color);
    const cid = typeof m.client_id === "string" ? m.client_id : null;
    const pending = cid ? state.pending.get(cid) : null;
    if (pending) {
      state.pending.delete(cid);
      if (pending.dataset.room === room) {
        fillUserMessage(pending, m);
        pending.dataset.room = room;
        return;
      }
      removeLine(pending);
    }
    const node = el("div");
    fillUserMessage(node, m);
    addLine(room, node, { unread: true });
  }

  function privateMessage(m) {
    const outgoing = m.outgoing === true;
    const node = el("div", "msg msg-private " + (outgoing ? "msg-outgoing" : "msg-incoming"));
    const parts = [timeNode(m.ts), space()];
    if (outgoing) {
      const to = str(m.to);
      parts.push(
        el("span", "arrow", "->"),
        space(),
        el("span", "pm-mark", "*"),
        nickNode(to, state.colors.get(to.toLowerCase())),
        el("span", "pm-mark", "*"),
      );
      node.dataset.nick = to;
    } else {
      const from = str(m.from);
      if (typeof m.color === "string") state.colors.set(from.toLowerCase(), m.color);
      parts.push(
        badge(m.door),
        space(),
        el("span", "pm-mark", "*"),
        nickNode(from, m.color),
        el("span", "pm-mark", "*"),
      );
      node.dataset.nick = from;
    }
    parts.push(space(), el("span", "text", str(m.message)));
    node.replaceChildren(...parts);
    addLine(state.current, node, { unread: !outgoing });
  }

  function systemLine(room, text, { event = "", ts, cls = "msg-system" } = {}) {
    const node = el("div", "msg " + cls);
    if (event) node.dataset.event = event;
    node.append(timeNode(ts), space(), el("span", "text", text));
    addLine(room, node);
    return node;
  }

  function errorLine(text, code) {
    const node = el("div", "msg msg-error");
    if (code) node.dataset.code = code;
    node.append(timeNode(), space(), el("span", "text", text));
    addLine(state.current, node);
  }

  // -- rooms, members, topic -------------------------------------------------

  function renderRooms() {
    const byKey = new Map();
    for (const r of state.serverRooms) byKey.set(r.name.toLowerCase(), { ...r });
    for (const name of state.joined) {
      const key = name.toLowerCase();
      if (!byKey.has(key)) byKey.set(key, { name, members: null, topic: null });
    }
    const rooms = [...byKey.values()].sort((a, b) =>
      a.name.toLowerCase() < b.name.toLowerCase() ? -1 : 1,
    );
    const items = rooms.map((r) => {
      const joined = findJoined(r.name) !== null;
      const current = sameName(r.name, state.current);
      const li = el("li", "room");
      li.dataset.room = r.name;
      li.dataset.joined = joined ? "true" : "false";
      if (joined) li.classList.add("joined");
      if (current) {
        li.classList.add("current");
        li.setAttribute("aria-current", "true");
      }
      const button = el("button", "room-button");
      button.type = "button";
      const topic = state.topics.get(r.name);
      const topicText = topic ? topic.topic : r.topic;
      button.title =
        (joined ? (current ? "Current room" : "Switch to ") : "Join ") +
        r.name +
        (topicText ? " — " + topicText : "");
      button.append(el("span", "room-mark", joined ? "●" : "○"), el("span", "room-name", r.name));
      const cached = state.members.get(r.name);
      const count = typeof r.members === "number" ? r.members : cached ? cached.length : null;
      if (count !== null) button.append(el("span", "room-count", count));
      const log = state.logs.get(r.name);
      if (log && log.unread > 0 && !current) {
        const unread = el("span", "unread", log.unread > 99 ? "99+" : log.unread);
        unread.title = `${log.unread} unread`;
        button.append(unread);
      }
      li.append(button);
      return li;
    });
    ui.rooms.replaceChildren(...items);
    const anyUnread = [...state.logs.entries()].some(
      ([room, log]) => room !== viewRoom() && log.unread > 0,
    );
    ui.toggleRooms.classList.toggle("has-unread", anyUnread);
  }

  function renderMembers() {
    const room = state.current;
    const list = room ? state.members.get(room) || [] : [];
    const items = list.map((m) => {
      const li = el("li", "member");
      li.dataset.name = m.name;
      li.dataset.door = m.door;
      if (isMe(m.name)) li.classList.add("me");
      const button = el("button", "member-button");
      button.type = "button";
      button.title = isMe(m.name) ? "You" : `Send ${m.name} a private message`;
      button.append(nickNode(m.name, state.colors.get(m.name.toLowerCase())), space(), badge(m.door));
      li.append(button);
      return li;
    });
    ui.members.replaceChildren(...items);
    ui.memberCount.textContent = room ? String(list.length) : "";
  }

  function renderTopic() {
    const room = state.current;
    ui.roomName.textContent = room || "no room";
    const info = room ? state.topics.get(room) : null;
    ui.topic.textContent = info && info.topic ? info.topic : "";
    ui.topicBy.textContent = info && info.topic && info.setBy ? ` — set by ${info.setBy}` : "";
    ui.leave.disabled = !room;
    document.body.classList.toggle("no-room", !room);
  }

  function setTopic(room, topic, setBy) {
    state.topics.set(room, { topic: topic || "", setBy: setBy || null });
    if (sameName(room, state.current)) renderTopic();
  }

  // The room we talk in changed (or was confirmed): show its log and refresh
  // what we know about it.
  function switchTo(room) {
    const changed = room !== state.current;
    state.current = room;
    if (changed) showView();
    else logFor(viewRoom()).unread = 0;
    renderRooms();
    renderMembers();
    renderTopic();
    if (room) {
      refreshWho();
      refreshTopic();
    }
  }

  function addMember(room, name, door) {
    const list = state.members.get(room);
    if (!list) return;
    if (!list.some((m) => sameName(m.name, name))) list.push({ name, door });
  }

  function removeMember(room, name) {
    const list = state.members.get(room);
    if (!list) return false;
    const i = list.findIndex((m) => sameName(m.name, name));
    if (i < 0) return false;
    list.splice(i, 1);
    return true;
  }

  // The joined rooms whose member list has this user (for quit/lost/nick,
  // which carry no room); the current room if none is known.
  function roomsOf(name) {
    const rooms = state.joined.filter((room) =>
      (state.members.get(room) || []).some((m) => sameName(m.name, name)),
    );
    return rooms.length ? rooms : [state.current];
  }

  // -- incoming frames -------------------------------------------------------

  function handleFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (e) {
      console.warn("tchat: not JSON", data);
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    switch (frame.type) {
      case "usermsg":
        userMessage(frame);
        break;
      case "private":
        privateMessage(frame);
        break;
      case "system":
        systemFrame(frame);
        break;
      case "error":
        errorFrame(frame);
        break;
      default:
        break; // unknown types are ignored, as the protocol asks
    }
  }

  function systemFrame(f) {
    const text = str(f.message);
    switch (f.event) {
      case "welcome":
        return onWelcome(f);
      case "join":
        return onJoin(f);
      case "part":
        return onPart(f);
      case "quit":
      case "lost":
        return onGone(f);
      case "nick":
        return onNick(f);
      case "topic": {
        const room = str(f.room);
        setTopic(room, str(f.topic), str(f.name));
        systemLine(room, text, { event: "topic", ts: f.ts });
        refreshRooms();
        return;
      }
      case "topic_info": {
        const room = str(f.room);
        if (room) setTopic(room, f.topic == null ? "" : str(f.topic), f.set_by == null ? null : str(f.set_by));
        if (state.quiet.topic > 0) state.quiet.topic -= 1;
        else systemLine(state.current, text, { event: "topic_info" });
        return;
      }
      case "rooms": {
        if (Array.isArray(f.rooms)) {
          state.serverRooms = f.rooms
            .filter((r) => r && typeof r.name === "string")
            .map((r) => ({
              name: r.name,
              members: typeof r.members === "number" ? r.members : null,
              topic: typeof r.topic === "string" ? r.topic : null,
            }));
          for (const r of state.serverRooms) {
            const known = state.topics.get(r.name);
            if (!known || known.topic !== (r.topic || "")) {
              state.topics.set(r.name, { topic: r.topic || "", setBy: null });
            }
          }
          renderRooms();
          renderTopic();
        }
        if (state.quiet.rooms > 0) state.quiet.rooms -= 1;
        else systemLine(state.current, text, { event: "rooms" });
        return;
      }
      case "who": {
        const room = str(f.room);
        if (room && Array.isArray(f.members)) {
          state.members.set(
            room,
            f.members
              .filter((m) => m && typeof m.name === "string")
              .map((m) => ({ name: m.name, door: str(m.door) })),
          );
          if (sameName(room, state.current)) renderMembers();
          renderRooms();
        }
        const waiting = state.quiet.who.get(room) || 0;
        if (waiting > 0) state.quiet.who.set(room, waiting - 1);
        else systemLine(state.current, text, { event: "who" });
        return;
      }
      case "status":
        return onStatus(f);
      case "goodbye":
        state.quit = true;
        systemLine(state.current, text, { event: "goodbye" });
        return;
      default:
        // motd, help, and anything newer: the readable message is enough.
        systemLine(state.current, text, { event: str(f.event) });
        return;
    }
  }

  function onWelcome(f) {
    state.welcomed = true;
    state.serverName = str(f.server) || "tchat";
    ui.brand.textContent = state.serverName;
    if (!document.hidden) document.title = state.serverName;
    attempt = 0; // a connection that got this far counts as successful
    state.nick = str(f.name);
    state.welcomeRoom = str(f.room) || null;
    state.welcomeJoinPending = state.welcomeRoom !== null;
    state.joined = [];
    state.members.clear();
    state.quiet = { rooms: 0, topic: 0, who: new Map(), status: new Map() };
    state.nickRequest = null;
    if (document.activeElement !== ui.nick) ui.nick.value = state.nick;
    if (typeof f.color === "string") state.colors.set(state.nick.toLowerCase(), f.color);
    const motd = Array.isArray(f.motd) ? f.motd.map(str) : [];
    const lines = [str(f.message)].concat(motd).filter((l) => l !== "");
    systemLine(state.welcomeRoom || state.current, lines.join("\n"), { event: "welcome" });
    setConnState("open", "connected");
    const restore = state.restore;
    state.restore = null;
    if (restore && state.everWelcomed) restoreSession(restore);
    state.everWelcomed = true;
    refreshRooms();
  }

  // After a reconnect: take back the nick and the rooms, current one last.
  function restoreSession(restore) {
    if (restore.nick && !sameName(restore.nick, state.nick)) requestNick(restore.nick, true);
    const lobby = state.welcomeRoom;
    // The server has just put us in its default room: join the others, and
    // the current room last so that it is current again.
    const rooms = restore.rooms.filter(
      (r) => !sameName(r, restore.current) && !sameName(r, lobby),
    );
    if (restore.current && (rooms.length || !sameName(restore.current, lobby))) {
      rooms.push(restore.current);
    }
    for (const room of rooms) {
      quietStatus(room);
      send({ type: "join", room });
    }
    if (lobby && restore.rooms.length && !restore.rooms.some((r) => sameName(r, lobby))) {
      if (restore.current) quietStatus(restore.current);
      send({ type: "part", room: lobby });
    }
  }

  function quietStatus(room) {
    const key = room.toLowerCase();
    state.quiet.status.set(key, (state.quiet.status.get(key) || 0) + 1);
  }

  // Returns whether a "now talking in" for this room was expected.
  function unquietStatus(room) {
    const key = room.toLowerCase();
    const waiting = state.quiet.status.get(key) || 0;
    if (waiting > 1) state.quiet.status.set(key, waiting - 1);
    else state.quiet.status.delete(key);
    return waiting > 0;
  }

  function onJoin(f) {
    const room = str(f.room);
    const name = str(f.name);
    if (isMe(name)) {
      if (!findJoined(room)) state.joined.push(room);
      // A switch we asked for that became a join (but not the server's own
      // join into its default room right after the welcome).
      if (state.welcomeJoinPending && sameName(room, state.welcomeRoom)) {
        state.welcomeJoinPending = false;
      } else {
        unquietStatus(room);
      }
      systemLine(room, msgText(f), { event: "join", ts: f.ts });
      switchTo(room);
    } else {
      addMember(room, name, str(f.door));
      systemLine(room, msgText(f), { event: "join", ts: f.ts });
      if (sameName(room, state.current)) {
        renderMembers();
        refreshWho();
      }
    }
    refreshRooms();
  }

  function onPart(f) {
    const room = str(f.room);
    const name = str(f.name);
    systemLine(room, msgText(f), { event: "part", ts: f.ts });
    if (isMe(name)) {
      state.joined = state.joined.filter((r) => !sameName(r, room));
      state.members.delete(room);
      const log = state.logs.get(room);
      if (log) log.unread = 0;
      renderRooms();
    } else {
      removeMember(room, name);
      if (sameName(room, state.current)) {
        renderMembers();
        refreshWho();
      }
    }
    refreshRooms();
  }

  function onGone(f) {
    const name = str(f.name);
    const rooms = roomsOf(name);
    for (const room of rooms) {
      systemLine(room, msgText(f), { event: str(f.event), ts: f.ts });
      removeMember(room, name);
    }
    renderMembers();
    refreshWho();
    refreshRooms();
  }

  function onNick(f) {
    const old = str(f.name);
    const now = str(f.new_name);
    const rooms = isMe(old) ? [state.current] : roomsOf(old);
    for (const room of rooms) {
      systemLine(room, msgText(f), { event: "nick", ts: f.ts });
      const list = state.members.get(room) || [];
      for (const m of list) if (sameName(m.name, old)) m.name = now;
    }
    const color = state.colors.get(old.toLowerCase());
    if (color) state.colors.set(now.toLowerCase(), color);
    if (isMe(old)) {
      state.nick = now;
      state.chosenNick = now;
      state.nickRequest = null;
      if (document.activeElement !== ui.nick || sameName(ui.nick.value.trim(), now)) {
        ui.nick.value = now;
      }
    }
    renderMembers();
    refreshWho();
  }

  function onStatus(f) {
    const message = str(f.message);
    // The current room comes from the status text; a "room" field, should
    // the server add one, is preferred.
    let room = null;
    let noRoom = false;
    const match = /now talking in (#\S+)/i.exec(message);
    if (typeof f.room === "string" && f.room) room = f.room;
    else if (match) room = match[1];
    else if (/in no room/i.test(message)) noRoom = true;
    let quiet = false;
    if (room) {
      quiet = unquietStatus(room);
      if (!findJoined(room)) state.joined.push(room);
      switchTo(room);
    } else if (noRoom) {
      switchTo(null);
    }
    if (!quiet) systemLine(state.current, message, { event: "status" });
  }

  function errorFrame(f) {
    const message = str(f.message) || "error";
    const code = str(f.code);
    const cid = typeof f.client_id === "string" ? f.client_id : "";
    // Replies to the page's own background requests.
    if (cid.startsWith("auto-")) {
      if (cid.startsWith("auto-rooms") && state.quiet.rooms > 0) state.quiet.rooms -= 1;
      if (cid.startsWith("auto-topic") && state.quiet.topic > 0) state.quiet.topic -= 1;
      if (cid.startsWith("auto-who")) {
        for (const [room, n] of state.quiet.who) {
          if (n > 0) {
            state.quiet.who.set(room, n - 1);
            break;
          }
        }
      }
      return;
    }
    if (cid && state.pending.has(cid)) {
      const pending = state.pending.get(cid);
      state.pending.delete(cid);
      pending.classList.remove("msg-pending");
      pending.classList.add("msg-failed");
      pending.title = "Not sent: " + message;
    }
    const nickError = cid.startsWith("nick-") || code.startsWith("nick-");
    if (nickError && state.nickRequest && state.nickRequest.retries > 0 && code === "nick-taken") {
      // Most likely our own previous connection, not yet noticed as gone.
      const request = state.nickRequest;
      request.retries -= 1;
      setTimeout(() => {
        if (state.nickRequest === request && connected()) requestNick(request.name, true, request);
      }, NICK_RETRY_MS);
      if (request.retries === NICK_RETRIES - 1) {
        systemLine(
          state.current,
          `${request.name} is still taken (perhaps by your previous connection); trying again…`,
          { event: "status" },
        );
      }
      return;
    }
    if (nickError) {
      state.nickRequest = null;
      if (state.nick) ui.nick.value = state.nick;
    }
    errorLine(message, code);
  }

  function msgText(f) {
    return str(f.message);
  }

  // -- user actions ----------------------------------------------------------

  function requestNick(name, restoring = false, existing = null) {
    const cid = clientId("nick");
    const request = existing || { name, retries: restoring ? NICK_RETRIES : 0 };
    request.clientId = cid;
    state.nickRequest = request;
    send({ type: "nick", name, client_id: cid });
    // A nick the server takes as unchanged gets no answer: stop waiting.
    setTimeout(() => {
      if (state.nickRequest === request && request.clientId === cid) {
        state.nickRequest = null;
        if (document.activeElement !== ui.nick && state.nick !== null) ui.nick.value = state.nick;
      }
    }, NICK_RETRY_MS * 2);
  }

  function submitNick() {
    const wanted = ui.nick.value.trim();
    if (!wanted || state.nick === null || wanted === state.nick) {
      if (state.nick !== null) ui.nick.value = state.nick;
      return;
    }
    if (state.nickRequest && state.nickRequest.name === wanted) return; // already asked
    if (!connected()) {
      errorLine("Not connected: your nick was not changed.", "offline");
      ui.nick.value = state.nick;
      return;
    }
    requestNick(wanted);
  }

  ui.nick.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      submitNick();
      ui.message.focus();
    } else if (e.key === "Escape") {
      if (state.nick !== null) ui.nick.value = state.nick;
      ui.message.focus();
    }
  });
  ui.nick.addEventListener("blur", submitNick);

  const history = [];
  let historyAt = 0;
  let draft = "";

  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const raw = ui.message.value;
    if (!raw.trim()) return;
    if (!connected()) {
      errorLine("Not connected: your message was not sent.", "offline");
      return;
    }
    const cid = clientId("c");
    const frame = { type: "message", message: raw, client_id: cid };
    if (state.current) frame.room = state.current;
    if (encoder.encode(JSON.stringify(frame)).length > MAX_FRAME_BYTES) {
      // The server would close the connection (1009) for a frame this big.
      errorLine("That message is too long to send.", "too-long");
      return;
    }
    if (!send(frame)) {
      errorLine("Not connected: your message was not sent.", "offline");
      return;
    }
    const trimmed = raw.trim();
    // Plain text (and //text, which the server sends as /text) comes back
    // as an acknowledgement; show it as pending until then.
    if (!trimmed.startsWith("/") || trimmed.startsWith("//")) {
      const node = el("div", "msg msg-user msg-own msg-pending");
      node.dataset.clientId = cid;
      node.title = "Sending…";
      node.append(
        timeNode(),
        space(),
        badge("web"),
        space(),
        nickNode(state.nick || "", state.colors.get((state.nick || "").toLowerCase())),
        space(),
        el("span", "text", trimmed.startsWith("//") ? trimmed.slice(1) : trimmed),
      );
      state.pending.set(cid, node);
      addLine(state.current, node);
    }
    if (history[history.length - 1] !== raw) history.push(raw);
    if (history.length > 100) history.shift();
    historyAt = history.length;
    draft = "";
    ui.message.value = "";
    scrollToBottom();
  });

  ui.message.addEventListener("keydown", (e) => {
    if (e.key === "ArrowUp" && historyAt > 0) {
      if (historyAt === history.length) draft = ui.message.value;
      historyAt -= 1;
      ui.message.value = history[historyAt];
      e.preventDefault();
    } else if (e.key === "ArrowDown" && historyAt < history.length) {
      historyAt += 1;
      ui.message.value = historyAt === history.length ? draft : history[historyAt];
      e.preventDefault();
    }
  });

  function joinRoom(room) {
    if (!connected()) {
      errorLine("Not connected.", "offline");
      return;
    }
    if (findJoined(room)) quietStatus(findJoined(room));
    send({ type: "join", room });
  }

  ui.rooms.addEventListener("click", (e) => {
    const item = e.target.closest("[data-room]");
    if (!item || !ui.rooms.contains(item)) return;
    const room = item.dataset.room;
    closeDrawers();
    if (!sameName(room, state.current)) joinRoom(room);
  });

  ui.joinForm.addEventListener("submit", (e) => {
    e.preventDefault();
    let room = ui.joinRoom.value.trim();
    if (!room) return;
    if (!room.startsWith("#")) room = "#" + room;
    joinRoom(room);
    ui.joinRoom.value = "";
    closeDrawers();
  });

  ui.leave.addEventListener("click", () => {
    if (!state.current) return;
    if (!connected()) {
      errorLine("Not connected.", "offline");
      return;
    }
    send({ type: "part", room: state.current });
  });

  ui.members.addEventListener("click", (e) => {
    const item = e.target.closest("[data-name]");
    if (!item || isMe(item.dataset.name)) return;
    ui.message.value = `/msg ${item.dataset.name} `;
    closeDrawers();
    ui.message.focus();
  });

  // -- scrolling ---------------------------------------------------------------

  ui.messages.addEventListener("scroll", () => {
    stickToBottom = atBottom();
    if (stickToBottom) ui.newBelow.hidden = true;
  });
  ui.newBelow.addEventListener("click", scrollToBottom);
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (stickToBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
    }).observe(ui.messages);
  }

  // -- narrow screens: rooms and members behind toggles ----------------------

  function setDrawer(which) {
    const rooms = which === "rooms";
    const members = which === "members";
    document.body.classList.toggle("show-rooms", rooms);
    document.body.classList.toggle("show-members", members);
    ui.toggleRooms.setAttribute("aria-expanded", String(rooms));
    ui.toggleMembers.setAttribute("aria-expanded", String(members));
    ui.backdrop.hidden = !(rooms || members);
  }

  function closeDrawers() {
    setDrawer(null);
  }

  ui.toggleRooms.addEventListener("click", () => {
    const open = !document.body.classList.contains("show-rooms");
    setDrawer(open ? "rooms" : null);
    if (open) refreshRooms();
  });
  ui.toggleMembers.addEventListener("click", () =>
    setDrawer(document.body.classList.contains("show-members") ? null : "members"),
  );
  ui.backdrop.addEventListener("click", closeDrawers);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeDrawers();
  });

  // -- connection ------------------------------------------------------------

  let attempt = 0;
  let retryTimer = null;
  let countdownTimer = null;

  function setConnState(dataState, label) {
    ui.status.dataset.state = dataState;
    ui.status.textContent = label;
    ui.reconnect.hidden = dataState !== "closed";
    document.body.dataset.connection = dataState;
  }

  function clearRetry() {
    if (retryTimer !== null) clearTimeout(retryTimer);
    if (countdownTimer !== null) clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
  }

  function connect() {
    clearRetry();
    if (state.ws !== null) return;
    state.quit = false;
    setConnState("connecting", attempt > 0 ? "reconnecting…" : "connecting…");
    let ws;
    try {
      ws = new WebSocket(WS_URL);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.welcomed = false;
    ws.addEventListener("open", () => {
      if (state.ws === ws) setConnState("open", "connected");
    });
    ws.addEventListener("message", (e) => {
      if (state.ws === ws && typeof e.data === "string") handleFrame(e.data);
    });
    ws.addEventListener("close", (e) => {
      if (state.ws === ws) onClose(e);
    });
  }

  function onClose(event) {
    const wasWelcomed = state.welcomed;
    state.ws = null;
    state.welcomed = false;
    cancelRefreshes();
    if (wasWelcomed) {
      // Remember what to take back after reconnecting.
      state.restore = {
        nick: state.chosenNick,
        rooms: state.joined.slice(),
        current: state.current,
      };
    }
    for (const node of state.pending.values()) {
      node.classList.remove("msg-pending");
      node.classList.add("msg-failed");
      node.title = "Not confirmed: the connection closed";
    }
    state.pending.clear();
    state.nickRequest = null;
    state.members.clear();
    renderMembers();
    if (wasWelcomed && !state.quit) {
      const why = event.reason ? `: ${event.reason}` : "";
      systemLine(state.current, `Connection lost (code ${event.code}${why})`, { event: "closed" });
    }
    if (state.quit) {
      setConnState("closed", "disconnected");
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearRetry();
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * BACKOFF_FACTOR ** attempt);
    const delay = Math.random() * ceiling; // full jitter
    attempt += 1;
    const due = performance.now() + delay;
    const tick = () => {
      const left = Math.ceil((due - performance.now()) / 1000);
      setConnState("closed", left > 0 ? `reconnecting in ${left}s` : "reconnecting…");
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(connect, delay);
  }

  ui.reconnect.addEventListener("click", () => {
    if (state.ws === null) connect();
  });

  window.addEventListener("online", () => {
    if (state.ws === null && !state.quit) connect();
  });

  // -- start -----------------------------------------------------------------

  renderRooms();
  renderMembers();
  renderTopic();
  connect();
  setInterval(() => {
    if (!document.hidden) refreshRooms();
  }, POLL_ROOMS_MS);
  if (window.matchMedia("(min-width: 761px)").matches) ui.message.focus();
})();
