// tchat browser client: speaks the JSON protocol of docs/protocol.md over
// the WebSocket at /ws.  Plain ES2020, no dependencies.
//
// Safety rule for this file: text from the server (nicks, messages, topics,
// room names, reasons, the MOTD, error messages) only ever reaches the page
// through textContent / createTextNode; no HTML string is ever parsed.
//
// History and reconnects: each room's log is one list ordered by message
// (epoch, id), whatever order messages arrive in (a join replay, a resume's
// catch-up, an older page), and a message is shown once per (room, epoch,
// id).  After a reconnect the page sends one "resume" with the last
// (epoch, id) it showed in each of its rooms instead of joining them again.
//
// Accounts and reloads: the login token the server gives (never the
// password) is kept in localStorage, for every tab; the resume code and the
// room shown in sessionStorage, for this tab.  The first connection of a
// page load sends them in a "hello": the code makes a reload the same
// session (nick, rooms, what it missed), the token logs the tab in.
//
// DOM hooks (tests and styles rely on them):
//   #messages .msg                  every line of the room shown, in order
//   .msg[data-room]                 the room whose log a line belongs to
//   .msg-user / .msg-action         a room message (.msg-own: ours; .msg-pending:
//                                   not acknowledged yet; .msg-failed: not sent)
//   .msg[data-id][data-epoch]       a room message's id and epoch
//   .msg-history                    a message that was sent to catch up, not live
//   .msg.gap                        "some earlier messages are no longer available"
//   #older                          "load older messages", first in #messages
//   #message, #nick, #topic, #rooms [data-room], #status[data-state],
//   #members .member[data-name] .badge; [data-registered] .reg (✓), [data-away] .away-mark
//   .msg-private.msg-offline        a private message kept while we were offline
//   .msg[data-event="mentions"] .mention   mentions kept while we were offline
//   #account (Log in / the account name), #account-panel (a <dialog>) with
//   #account-name, #account-password, #account-repeat, #account-error
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
  const HISTORY_PAGE = 50; // messages per "load older messages"
  const HISTORY_WAIT_MS = 10000; // give up waiting for a page of history
  const RESUME_WAIT_MS = 15000; // give up waiting for "resumed" before resending
  const SEND_TRIES = 2; // a message unconfirmed when the connection closed is sent once more
  const GAP_TEXT = "Some earlier messages are no longer available.";
  const TOKEN_KEY = "tchat.token"; // localStorage: the login token
  const CODE_KEY = "tchat.code"; // sessionStorage: this tab's resume code
  const ROOM_KEY = "tchat.room"; // sessionStorage: this tab's room shown
  // Typed commands that carry a password: kept out of the composer's history.
  const SECRET = /^\/(login|identify|register|password|unregister)\b/i;
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
    account: $("account"),
    panel: $("account-panel"),
    accountForm: $("account-form"),
    accountTitle: $("account-title"),
    accountName: $("account-name"),
    password: $("account-password"),
    repeatRow: $("repeat-row"),
    repeat: $("account-repeat"),
    accountError: $("account-error"),
    submit: $("account-submit"),
    switchMode: $("account-switch"),
    accountInfo: $("account-info"),
    accountWho: $("account-who"),
    logout: $("account-logout"),
  };

  // Storage may be switched off (or throw, in some private modes): the page
  // then works as before, without resuming on reload or staying logged in.
  function stored(area, key) {
    try {
      return window[area].getItem(key);
    } catch (e) {
      return null;
    }
  }

  function store(area, key, value) {
    try {
      if (value) window[area].setItem(key, value);
      else window[area].removeItem(key);
    } catch (e) {
      // nothing kept
    }
  }

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

  // [HH:MM], or [YYYY-MM-DD HH:MM] with the date.
  function timeNode(ts, withDate = false) {
    const date =
      typeof ts === "number" && Number.isFinite(ts) ? new Date(ts * 1000) : new Date();
    const day = withDate
      ? `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())} `
      : "";
    const node = el("time", "time", `[${day}${pad2(date.getHours())}:${pad2(date.getMinutes())}]`);
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
    // client_id -> {node, frame, nick, tries}: messages sent and not yet
    // acknowledged; unsent: those whose connection closed first, sent again
    // (same client_id, so the server does not repeat them) after a resume,
    // and lines typed while those wait or while the page takes its nick
    // and rooms back (tries 0: never sent), sent after them in order.
    pending: new Map(),
    unsent: new Map(),
    resuming: new Map(), // room (lower case) -> {room, point}: resumes not answered yet
    resumeDeadline: 0,
    // Replies to requests the page made on its own are not shown as notices.
    quiet: { rooms: 0, topic: 0, who: new Map(), status: new Map() },
    restore: null, // {nick, rooms, current} to re-establish after a reconnect
    nickRequest: null, // {name, clientId, retries}
    serverName: "tchat",
    welcomeJoinPending: false,
    account: null, // the account we are logged in to, from login events
    // A hello with our resume code or token is not answered yet: typed
    // lines wait (they would be said by the guest the page was welcomed as).
    waitCode: false,
    waitToken: false,
    helloDeadline: 0,
    welcomeCode: "", // this connection's own code, kept if ours fails
    restoreRoom: stored("sessionStorage", ROOM_KEY), // shown before a reload
    panelWait: null, // client_id of the login panel's request awaiting its answer
    typedCode: null, // a code typed as /resume CODE: ours once it is answered
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

  // A log: the room's lines in order, and what the page knows of its
  // messages.  seen has "epoch:id" of every message shown; last is the
  // greatest (epoch, id) shown or confirmed (what a resume starts from);
  // minId the smallest id shown (where an older page ends); more whether
  // the server keeps older messages (null: not asked yet).
  function logFor(room) {
    const key = room || NO_ROOM;
    let log = state.logs.get(key);
    if (!log) {
      log = {
        nodes: [],
        unread: 0,
        seen: new Set(),
        last: null,
        minId: null,
        more: null,
        loading: null,
        caughtUp: [], // keys of catch-up messages since the last "resumed"
        // Where a resume that was never answered started: the next one
        // starts there too (a join replay may have moved last past
        // messages the resume was still to send).
        resumeFrom: undefined,
      };
      state.logs.set(key, log);
    }
    return log;
  }

  function viewRoom() {
    return state.current || NO_ROOM;
  }

  // -- message keys: (epoch, id) -----------------------------------------------

  // Ids are comparable only within an epoch; the server only ever moves a
  // room to a greater epoch, so (epoch, id) orders a room's messages.
  function messageKey(m) {
    if (!Number.isSafeInteger(m.id)) return null; // a server without ids
    return { epoch: Number.isSafeInteger(m.epoch) ? m.epoch : 0, id: m.id };
  }

  function keyText(key) {
    return `${key.epoch}:${key.id}`;
  }

  function compareKeys(a, b) {
    if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
    return a.id - b.id;
  }

  function nodeKey(node) {
    if (node.dataset.id === undefined) return null;
    return { epoch: Number(node.dataset.epoch || 0), id: Number(node.dataset.id) };
  }

  // The line before which a message with this key belongs: the first
  // message after it (null: at the end).  Lines without a key (notices,
  // pending messages) stay where they are.
  function placeOf(log, key) {
    let before = null;
    for (let i = log.nodes.length - 1; i >= 0; i--) {
      const other = nodeKey(log.nodes[i]);
      if (other === null) continue;
      if (compareKeys(other, key) > 0) before = log.nodes[i];
      else break;
    }
    return before;
  }

  function noteShown(log, key) {
    log.seen.add(keyText(key));
    if (log.last === null || compareKeys(key, log.last) > 0) log.last = key;
    if (log.minId === null || key.id < log.minId) log.minId = key.id;
  }

  function forget(log, node) {
    const key = nodeKey(node);
    if (key === null) return;
    log.seen.delete(keyText(key));
    if (key.id === log.minId) {
      log.minId = null;
      for (const n of log.nodes) {
        const k = nodeKey(n);
        if (k !== null && (log.minId === null || k.id < log.minId)) log.minId = k.id;
      }
    }
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

  // Adds a line to a room's log: at the end, or before the line `before`.
  function addLine(room, node, { unread = false, before = null } = {}) {
    const key = room || NO_ROOM;
    node.dataset.room = key;
    const log = logFor(key);
    const at = before === null ? -1 : log.nodes.indexOf(before);
    if (at < 0) log.nodes.push(node);
    else log.nodes.splice(at, 0, node);
    if (log.nodes.length > LOG_LIMIT) {
      const old = log.nodes.shift();
      old.remove();
      forget(log, old);
    }
    if (!log.nodes.includes(node)) return; // older than all the log keeps
    if (key === viewRoom()) {
      if (at < 0) ui.messages.append(node);
      else before.before(node);
      if (stickToBottom) scrollToBottom();
      else if (at < 0) ui.newBelow.hidden = false;
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
      forget(log, node);
    }
    node.remove();
  }

  // "Load older messages", first in #messages.
  const older = el("button", "older", "Load older messages");
  older.type = "button";
  older.id = "older";
  older.hidden = true;

  function renderOlder() {
    const room = state.current;
    const log = logFor(viewRoom());
    older.hidden =
      !room ||
      !connected() ||
      !findJoined(room) ||
      log.more === false ||
      log.minId === null ||
      log.minId <= 1 || // ids start at 1: nothing is older
      log.nodes.length >= LOG_LIMIT;
    older.disabled = log.loading !== null;
    older.textContent = log.loading !== null ? "Loading older messages…" : "Load older messages";
  }

  function showView() {
    const log = logFor(viewRoom());
    log.unread = 0;
    ui.messages.replaceChildren(older, ...log.nodes);
    renderOlder();
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
    const key = messageKey(m);
    if (key !== null) {
      node.dataset.id = String(key.id);
      node.dataset.epoch = String(key.epoch);
    }
    node.classList.toggle("msg-history", m.history === true);
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

  // A room message: live, a catch-up one (history: true, from a join or a
  // resume), or one of an older page (page: true).  Each (room, epoch, id)
  // is shown once, at its place in the room's log.
  function userMessage(m, { page = false } = {}) {
    const room = str(m.room) || state.current;
    if (typeof m.color === "string" && m.name) state.colors.set(str(m.name).toLowerCase(), m.color);
    const log = logFor(room);
    const key = messageKey(m);
    const catchUp = m.history === true && !page;
    if (catchUp && key !== null) {
      log.caughtUp.push(key);
      if (log.caughtUp.length > LOG_LIMIT) log.caughtUp.shift();
    }
    const cid = typeof m.client_id === "string" ? m.client_id : null;
    const pending = cid ? state.pending.get(cid) || state.unsent.get(cid) : null;
    if (pending) {
      state.pending.delete(cid);
      state.unsent.delete(cid);
    }
    if (key !== null && log.seen.has(keyText(key))) {
      // Already shown: a replay overlapping what we have, or the
      // acknowledgement of a message sent again that had gone through.
      if (pending) removeLine(pending.node);
      return;
    }
    if (pending) {
      const node = pending.node;
      if (node.dataset.room === room) {
        node.removeAttribute("title"); // "Sending…" no longer
        fillUserMessage(node, m);
        if (key !== null) {
          noteShown(log, key);
          // Messages that arrived while this one waited for its id may
          // come before it.
          const i = log.nodes.indexOf(node);
          const later = log.nodes.slice(i + 1).some((n) => {
            const k = nodeKey(n);
            return k !== null && compareKeys(k, key) < 0;
          });
          if (later) {
            removeLine(node);
            noteShown(log, key);
            addLine(room, node, { before: placeOf(log, key) });
          }
        }
        if (room === viewRoom()) renderOlder();
        return;
      }
      removeLine(pending.node);
    }
    const node = el("div");
    fillUserMessage(node, m);
    // Live messages are the room's newest; earlier ones go to their place.
    const before = key !== null && m.history === true ? placeOf(log, key) : null;
    if (key !== null) noteShown(log, key);
    addLine(room, node, { unread: !page, before });
    if (room === viewRoom()) renderOlder();
  }

  // The answer to a "load older messages": one page, oldest first.
  function historyPage(f) {
    const room = str(f.room);
    if (!room) return;
    const log = logFor(room);
    log.loading = null;
    if (typeof f.more === "boolean") log.more = f.more;
    const viewed = room === viewRoom();
    // Keep the lines on screen where they are while lines go in above.
    const fromBottom = ui.messages.scrollHeight - ui.messages.scrollTop;
    const stuck = stickToBottom;
    stickToBottom = false;
    if (Array.isArray(f.messages)) {
      for (const m of f.messages) {
        if (m === null || typeof m !== "object" || m.type !== "usermsg") continue;
        userMessage({ ...m, room: str(m.room) || room, history: true }, { page: true });
      }
    }
    if (viewed) {
      ui.messages.scrollTop = ui.messages.scrollHeight - fromBottom;
      stickToBottom = atBottom();
      renderOlder();
    } else {
      stickToBottom = stuck;
    }
  }

  // A page of a room's messages before the oldest shown (latest = true:
  // the latest ones, for a room whose log is empty).
  function requestOlder(room = state.current, latest = false) {
    if (!room || !connected()) return;
    const log = logFor(room);
    if (log.loading !== null || (log.minId === null && !latest)) return;
    const cid = clientId("older");
    log.loading = cid;
    const frame = { type: "history", room, limit: HISTORY_PAGE, client_id: cid };
    if (!latest) frame.before = log.minId;
    send(frame);
    renderOlder();
    setTimeout(() => {
      if (log.loading === cid) {
        log.loading = null;
        if (room === viewRoom()) renderOlder();
      }
    }, HISTORY_WAIT_MS);
  }

  older.addEventListener("click", () => requestOlder());

  // The end of a resume of one room: what we missed has been sent.
  function onResumed(f) {
    const room = str(f.room);
    if (!room) return;
    const log = logFor(room);
    const asked = state.resuming.get(room.toLowerCase());
    state.resuming.delete(room.toLowerCase());
    log.resumeFrom = undefined;
    const count = Number.isSafeInteger(f.count) ? f.count : 0;
    const batch = log.caughtUp.slice(Math.max(0, log.caughtUp.length - count));
    log.caughtUp = [];
    if (f.complete === false) {
      // Some messages between what we had and what was sent are gone:
      // mark the spot, just before the first message after what we had.
      let before = null;
      if (asked && asked.point) {
        before = placeOf(log, asked.point);
      } else if (count > 0 && batch.length) {
        const first = batch.reduce((a, b) => (compareKeys(a, b) <= 0 ? a : b));
        before = placeOf(log, { epoch: first.epoch, id: first.id - 1 });
      }
      const node = el("div", "msg msg-system gap");
      node.dataset.event = "gap";
      node.append(timeNode(), space(), el("span", "text", GAP_TEXT));
      addLine(room, node, { before });
    }
    // We now have everything up to the room's latest message (but the gap):
    // the next resume starts there, in the room's current epoch.
    if (Number.isSafeInteger(f.last_id) && Number.isSafeInteger(f.epoch)) {
      const key = { epoch: f.epoch, id: f.last_id };
      if (log.last === null || compareKeys(key, log.last) > 0) log.last = key;
    }
    // A room taken back by a reload's resume code shows nothing yet.
    if (log.minId === null && Number.isSafeInteger(f.last_id) && f.last_id > 0) {
      requestOlder(room, true);
    }
    if (room === viewRoom()) renderOlder();
    if (state.resuming.size === 0) showRestoredRoom();
    sendUnsent();
  }

  // After a reload's code brought the rooms back: show the room that was
  // shown (the server makes each room it joins us to current).
  function showRestoredRoom() {
    const room = state.restoreRoom;
    state.restoreRoom = null;
    if (!room || !findJoined(room) || sameName(room, state.current) || !connected()) return;
    quietStatus(findJoined(room));
    send({ type: "join", room: findJoined(room) });
  }

  function privateMessage(m) {
    const outgoing = m.outgoing === true;
    const offline = m.offline === true; // kept while we were away: sent long ago
    const node = el("div", "msg msg-private " + (outgoing ? "msg-outgoing" : "msg-incoming"));
    if (offline) node.classList.add("msg-offline");
    const parts = [timeNode(m.ts, offline), space()];
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
    if (offline) parts.push(space(), el("span", "offline-mark", "(sent while you were away)"));
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

  // Messages that named us while we were away, as a short list.
  function mentionsList(f) {
    const list = Array.isArray(f.mentions)
      ? f.mentions.filter((m) => m && typeof m === "object")
      : [];
    const text = str(f.message);
    const node = systemLine(state.current, list.length ? text.split("\n")[0] : text, {
      event: "mentions",
    });
    if (!list.length) return;
    const items = el("ul", "mention-list");
    for (const m of list) {
      const name = str(m.name);
      const item = el("li", "mention");
      item.append(timeNode(m.ts, true), space(), el("span", "mention-room", str(m.room)), space());
      if (m.action === true) item.append(el("span", "star", "*"), space());
      item.append(nickNode(name, state.colors.get(name.toLowerCase())), space());
      item.append(el("span", "text", str(m.message)));
      items.append(item);
    }
    node.append(items);
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
      li.dataset.registered = String(m.registered === true);
      if (isMe(m.name)) li.classList.add("me");
      const button = el("button", "member-button");
      button.type = "button";
      button.title = isMe(m.name) ? "You" : `Send ${m.name} a private message`;
      button.append(nickNode(m.name, state.colors.get(m.name.toLowerCase())));
      if (m.registered === true) {
        const mark = el("span", "reg", "✓");
        mark.title = "registered";
        mark.setAttribute("role", "img");
        mark.setAttribute("aria-label", "registered");
        button.append(mark);
      }
      if (typeof m.away === "string") {
        li.dataset.away = m.away;
        li.classList.add("away");
        const away = el("span", "away-mark", "away");
        away.title = m.away ? `away: ${m.away}` : "away";
        button.append(space(), away);
      }
      button.append(space(), badge(m.door));
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
    store("sessionStorage", ROOM_KEY, room);
    if (changed) showView();
    else logFor(viewRoom()).unread = 0;
    renderRooms();
    renderMembers();
    renderTopic();
    renderOlder();
    if (room) {
      refreshWho();
      refreshTopic();
    }
  }

  function addMember(room, name, door, registered = false) {
    const list = state.members.get(room);
    if (!list) return;
    if (!list.some((m) => sameName(m.name, name))) {
      list.push({ name, door, registered, away: null });
    }
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
      case "history":
        historyPage(frame);
        break;
      case "resumed":
        onResumed(frame);
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
              .map((m) => ({
                name: m.name,
                door: str(m.door),
                registered: m.registered === true,
                away: typeof m.away === "string" ? m.away : null,
              })),
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
      case "login":
        return onLogin(f);
      case "logout":
        return onLogout(f);
      case "mentions":
        return mentionsList(f);
      case "account_login":
      case "account_logout":
        return onAccountPresence(f);
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
    state.resuming.clear();
    state.account = null; // until the token logs this connection in
    renderAccount();
    for (const log of state.logs.values()) {
      log.loading = null;
      log.caughtUp = [];
    }
    if (document.activeElement !== ui.nick) ui.nick.value = state.nick;
    if (typeof f.color === "string") state.colors.set(state.nick.toLowerCase(), f.color);
    const motd = Array.isArray(f.motd) ? f.motd.map(str) : [];
    const lines = [str(f.message)].concat(motd).filter((l) => l !== "");
    systemLine(state.welcomeRoom || state.current, lines.join("\n"), { event: "welcome" });
    setConnState("open", "connected");
    const hello = sendHello(str(f.resume_code));
    const restore = state.restore;
    state.restore = null;
    if (restore && state.everWelcomed) restoreSession(restore, hello.token !== undefined);
    state.everWelcomed = true;
    refreshRooms();
    renderOlder();
    sendUnsent();
  }

  // The first frame after the welcome.  On a page's first connection, a
  // resume code kept by this tab (a reload) takes back that session: nick,
  // rooms, what it missed (the page asks for nothing else; see
  // onStatus and showRestoredRoom).  On every connection a kept token logs
  // us in to our account without the password.  Later connections of the
  // page take their session back themselves (restoreSession): the page
  // knows better than the server what it showed.
  function sendHello(code) {
    state.waitCode = state.waitToken = false;
    state.welcomeCode = code;
    const hello = { type: "hello", client_id: clientId("hello") };
    const kept = state.everWelcomed ? null : stored("sessionStorage", CODE_KEY);
    if (kept && code && kept !== code) {
      hello.code = kept;
      state.waitCode = true;
    } else {
      store("sessionStorage", CODE_KEY, code);
      state.restoreRoom = null;
    }
    const token = stored("localStorage", TOKEN_KEY);
    if (token) {
      hello.token = token;
      state.waitToken = true;
    }
    if (hello.code !== undefined || hello.token !== undefined) {
      const deadline = performance.now() + RESUME_WAIT_MS;
      state.helloDeadline = deadline;
      setTimeout(() => {
        if (state.helloDeadline !== deadline) return;
        if (state.waitCode) state.restoreRoom = null; // the code was never answered
        state.waitCode = state.waitToken = false;
        sendUnsent();
      }, RESUME_WAIT_MS);
      send(hello);
    }
    return hello;
  }

  // The answer to the hello's code: "welcome back, NICK: restoring #a, #b"
  // (or "...: you were in no room"), then each room's catch-up and
  // "resumed", which typed lines wait for as after a reconnect.
  function onWelcomeBack(f, message) {
    state.waitCode = false;
    const listed = /: restoring (.+)$/.exec(message);
    const rooms = Array.isArray(f.rooms) ? f.rooms.map(str) : listed ? listed[1].split(", ") : [];
    for (const room of rooms) {
      if (room) state.resuming.set(room.toLowerCase(), { room, point: logFor(room).last });
    }
    if (state.resuming.size) {
      state.resumeDeadline = performance.now() + RESUME_WAIT_MS;
      setTimeout(sendUnsent, RESUME_WAIT_MS);
    } else {
      state.restoreRoom = null;
    }
  }

  // After a reconnect: take back the nick and the rooms, current one last,
  // with what was said in them meanwhile.  One "resume" asks for every
  // room from the last message we showed in it: the server joins us to
  // each (without the replay of a join), sends what we missed, then
  // "resumed".
  function restoreSession(restore, withToken) {
    // The token gives us the account's name back (a guest cannot take it).
    const named = withToken && sameName(restore.nick, restore.account);
    if (restore.nick && !sameName(restore.nick, state.nick) && !named) {
      requestNick(restore.nick, true);
    }
    const lobby = state.welcomeRoom;
    // The server makes each room it joins us to current, so the current
    // room goes last.  It has already put us in its default room, which a
    // resume does not make current: a join does, if another came after it.
    const rooms = restore.rooms.filter((r) => !sameName(r, restore.current));
    if (restore.current && restore.rooms.some((r) => sameName(r, restore.current))) {
      rooms.push(restore.current);
    }
    if (rooms.length) {
      const points = {};
      for (const room of rooms) {
        const log = state.logs.get(room);
        const last = !log ? null : log.resumeFrom !== undefined ? log.resumeFrom : log.last;
        if (last === null) points[room] = 0;
        else if (last.epoch) points[room] = { id: last.id, epoch: last.epoch };
        else points[room] = last.id; // a bare id: the room's current epoch
        state.resuming.set(room.toLowerCase(), { room, point: last });
      }
      state.resumeDeadline = performance.now() + RESUME_WAIT_MS;
      setTimeout(sendUnsent, RESUME_WAIT_MS);
      send({ type: "resume", rooms: points });
    }
    if (restore.current && lobby && sameName(restore.current, lobby) && rooms.length > 1) {
      quietStatus(restore.current);
      send({ type: "join", room: restore.current });
    }
    if (lobby && restore.rooms.length && !restore.rooms.some((r) => sameName(r, lobby))) {
      if (restore.current) quietStatus(restore.current);
      send({ type: "part", room: lobby });
    }
  }

  // Whether messages must wait: a resume is not answered yet, or a nick
  // we asked for is not ours yet.
  function holdingMessages() {
    const now = performance.now();
    return (
      (state.resuming.size > 0 && now < state.resumeDeadline) ||
      ((state.waitCode || state.waitToken) && now < state.helloDeadline) ||
      state.nickRequest !== null
    );
  }

  // Messages whose connection closed before they were acknowledged are
  // sent again once the resume is answered (what went through has come
  // back by then, and the server acknowledges a repeated client_id with
  // the original) and our nick is back (the server recognises a repeat
  // only from the same nick).  Lines typed meanwhile wait too, behind
  // them: the server numbers messages in the order it gets them, so sent
  // at once they would be said first (and while our old connection still
  // holds the nick, by a guest).  Called whenever the wait may be over.
  function sendUnsent() {
    if (!state.unsent.size || !connected()) return; // a new connection will do it
    if (holdingMessages()) return;
    const unsent = [...state.unsent.entries()];
    state.unsent.clear();
    for (const [cid, entry] of unsent) {
      const room = entry.frame.room;
      // Only a repeat needs the same nick: a line that waited was never sent.
      const retry = entry.tries > 0;
      if ((retry && !sameName(entry.nick, state.nick)) || (room && !findJoined(room))) {
        failPending(
          entry,
          retry
            ? "Not sent: the connection closed before it was confirmed"
            : "Not sent: you are no longer in that room",
        );
        continue;
      }
      entry.tries += 1;
      state.pending.set(cid, entry);
      if (!send(entry.frame)) state.pending.delete(cid);
    }
  }

  function failPending(entry, why) {
    entry.node.classList.remove("msg-pending");
    entry.node.classList.add("msg-failed");
    entry.node.title = why;
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
      addMember(room, name, str(f.door), f.registered === true);
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
      for (const m of list) {
        if (!sameName(m.name, old)) continue;
        m.name = now;
        m.registered = f.registered === true;
      }
    }
    const color = state.colors.get(old.toLowerCase());
    if (color) state.colors.set(now.toLowerCase(), color);
    if (isMe(old)) {
      const request = state.nickRequest;
      state.nick = now;
      state.chosenNick = now;
      state.nickRequest = null;
      if (request && request.then && sameName(request.name, now)) request.then();
      if (document.activeElement !== ui.nick || sameName(ui.nick.value.trim(), now)) {
        ui.nick.value = now;
      }
    }
    renderMembers();
    refreshWho();
    if (isMe(now)) sendUnsent();
  }

  // Someone logged in to (or out of) the registered account of their nick.
  function onAccountPresence(f) {
    const name = str(f.name);
    for (const room of roomsOf(name)) {
      systemLine(room, msgText(f), { event: str(f.event), ts: f.ts });
      for (const m of state.members.get(room) || []) {
        if (sameName(m.name, name)) m.registered = f.event === "account_login";
      }
    }
    renderMembers();
  }

  function onStatus(f) {
    const message = str(f.message);
    if (/^welcome back\b/i.test(message)) {
      if (state.waitCode) onWelcomeBack(f, message);
      else if (state.typedCode) store("sessionStorage", CODE_KEY, state.typedCode);
      state.typedCode = null;
    }
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
    } else {
      // Away, back, and the like change how we show in the member list.
      refreshWho();
      // "too many failed logins lately: yours is checked in N s"
      if (state.panelWait !== null && /log/i.test(message)) panelError(message);
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
    if (cid.startsWith("older-")) {
      for (const log of state.logs.values()) if (log.loading === cid) log.loading = null;
      renderOlder();
    }
    // Answers to the hello: the code or the token did not work.
    if (code === "token-invalid") {
      store("localStorage", TOKEN_KEY, null);
      state.account = null;
      renderAccount();
    }
    if (code === "token-invalid" || code === "account-unavailable") state.waitToken = false;
    const codeFailed = /^(no-such-session|history-unavailable|banned|bad-arguments)$/;
    if (state.waitCode && codeFailed.test(code)) {
      state.waitCode = false;
      state.restoreRoom = null;
      store("sessionStorage", CODE_KEY, state.welcomeCode); // we are this connection now
    }
    const asked = state.nickRequest;
    if (cid && state.pending.has(cid)) {
      const pending = state.pending.get(cid);
      state.pending.delete(cid);
      failPending(pending, "Not sent: " + message);
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
      if (asked && asked.failed) asked.failed(message);
    }
    const forPanel = cid !== "" && cid === state.panelWait;
    if (code === "nick-registered") {
      // Someone's account: log in to it, if it is ours.
      openPanel(str(f.name) || (asked ? asked.name : ""));
      panelError(message);
    } else if (forPanel) {
      state.panelWait = null;
      panelError(message);
    }
    if (!forPanel || !ui.panel.open) errorLine(message, code);
    sendUnsent();
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
        if (request.failed) request.failed(`${name} did not become your nick.`);
        sendUnsent();
      }
    }, NICK_RETRY_MS * 2);
    return request;
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
    const trimmed = raw.trim();
    const typedCode = /^\/resume\s+(\S+)/i.exec(trimmed);
    if (typedCode) state.typedCode = typedCode[1];
    // Plain text (and //text, which the server sends as /text) comes back
    // as an acknowledgement; show it as pending until then.
    const text = !trimmed.startsWith("/") || trimmed.startsWith("//");
    // After a reconnect, lines still to be sent again go first, and none
    // goes before the nick is back: this one waits (see sendUnsent).
    const wait = text && (state.unsent.size > 0 || holdingMessages());
    if (!wait && !send(frame)) {
      errorLine("Not connected: your message was not sent.", "offline");
      return;
    }
    if (text) {
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
      const entry = { node, frame, nick: state.nick, tries: wait ? 0 : 1 };
      (wait ? state.unsent : state.pending).set(cid, entry);
      addLine(state.current, node);
    }
    if (history[history.length - 1] !== raw && !SECRET.test(trimmed)) history.push(raw);
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

  // -- account: the login panel ------------------------------------------------
  //
  // The password goes to the server in one frame and is cleared from the
  // fields at once; the page keeps only the token the server answers with.

  function renderAccount() {
    const name = state.account;
    ui.account.textContent = name || "Log in";
    ui.account.title = name ? `Logged in as ${name}` : "Log in or register";
    ui.account.classList.toggle("logged-in", name !== null);
    ui.accountWho.textContent = name || "";
    ui.accountInfo.hidden = name === null;
    ui.accountForm.hidden = name !== null;
    // One error line, above the buttons of the view shown.
    const view = name === null ? ui.accountForm : ui.accountInfo;
    view.querySelector(".account-actions").before(ui.accountError);
  }

  function setMode(register) {
    ui.repeatRow.hidden = !register;
    ui.repeat.disabled = !register;
    ui.password.autocomplete = register ? "new-password" : "current-password";
    ui.accountTitle.textContent = register ? "Register" : "Log in";
    ui.submit.textContent = register ? "Register" : "Log in";
    ui.switchMode.textContent = register ? "Log in" : "Register";
  }

  // An error, or (hint) what the panel is doing or waits for.
  function panelError(text, hint = false) {
    ui.accountError.textContent = text;
    ui.accountError.classList.toggle("hint", hint);
  }

  function clearPasswords() {
    ui.password.value = "";
    ui.repeat.value = "";
  }

  function openPanel(name) {
    closeDrawers();
    renderAccount();
    panelError("");
    if (state.account === null) {
      setMode(false);
      const nick = state.nick && !/^guest-/.test(state.nick) ? state.nick : "";
      ui.accountName.value = name || ui.accountName.value || nick;
    }
    if (!ui.panel.open) ui.panel.showModal();
    ui.account.setAttribute("aria-expanded", "true");
    if (state.account !== null) ui.logout.focus();
    else (ui.accountName.value ? ui.password : ui.accountName).focus();
  }

  function closePanel() {
    if (ui.panel.open) ui.panel.close();
  }

  // Closed by Esc, Cancel, a click beside it, or an answer.
  ui.panel.addEventListener("close", () => {
    clearPasswords();
    state.panelWait = null;
    ui.account.setAttribute("aria-expanded", "false");
  });
  ui.panel.addEventListener("click", (e) => {
    if (e.target === ui.panel) closePanel(); // the backdrop, outside the box
  });
  for (const button of ui.panel.querySelectorAll("[data-close]")) {
    button.addEventListener("click", closePanel);
  }
  ui.account.addEventListener("click", () => openPanel(""));

  ui.switchMode.addEventListener("click", () => {
    const register = ui.repeatRow.hidden;
    setMode(register);
    panelError(register ? "Type the password again to register." : "", true);
    (register && ui.password.value ? ui.repeat : ui.password).focus();
  });

  ui.accountForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const register = !ui.repeatRow.hidden;
    const name = ui.accountName.value.trim();
    const password = ui.password.value;
    if (!connected()) return panelError("Not connected.");
    if (!name) {
      ui.accountName.focus();
      return panelError("Type your name.");
    }
    if (!password) {
      ui.password.focus();
      return panelError("Type your password.");
    }
    if (register && ui.repeat.value !== password) {
      ui.repeat.value = "";
      ui.repeat.focus();
      return panelError("The passwords differ: type it again.");
    }
    clearPasswords();
    const cid = clientId("acct");
    state.panelWait = cid;
    panelError(register ? "Registering…" : "Logging in…", true);
    if (!register) {
      send({ type: "login", name, password, client_id: cid });
    } else if (name === state.nick) {
      send({ type: "register", password, client_id: cid });
    } else {
      // The server registers the nick we have: take the name first.
      const request = requestNick(name);
      request.then = () => {
        if (state.panelWait === cid) send({ type: "register", password, client_id: cid });
      };
      request.failed = (why) => {
        if (state.panelWait !== cid) return;
        state.panelWait = null;
        panelError(why);
      };
    }
  });

  ui.logout.addEventListener("click", () => {
    // Forgotten here at once, whatever the server answers.
    store("localStorage", TOKEN_KEY, null);
    if (!connected()) {
      state.account = null;
      renderAccount();
      return;
    }
    state.panelWait = clientId("acct");
    send({ type: "logout", client_id: state.panelWait });
  });

  function onLogin(f) {
    state.account = str(f.name) || state.nick;
    state.waitToken = false;
    if (typeof f.token === "string" && f.token) store("localStorage", TOKEN_KEY, f.token);
    state.panelWait = null;
    closePanel();
    renderAccount();
    systemLine(state.current, str(f.message), { event: "login" });
    refreshWho(); // our registered mark
    sendUnsent();
  }

  function onLogout(f) {
    state.account = null;
    store("localStorage", TOKEN_KEY, null);
    state.panelWait = null;
    closePanel();
    renderAccount();
    systemLine(state.current, str(f.message), { event: "logout" });
    refreshWho();
  }

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
    // The page counts as connected once welcomed (onWelcome), not when the
    // socket opens: a line typed in between would be refused.
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
        account: state.account,
      };
    }
    // Messages sent go before those still waiting to be: they came first.
    const waiting = [...state.unsent];
    state.unsent.clear();
    for (const [cid, entry] of state.pending) {
      if (entry.tries < SEND_TRIES && !state.quit) {
        entry.node.title = "Not confirmed yet: sent again once reconnected";
        state.unsent.set(cid, entry);
      } else {
        failPending(entry, "Not confirmed: the connection closed");
      }
    }
    state.pending.clear();
    for (const [cid, entry] of waiting) {
      if (state.quit) failPending(entry, "Not sent: the connection closed");
      else state.unsent.set(cid, entry);
    }
    for (const { room, point } of state.resuming.values()) {
      const log = logFor(room);
      if (log.resumeFrom === undefined) log.resumeFrom = point;
    }
    state.resuming.clear();
    renderOlder();
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
  renderAccount();
  connect();
  setInterval(() => {
    if (!document.hidden) refreshRooms();
  }, POLL_ROOMS_MS);
  if (window.matchMedia("(min-width: 761px)").matches) ui.message.focus();
})();
