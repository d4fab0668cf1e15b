// tchat browser client: speaks the JSON protocol of docs/protocol.md over
// the WebSocket at /ws.  Plain ES2020, no dependencies, no build step.
// docs/page.md describes what the page does and how it is tested.
//
// Safety rule for this file: text from the server (nicks, messages, topics,
// room names, reasons, the MOTD, error messages) only ever reaches the page
// through textContent / createTextNode; no HTML string is ever parsed.
//
// Views: the log shows one room (the server's current room) or one private
// conversation at a time.  Each room and conversation has its own log,
// ordered by message (epoch, id) whatever order messages arrive in (a join
// replay, a resume's catch-up, an older page), showing each (room, epoch,
// id) once.
//
// Sessions: the page sends a "hello" as its first frame after every
// welcome, with the resume code of the session it wants to continue (the
// tab's kept code on a reload, its own code after a network drop) and its
// login token.  If the server still holds that session it answers
// "continued" (nick, rooms, account) and the frames the session missed; the
// provisional welcome (a guest nick, the MOTD) is then never shown.
// Otherwise the page starts afresh, taking its nick and rooms back itself.
//
// DOM hooks (tests and styles rely on them):
//   #messages .msg                  every line of the view shown, in order
//   .msg[data-room]                 the room (or "@nick" conversation) of a line
//   .msg-user / .msg-action         a room message (.msg-own: ours; .msg-pending:
//                                   not acknowledged yet; .msg-failed: not sent)
//   .msg[data-id][data-epoch]       a room message's id and epoch
//   .msg[data-door], .nick[title]   the door of who wrote a line (no badge on lines)
//   .msg-cont                       grouped under the line before (same person)
//   .msg-presence                   a join, leave or quit line (hidden by a setting)
//   .msg-history                    a message that was sent to catch up, not live
//   .msg-mention                    a message that names us
//   .msg.gap                        "some earlier messages are no longer available"
//   #unread-marker                  "New since you left", before the first unread line
//   #older                          "load older messages", first in #messages
//   .msg[data-event="history"]      the answer to a typed /history, as a list
//   .msg-private (.msg-incoming / .msg-outgoing, .msg-offline): in a conversation
//   #conversations .conversation[data-nick] .unread; #rooms [data-room] .unread
//   #open-mentions #mention-count; #mentions-panel #mention-list li
//   #help-panel #help-commands; #settings-panel (theme, clock, #set-presence,
//   #set-notify, #settings-nick); #composer-error; #notice #notice-reconnect
//   #message, #nick, #topic, #status[data-state], #room-name, #leave
//   #members .member[data-name] .badge; [data-registered] .reg (✓), [data-away] .away-mark
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
  const HELLO_WAIT_MS = 8000; // give up waiting for the answer to a hello
  const SEND_TRIES = 2; // a message unconfirmed when the connection closed is sent once more
  const GROUP_S = 300; // lines by one person within 5 minutes are grouped
  const QUIET_MS = 400; // how long the log stays unannounced after a bulk change
  const MENTIONS_KEPT = 200;
  const GAP_TEXT = "Some earlier messages are no longer available.";
  const TOKEN_KEY = "tchat.token"; // localStorage: the login token
  const SETTINGS_KEY = "tchat.settings"; // localStorage: the settings panel
  const NICK_KEY = "tchat.nick"; // localStorage: the nick last chosen here
  const CODE_KEY = "tchat.code"; // sessionStorage: this tab's resume code
  const ROOM_KEY = "tchat.room"; // sessionStorage: this tab's room shown
  const CONVS_KEY = "tchat.convs"; // sessionStorage: this tab's conversations
  const CONV_KEPT = 200; // private lines kept per conversation across a reload
  // Typed commands that carry a password: kept out of the composer's history.
  const SECRET = /^\/(login|identify|register|password|unregister)\b/i;
  // How the server tells a connection that a newer one took its session (a
  // goodbye's code; older servers only said so in words).
  const TAKEN_CODE = "taken-over";
  const TAKEN_TEXT = /resumed by a new connection|logged in (as \S+ )?from another connection/i;
  const encoder = new TextEncoder();

  // Nick colours by palette name: [light theme, dark theme], each at least
  // 4.5:1 against every background of its theme a nick is shown on (the log,
  // the side panels, a mention's highlight).  A colour the table does not
  // name is shown as the server's CSS value.  Add a line per new name.
  const NICK_COLOURS = {
    red: ["#b71c1c", "#ff8a80"],
    "bright-red": ["#c0172c", "#ff7a8e"],
    coral: ["#a93a1f", "#ffab91"],
    orange: ["#a04000", "#ffb74d"],
    brown: ["#7b4a1e", "#d7a77a"],
    gold: ["#7a5f00", "#ffd740"],
    yellow: ["#8a5d00", "#ffe9a0"],
    "bright-yellow": ["#6b6300", "#fff59d"],
    olive: ["#5c6300", "#d4d67a"],
    lime: ["#467000", "#c6f57a"],
    "bright-green": ["#1e7a1e", "#a5f0a8"],
    green: ["#27692b", "#81c784"],
    teal: ["#00695c", "#64e3c8"],
    "bright-cyan": ["#00716f", "#84ffff"],
    cyan: ["#00707a", "#4dd0e1"],
    sky: ["#0b6aa0", "#81d4fa"],
    blue: ["#1565c0", "#90caf9"],
    "bright-blue": ["#1a53d1", "#82b1ff"],
    indigo: ["#3949ab", "#a9b3ff"],
    violet: ["#7b3fb0", "#d1a3ff"],
    purple: ["#6a1b9a", "#ce93d8"],
    "bright-magenta": ["#9c1ab0", "#ea80fc"],
    magenta: ["#ad1457", "#f48fb1"],
    pink: ["#b0105e", "#ff80ab"],
  };

  // -- DOM -------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    reconnect: $("reconnect"),
    brand: $("brand"),
    rooms: $("rooms"),
    convs: $("conversations"),
    noConvs: $("no-convs"),
    joinForm: $("join-form"),
    joinRoom: $("join-room"),
    roomName: $("room-name"),
    topic: $("topic"),
    topicBy: $("topic-by"),
    leave: $("leave"),
    notice: $("notice"),
    noticeText: $("notice-text"),
    noticeReconnect: $("notice-reconnect"),
    messages: $("messages"),
    newBelow: $("new-below"),
    nick: $("nick"),
    composer: $("composer"),
    composerError: $("composer-error"),
    message: $("message"),
    members: $("members"),
    memberCount: $("member-count"),
    toggleRooms: $("toggle-rooms"),
    toggleMembers: $("toggle-members"),
    backdrop: $("backdrop"),
    openMentions: $("open-mentions"),
    mentionCount: $("mention-count"),
    mentionsPanel: $("mentions-panel"),
    mentionList: $("mention-list"),
    noMentions: $("no-mentions"),
    openHelp: $("open-help"),
    helpPanel: $("help-panel"),
    helpCommands: $("help-commands"),
    openSettings: $("open-settings"),
    settingsPanel: $("settings-panel"),
    settingsForm: $("settings-form"),
    settingsNick: $("settings-nick"),
    setPresence: $("set-presence"),
    setNotify: $("set-notify"),
    notifyNote: $("notify-note"),
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

  function str(value) {
    return typeof value === "string" ? value : value == null ? "" : String(value);
  }

  const lower = (s) => str(s).toLowerCase();

  // -- the settings panel's choices, kept in localStorage ----------------------

  const settings = { theme: "system", clock: "24", presence: true, notify: false };
  try {
    const kept = JSON.parse(stored("localStorage", SETTINGS_KEY) || "{}");
    if (["system", "light", "dark"].includes(kept.theme)) settings.theme = kept.theme;
    if (["12", "24"].includes(kept.clock)) settings.clock = kept.clock;
    if (typeof kept.presence === "boolean") settings.presence = kept.presence;
    if (typeof kept.notify === "boolean") settings.notify = kept.notify;
  } catch (e) {
    // the defaults
  }

  function applySettings() {
    const root = document.documentElement;
    if (settings.theme === "system") delete root.dataset.theme;
    else root.dataset.theme = settings.theme;
    document.body.classList.toggle("hide-presence", !settings.presence);
  }

  function saveSettings() {
    store("localStorage", SETTINGS_KEY, JSON.stringify(settings));
  }

  // [HH:MM] or [h:MM AM], with the date before it when asked.
  function clockText(date, withDate) {
    let h = date.getHours();
    let time = `${pad2(h)}:${pad2(date.getMinutes())}`;
    if (settings.clock === "12") {
      const pm = h >= 12;
      h = h % 12 || 12;
      time = `${h}:${pad2(date.getMinutes())} ${pm ? "PM" : "AM"}`;
    }
    const day = withDate
      ? `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())} `
      : "";
    return `[${day}${time}]`;
  }

  function timeNode(ts, withDate = false) {
    const date =
      typeof ts === "number" && Number.isFinite(ts) ? new Date(ts * 1000) : new Date();
    const node = el("time", "time", clockText(date, withDate));
    node.dateTime = date.toISOString();
    if (withDate) node.dataset.date = "1";
    node.title = date.toLocaleString();
    return node;
  }

  function retime() {
    for (const node of document.querySelectorAll("time.time")) {
      node.textContent = clockText(new Date(node.dateTime), node.dataset.date === "1");
    }
    for (const log of state.logs.values()) {
      for (const line of log.nodes) {
        if (line.isConnected) continue;
        for (const node of line.querySelectorAll("time.time")) {
          node.textContent = clockText(new Date(node.dateTime), node.dataset.date === "1");
        }
      }
    }
  }

  // -- state -----------------------------------------------------------------

  const state = {
    ws: null,
    welcomed: false, // on the current connection
    everWelcomed: false,
    quit: false, // the server said goodbye: do not reconnect on our own
    elsewhere: false, // a newer connection took our session
    nick: null, // the real nick, from welcome and nick events
    chosenNick: null, // a nick the user took (restored after a reconnect)
    welcomeRoom: null,
    current: null, // the room we talk in
    view: null, // a conversation shown ("@nick"), or null: the current room
    joined: [], // rooms we are in, in joining order
    logs: new Map(), // room or "@nick" -> log (see logFor)
    convs: new Map(), // nick (lower case) -> {nick}: private conversations
    members: new Map(), // room -> [{name, door}]
    topics: new Map(), // room -> {topic, setBy}
    serverRooms: [], // last rooms list: [{name, members, topic}]
    colors: new Map(), // nick (lower case) -> {name, css}, as seen in frames
    paletteByCss: new Map(), // CSS colour -> palette name, from the welcome
    mentions: [], // {room, name, text, ts, id, action}: the Mentions view
    mentionsUnseen: 0,
    // client_id -> {node, frame, nick, tries}: messages sent and not yet
    // acknowledged; unsent: those whose connection closed first, sent again
    // (same client_id, so the server does not repeat them) after a resume,
    // and lines typed while those wait or while the page takes its nick
    // and rooms back (tries 0: never sent), sent after them in order.
    pending: new Map(),
    unsent: new Map(),
    pmPending: [], // {node, to, text, cid}: private messages not echoed yet
    typed: new Set(), // client_ids of what was typed: errors show by the composer
    resuming: new Map(), // room (lower case) -> {room, point}: resumes not answered yet
    resumeDeadline: 0,
    // Replies to requests the page made on its own are not shown as notices.
    quiet: { rooms: 0, topic: 0, who: new Map(), status: new Map() },
    restore: null, // {nick, rooms, current} to re-establish after a reconnect
    nickRequest: null, // {name, clientId, retries}
    serverName: "tchat",
    welcomeJoinPending: false,
    account: null, // the account we are logged in to, from login events
    // The hello of this connection is not answered yet: frames wait in
    // held (they belong to a provisional session if the answer is
    // "continued") and typed lines wait.
    hello: null, // {cid, code, token, sentCode, tokenSent, welcomeBack, restore}
    held: [],
    helloTimer: null,
    welcomeFrame: null,
    sessionCode: "", // the resume code of the session this page is
    codeSent: null, // the code of this connection's hello, until answered
    missedLeft: 0, // frames still to come that the session missed while away
    restoreRoom: stored("sessionStorage", ROOM_KEY), // shown before a reload
    panelWait: null, // client_id of the login panel's request awaiting its answer
    typedCode: null, // a code typed as /resume CODE: ours once it is answered
    typedMsgTo: null, // a /msg typed here: its conversation opens when sent
    typedMentions: false,
    flash: null, // {room, id}: a message to show once its room is
    showNext: null, // a room picked in the list: shown once it is current
    historyAsked: [], // {cid, room}: typed /history requests not answered
    helpLoaded: false,
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

  // -- nick colours ------------------------------------------------------------

  function colourFrom(f, cssKey = "color", nameKey = "color_name") {
    const css = typeof f[cssKey] === "string" ? f[cssKey] : "";
    let name = typeof f[nameKey] === "string" ? f[nameKey] : "";
    if (!name && css) name = state.paletteByCss.get(css.toLowerCase()) || "";
    return css || name ? { name, css } : null;
  }

  function noteColour(nick, colour) {
    if (nick && colour) state.colors.set(lower(nick), colour);
  }

  function paint(node, colour) {
    if (!colour) return;
    const pair = Object.prototype.hasOwnProperty.call(NICK_COLOURS, colour.name)
      ? NICK_COLOURS[colour.name]
      : null;
    if (pair) node.style.setProperty("--nc", `light-dark(${pair[0]}, ${pair[1]})`);
    else if (/^#[0-9a-f]{3,8}$/i.test(colour.css)) node.style.setProperty("--nc", colour.css);
  }

  function nickNode(name, colour, door) {
    const node = el("span", "nick", name);
    paint(node, colour === undefined ? state.colors.get(lower(name)) : colour);
    if (door) node.title = `${name} (${door})`;
    return node;
  }

  // -- sending ---------------------------------------------------------------

  // Connected, welcomed, and the hello answered: requests may go.
  function connected() {
    return (
      state.ws !== null &&
      state.ws.readyState === WebSocket.OPEN &&
      state.welcomed &&
      state.hello === null
    );
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
        firstUnread: null, // where "New since you left" goes
        seen: new Set(),
        last: null,
        minId: null,
        more: null,
        loading: null,
        asked: [], // "older" / "typed": the history pages asked for, in order
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

  const convKey = (nick) => "@" + lower(nick);
  const isConv = (key) => typeof key === "string" && key.startsWith("@");

  function viewKey() {
    return state.view || state.current || NO_ROOM;
  }

  // Where answers to what the user typed go: the view they look at.
  function here() {
    return viewKey();
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
    if (log.firstUnread === node) log.firstUnread = null;
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

  // -- grouping: a run of lines by one person shows the nick once -------------

  function shown(node) {
    return settings.presence || !node.classList.contains("msg-presence");
  }

  function groupAt(log, i) {
    const node = log.nodes[i];
    if (!node) return;
    let prev = null;
    for (let j = i - 1; j >= 0 && prev === null; j--) {
      if (shown(log.nodes[j])) prev = log.nodes[j];
    }
    const cont =
      node.dataset.kind === "say" &&
      prev !== null &&
      prev.dataset.kind === "say" &&
      sameName(prev.dataset.from, node.dataset.from) &&
      prev.classList.contains("msg-incoming") === node.classList.contains("msg-incoming") &&
      Math.abs(Number(node.dataset.ts) - Number(prev.dataset.ts)) < GROUP_S;
    node.classList.toggle("msg-cont", cont);
  }

  function regroup(log) {
    for (let i = 0; i < log.nodes.length; i++) groupAt(log, i);
  }

  function regroupNear(log, node) {
    const i = log.nodes.indexOf(node);
    if (i < 0) return;
    groupAt(log, i);
    for (let j = i + 1; j < log.nodes.length; j++) {
      groupAt(log, j);
      if (shown(log.nodes[j])) break;
    }
  }

  // -- the live region ----------------------------------------------------------

  // #messages is role=log, aria-live=polite: screen readers read lines as
  // they arrive.  Lines that are not news (a view shown again, catch-up,
  // older pages, what a reload brings back) go in while it is off.
  let quietTimer = null;
  function quietly(fn) {
    ui.messages.setAttribute("aria-live", "off");
    try {
      return fn();
    } finally {
      clearTimeout(quietTimer);
      quietTimer = setTimeout(() => ui.messages.setAttribute("aria-live", "polite"), QUIET_MS);
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

  const marker = el("div", "unread-marker", "New since you left");
  marker.id = "unread-marker";

  // Adds a line to a log: at the end, or before the line `before`.  unread:
  // a message someone wrote (counted while its view is not shown).
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
    regroupNear(log, node);
    const viewed = key === viewKey();
    if (unread && (!viewed || document.hidden || state.missedLeft > 0) && !log.firstUnread) {
      log.firstUnread = node;
    }
    if (viewed) {
      if (at < 0) ui.messages.append(node);
      // An earlier line goes above "New since you left", not under it.
      else if (before.previousElementSibling === marker) marker.before(node);
      else before.before(node);
      if (stickToBottom) scrollToBottom();
      else if (at < 0) ui.newBelow.hidden = false;
    } else if (unread) {
      log.unread += 1;
      if (isConv(key)) renderConvs();
      else renderRooms();
    }
  }

  function removeLine(node) {
    const log = state.logs.get(node.dataset.room);
    if (log) {
      const i = log.nodes.indexOf(node);
      if (i >= 0) log.nodes.splice(i, 1);
      forget(log, node);
      if (i >= 0 && i < log.nodes.length) groupAt(log, i);
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
    const log = logFor(viewKey());
    older.hidden =
      state.view !== null ||
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

  // "New since you left" before the first line that came while away.
  function placeMarker(log) {
    const first = log.firstUnread;
    log.firstUnread = null;
    if (!first || !first.isConnected) return false;
    first.before(marker);
    return true;
  }

  function showView() {
    const key = viewKey();
    const log = logFor(key);
    log.unread = 0;
    quietly(() => {
      marker.remove();
      regroup(log);
      ui.messages.replaceChildren(older, ...log.nodes);
    });
    renderOlder();
    if (placeMarker(log)) {
      marker.scrollIntoView({ block: "start" });
      stickToBottom = atBottom();
    } else {
      scrollToBottom();
    }
    showFlash();
  }

  function renderTitle() {
    const name = state.serverName || "tchat";
    document.title = hiddenCount > 0 ? `(${hiddenCount}) ${name}` : name;
  }

  // Mentions and private messages while the tab is hidden: "(3) tchat".
  let hiddenCount = 0;
  function attention(title, body, key) {
    if (!document.hidden) return;
    hiddenCount += 1;
    renderTitle();
    if (!settings.notify || typeof Notification !== "function") return;
    if (Notification.permission !== "granted") return;
    try {
      const note = new Notification(title, { body, tag: key });
      note.onclick = () => {
        window.focus();
        openKey(key);
        note.close();
      };
    } catch (e) {
      // some browsers only notify from a service worker: the title says it
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    hiddenCount = 0;
    renderTitle();
    const log = logFor(viewKey());
    log.unread = 0;
    marker.remove();
    placeMarker(log);
    renderRooms();
    renderConvs();
    refreshRooms();
  });

  // -- rendering lines -------------------------------------------------------

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
    node.dataset.from = str(m.name);
    node.dataset.kind = action ? "act" : "say";
    node.dataset.ts = String(typeof m.ts === "number" ? m.ts : Date.now() / 1000);
    node.dataset.door = str(m.door);
    const parts = [timeNode(m.ts), space()];
    if (action) parts.push(el("span", "star", "*"), space());
    parts.push(nickNode(str(m.name), colourFrom(m), str(m.door)), space());
    parts.push(el("span", "text", text));
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
    noteColour(str(m.name), colourFrom(m));
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
        regroupNear(log, node);
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
        if (room === viewKey()) renderOlder();
        return;
      }
      removeLine(pending.node);
    }
    const node = el("div");
    fillUserMessage(node, m);
    // Live messages are the room's newest; earlier ones go to their place.
    const before = key !== null && m.history === true ? placeOf(log, key) : null;
    if (key !== null) noteShown(log, key);
    const add = () => addLine(room, node, { unread: !page, before });
    if (m.history === true || state.missedLeft > 0) quietly(add);
    else add();
    // A mention is news when live, or when missed while away.
    const fresh = !page && (m.history !== true || state.resuming.has(lower(room)));
    if (fresh && node.classList.contains("msg-mention")) noteMention(m, room, node);
    if (room === viewKey()) renderOlder();
  }

  // The answer to a history request: a page asked for by "load older
  // messages", or the lines of a typed /history, which are listed where
  // the user looks as well as merged into the log.
  function historyPage(f) {
    const room = str(f.room);
    if (!room) return;
    const log = logFor(room);
    const asked = log.asked.length ? log.asked.shift() : "typed";
    if (asked === "older") log.loading = null;
    if (typeof f.more === "boolean" && asked === "older") log.more = f.more;
    const list = Array.isArray(f.messages)
      ? f.messages.filter((m) => m !== null && typeof m === "object" && m.type === "usermsg")
      : [];
    const viewed = room === viewKey();
    // Keep the lines on screen where they are while lines go in above.
    const fromBottom = ui.messages.scrollHeight - ui.messages.scrollTop;
    const stuck = stickToBottom;
    stickToBottom = false;
    quietly(() => {
      for (const m of list) {
        userMessage({ ...m, room: str(m.room) || room, history: true }, { page: true });
      }
    });
    if (viewed) {
      ui.messages.scrollTop = ui.messages.scrollHeight - fromBottom;
      stickToBottom = atBottom();
      renderOlder();
    } else {
      stickToBottom = stuck;
    }
    if (asked === "typed") {
      const i = state.historyAsked.findIndex((a) => sameName(a.room, room));
      if (i >= 0) state.historyAsked.splice(i, 1);
      historyList(room, list);
    }
  }

  function historyList(room, list) {
    const title = list.length
      ? `The last ${list.length} message${list.length === 1 ? "" : "s"} of ${room}:`
      : `${room} has no earlier messages.`;
    const node = systemLine(here(), title, { event: "history" });
    const items = el("ul", "mention-list");
    for (const m of list) {
      const item = el("li");
      item.append(timeNode(m.ts), space());
      if (m.action === true) item.append(el("span", "star", "*"), space());
      item.append(nickNode(str(m.name), colourFrom(m), str(m.door)), space());
      item.append(el("span", "text", str(m.message)));
      items.append(item);
    }
    if (list.length) node.append(items);
    if (stickToBottom) scrollToBottom();
  }

  // A page of a room's messages before the oldest shown (latest = true:
  // the latest ones, for a room whose log is empty).
  function requestOlder(room = state.current, latest = false) {
    if (!room || !connected()) return;
    const log = logFor(room);
    if (log.loading !== null || (log.minId === null && !latest)) return;
    const cid = clientId("older");
    log.loading = cid;
    log.asked.push("older");
    const frame = { type: "history", room, limit: HISTORY_PAGE, client_id: cid };
    if (!latest) frame.before = log.minId;
    send(frame);
    renderOlder();
    setTimeout(() => {
      if (log.loading === cid) {
        log.loading = null;
        const i = log.asked.indexOf("older");
        if (i >= 0) log.asked.splice(i, 1);
        if (room === viewKey()) renderOlder();
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
    if (asked && asked.n > 1) asked.n -= 1;
    else state.resuming.delete(room.toLowerCase());
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
      // One marker per spot: a second resume of the same stretch (the
      // server's own after "welcome back", then ours) finds it there.
      let i = before === null ? log.nodes.length : log.nodes.indexOf(before);
      while (i > 0 && nodeKey(log.nodes[i - 1]) === null && !log.nodes[i - 1].classList.contains("gap")) i--;
      if (!(i > 0 && log.nodes[i - 1].classList.contains("gap"))) {
        const node = el("div", "msg msg-system gap");
        node.dataset.event = "gap";
        node.append(timeNode(), space(), el("span", "text", GAP_TEXT));
        addLine(room, node, { before });
      }
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
    if (room === viewKey()) renderOlder();
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

  // -- conversations -----------------------------------------------------------

  function conversation(nick) {
    const k = lower(nick);
    let conv = state.convs.get(k);
    if (!conv) {
      conv = { nick };
      state.convs.set(k, conv);
      renderConvs();
    }
    return conv;
  }

  function openConversation(nick) {
    conversation(nick);
    state.view = convKey(nick);
    closeDrawers();
    showView();
    renderAll();
  }

  function closeConversation() {
    if (state.view === null) return;
    const conv = state.convs.get(state.view.slice(1));
    state.logs.delete(state.view);
    if (conv) state.convs.delete(lower(conv.nick));
    if (conv) keptConvs.delete(lower(conv.nick));
    saveConvs();
    state.view = null;
    showView();
    renderAll();
  }

  // Shows a room or conversation by its log key (from a notification).
  function openKey(key) {
    if (isConv(key)) {
      const conv = state.convs.get(key.slice(1));
      if (conv) openConversation(conv.nick);
    } else if (key) {
      showRoom(key);
    }
  }

  // Private lines, as frames, by conversation (lower-case nick): what a
  // reload of this tab shows again once its session is carried on (the
  // server keeps no private history).  Only in sessionStorage: this tab's.
  const keptConvs = new Map();

  function keepPrivate(peer, m) {
    const lines = keptConvs.get(lower(peer)) || [];
    lines.push({
      type: "private",
      from: str(m.from),
      to: str(m.to),
      message: str(m.message),
      outgoing: m.outgoing === true,
      offline: m.offline === true,
      door: str(m.door),
      ts: typeof m.ts === "number" ? m.ts : Date.now() / 1000,
      color: str(m.color),
      color_name: str(m.color_name),
    });
    keptConvs.set(lower(peer), lines.slice(-CONV_KEPT));
    saveConvs();
  }

  function saveConvs() {
    const open = [...state.convs.keys()];
    const kept = open.filter((k) => keptConvs.has(k)).map((k) => keptConvs.get(k));
    store("sessionStorage", CONVS_KEY, JSON.stringify({ session: state.sessionCode, kept }));
  }

  // After a reload's code carried the session on: its conversations again,
  // read (what came while away follows as new).
  function restoreConvs(code) {
    let saved = null;
    try {
      saved = JSON.parse(stored("sessionStorage", CONVS_KEY) || "null");
    } catch (e) {
      saved = null;
    }
    if (!saved || saved.session !== code || !Array.isArray(saved.kept)) return;
    quietly(() => {
      for (const lines of saved.kept) {
        if (!Array.isArray(lines)) continue;
        for (const m of lines) {
          if (m && typeof m === "object") privateMessage(m, true);
        }
      }
    });
    for (const log of state.logs.values()) log.unread = 0;
  }

  // A private message, in or out: into its conversation, never a room's log.
  // (restored: one this tab showed before it was reloaded.)
  function privateMessage(m, restored = false) {
    const outgoing = m.outgoing === true;
    const offline = m.offline === true; // kept while we were away: sent long ago
    const peer = str(outgoing ? m.to : m.from);
    if (!peer) return;
    const text = str(m.message);
    if (!outgoing) noteColour(peer, colourFrom(m));
    conversation(peer);
    keepPrivate(peer, m);
    const key = convKey(peer);
    let node = null;
    if (outgoing && !restored) {
      const i = state.pmPending.findIndex((p) => sameName(p.to, peer) && p.text === text);
      if (i >= 0) {
        node = state.pmPending[i].node;
        state.pmPending.splice(i, 1);
      }
    }
    const fresh = node === null;
    if (fresh) node = el("div");
    const from = outgoing ? (restored && str(m.from)) || state.nick || "" : peer;
    node.className = "msg msg-private " + (outgoing ? "msg-outgoing msg-own" : "msg-incoming");
    node.removeAttribute("title");
    if (offline) node.classList.add("msg-offline");
    node.dataset.nick = peer;
    node.dataset.from = from;
    node.dataset.kind = "say";
    node.dataset.ts = String(typeof m.ts === "number" ? m.ts : Date.now() / 1000);
    node.dataset.door = outgoing ? "web" : str(m.door);
    const parts = [timeNode(m.ts, offline), space()];
    parts.push(nickNode(from, undefined, outgoing ? null : str(m.door)), space());
    parts.push(el("span", "text", text));
    if (offline) parts.push(space(), el("span", "offline-mark", "(sent while you were away)"));
    node.replaceChildren(...parts);
    if (fresh) {
      const add = () => addLine(key, node, { unread: !outgoing && !restored });
      if (offline || state.missedLeft > 0) quietly(add);
      else add();
    } else {
      regroupNear(logFor(key), node);
    }
    if (outgoing && sameName(state.typedMsgTo, peer)) {
      state.typedMsgTo = null;
      if (state.view !== key) openConversation(peer);
    }
    if (!outgoing && !restored) attention(`${peer} (private)`, text, key);
  }

  // -- mentions ------------------------------------------------------------------

  function noteMention(m, room, node = null) {
    const id = Number.isSafeInteger(m.id) ? m.id : null;
    if (id !== null && state.mentions.some((x) => x.id === id && sameName(x.room, room))) return;
    state.mentions.push({
      room,
      id,
      name: str(m.name),
      text: str(m.message),
      ts: m.ts,
      action: m.action === true,
      colour: colourFrom(m),
    });
    if (state.mentions.length > MENTIONS_KEPT) state.mentions.shift();
    const seen = node !== null && room === viewKey() && !document.hidden && state.missedLeft === 0;
    if (!seen) state.mentionsUnseen += 1;
    renderMentionCount();
    if (ui.mentionsPanel.open) renderMentions();
    attention(`${str(m.name)} in ${room}`, str(m.message), room);
  }

  function renderMentionCount() {
    const n = state.mentionsUnseen;
    ui.mentionCount.hidden = n === 0;
    ui.mentionCount.textContent = n > 99 ? "99+" : String(n);
    ui.openMentions.setAttribute(
      "aria-label",
      n ? `Mentions, ${n} new` : "Mentions",
    );
    renderToggleDot();
  }

  function renderMentions() {
    const items = [...state.mentions].reverse().map((m) => {
      const li = el("li", "mention");
      li.dataset.key = `${m.room} ${m.id}`;
      li.dataset.room = m.room;
      if (m.id !== null) li.dataset.id = String(m.id);
      const button = el("button", "mention-jump");
      button.type = "button";
      button.append(timeNode(m.ts, true), space(), el("span", "mention-room", m.room), space());
      if (m.action) button.append(el("span", "star", "*"), space());
      button.append(nickNode(m.name, m.colour), space(), el("span", "text", m.text));
      li.append(button);
      return li;
    });
    replaceList(ui.mentionList, items, null);
    ui.noMentions.hidden = items.length > 0;
  }

  function openMentions() {
    state.mentionsUnseen = 0;
    renderMentionCount();
    renderMentions();
    closeDrawers();
    openDialog(ui.mentionsPanel, ui.openMentions);
    const first = ui.mentionList.querySelector("button");
    if (first) first.focus();
  }

  ui.openMentions.addEventListener("click", openMentions);
  ui.mentionList.addEventListener("click", (e) => {
    const item = e.target.closest("li");
    if (!item) return;
    ui.mentionsPanel.close();
    state.flash = item.dataset.id ? { room: item.dataset.room, id: item.dataset.id } : null;
    showRoom(item.dataset.room);
  });

  // Scrolls to the message a mention jumped to, once its room is shown.
  function showFlash() {
    const f = state.flash;
    if (!f || !sameName(f.room, viewKey())) return;
    state.flash = null;
    const node = logFor(viewKey()).nodes.find((n) => n.dataset.id === f.id);
    if (!node) return;
    node.scrollIntoView({ block: "center" });
    stickToBottom = atBottom();
    node.classList.remove("flash");
    void node.offsetWidth; // restart the animation
    node.classList.add("flash");
  }

  // -- notices and errors ---------------------------------------------------------

  function systemLine(room, text, { event = "", ts, cls = "msg-system" } = {}) {
    const node = el("div", "msg " + cls);
    if (event) node.dataset.event = event;
    node.append(timeNode(ts), space(), el("span", "text", text));
    addLine(room, node);
    return node;
  }

  // Messages that named us while we were away, as a short list; they go to
  // the Mentions view too.  Asked for with /mentions, the view opens.
  function mentionsList(f) {
    const list = Array.isArray(f.mentions)
      ? f.mentions.filter((m) => m && typeof m === "object")
      : [];
    for (const m of list) noteMention(m, str(m.room));
    if (state.typedMentions) {
      state.typedMentions = false;
      openMentions();
      return;
    }
    const text = str(f.message);
    const node = systemLine(here(), list.length ? text.split("\n")[0] : text, {
      event: "mentions",
    });
    if (!list.length) return;
    const items = el("ul", "mention-list");
    for (const m of list) {
      const name = str(m.name);
      const item = el("li", "mention");
      item.append(timeNode(m.ts, true), space(), el("span", "mention-room", str(m.room)), space());
      if (m.action === true) item.append(el("span", "star", "*"), space());
      item.append(nickNode(name), space());
      item.append(el("span", "text", str(m.message)));
      items.append(item);
    }
    node.append(items);
  }

  function errorLine(text, code) {
    const node = el("div", "msg msg-error");
    if (code) node.dataset.code = code;
    node.append(timeNode(), space(), el("span", "text", text));
    addLine(here(), node);
  }

  // An error about what the user typed: next to the composer, until the
  // next line is sent.
  function composerError(text) {
    ui.composerError.textContent = text || "";
    ui.composerError.hidden = !text;
  }

  function showNotice(text) {
    ui.noticeText.textContent = text;
    ui.notice.hidden = false;
  }

  // -- rooms, conversations, members, topic -----------------------------------

  // Replaces a list's items, keeping keyboard focus on the same item, with
  // one item in the tab order (arrow keys move between them).
  function replaceList(list, items, activeKey) {
    const focusedItem = list.contains(document.activeElement)
      ? document.activeElement.closest("li")
      : null;
    const focused = focusedItem ? focusedItem.dataset.key : null;
    list.replaceChildren(...items);
    const buttons = [...list.querySelectorAll("li > button")];
    const want = focused !== null ? focused : activeKey;
    let j = buttons.findIndex((b) => b.parentElement.dataset.key === want);
    if (j < 0) j = 0;
    buttons.forEach((b, k) => (b.tabIndex = k === j ? 0 : -1));
    if (focused !== null && buttons[j]) buttons[j].focus();
  }

  function listKeys(list) {
    list.addEventListener("keydown", (e) => {
      const buttons = [...list.querySelectorAll("li > button")];
      const i = buttons.indexOf(document.activeElement);
      if (i < 0) return;
      const moves = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: buttons.length - 1 };
      if (!(e.key in moves)) return;
      e.preventDefault();
      const j = Math.max(0, Math.min(buttons.length - 1, moves[e.key]));
      buttons.forEach((b, k) => (b.tabIndex = k === j ? 0 : -1));
      buttons[j].focus();
    });
  }

  function unreadBadge(n, label) {
    const node = el("span", "unread", n > 99 ? "99+" : n);
    node.title = label;
    return node;
  }

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
      li.dataset.key = r.name;
      li.dataset.joined = joined ? "true" : "false";
      if (joined) li.classList.add("joined");
      const button = el("button", "room-button");
      button.type = "button";
      if (current && state.view === null) {
        li.classList.add("current");
        button.setAttribute("aria-current", "true");
      }
      const topic = state.topics.get(r.name);
      const topicText = topic ? topic.topic : r.topic;
      button.title =
        (joined ? (current ? "Current room" : "Switch to ") : "Join ") +
        r.name +
        (topicText ? " — " + topicText : "");
      const mark = el("span", "room-mark", joined ? "●" : "○");
      mark.setAttribute("aria-hidden", "true");
      button.append(mark, el("span", "room-name", r.name));
      const cached = state.members.get(r.name);
      const count = typeof r.members === "number" ? r.members : cached ? cached.length : null;
      if (count !== null) {
        const people = el("span", "room-count", count);
        people.setAttribute("aria-label", `${count} ${count === 1 ? "person" : "people"}`);
        button.append(people);
      }
      const log = state.logs.get(r.name);
      if (log && log.unread > 0 && !(current && state.view === null)) {
        button.append(unreadBadge(log.unread, `${log.unread} unread`));
      }
      li.append(button);
      return li;
    });
    replaceList(ui.rooms, items, state.view === null ? state.current : null);
    renderToggleDot();
  }

  function renderConvs() {
    const items = [...state.convs.values()]
      .sort((a, b) => (lower(a.nick) < lower(b.nick) ? -1 : 1))
      .map((c) => {
        const key = convKey(c.nick);
        const li = el("li", "room conversation");
        li.dataset.nick = c.nick;
        li.dataset.key = c.nick;
        const button = el("button", "room-button");
        button.type = "button";
        button.title = `Private conversation with ${c.nick}`;
        if (state.view === key) {
          li.classList.add("current");
          button.setAttribute("aria-current", "true");
        }
        const name = nickNode(c.nick);
        name.classList.add("room-name");
        button.append(name);
        const log = state.logs.get(key);
        if (log && log.unread > 0 && state.view !== key) {
          button.append(unreadBadge(log.unread, `${log.unread} unread`));
        }
        li.append(button);
        return li;
      });
    replaceList(ui.convs, items, state.view ? state.view.slice(1) : null);
    ui.noConvs.hidden = items.length > 0;
    renderToggleDot();
  }

  function renderToggleDot() {
    const anyUnread =
      state.mentionsUnseen > 0 ||
      [...state.logs.entries()].some(([key, log]) => key !== viewKey() && log.unread > 0);
    ui.toggleRooms.classList.toggle("has-unread", anyUnread);
  }

  function renderMembers() {
    const room = state.current;
    const list = room ? state.members.get(room) || [] : [];
    const items = list.map((m) => {
      const li = el("li", "member");
      li.dataset.name = m.name;
      li.dataset.key = m.name;
      li.dataset.door = m.door;
      li.dataset.registered = String(m.registered === true);
      if (isMe(m.name)) li.classList.add("me");
      const button = el("button", "member-button");
      button.type = "button";
      button.title = isMe(m.name) ? "You" : `Talk to ${m.name} privately`;
      button.append(nickNode(m.name));
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
    replaceList(ui.members, items, null);
    ui.memberCount.textContent = room ? String(list.length) : "";
  }

  function renderTopic() {
    const room = state.current;
    const conv = state.view ? state.convs.get(state.view.slice(1)) : null;
    document.body.classList.toggle("in-conversation", conv !== null && conv !== undefined);
    if (conv) {
      ui.roomName.textContent = conv.nick;
      ui.topic.textContent = "";
      ui.topicBy.textContent = "";
      ui.leave.textContent = "Close";
      ui.leave.title = "Close this conversation";
      ui.leave.disabled = false;
      document.body.classList.remove("no-room");
      return;
    }
    ui.leave.textContent = "Leave";
    ui.leave.title = "Leave this room";
    ui.roomName.textContent = room || "no room";
    const info = room ? state.topics.get(room) : null;
    ui.topic.textContent = info && info.topic ? info.topic : "";
    ui.topicBy.textContent = info && info.topic && info.setBy ? ` — set by ${info.setBy}` : "";
    ui.leave.disabled = !room;
    document.body.classList.toggle("no-room", !room);
  }

  function renderAll() {
    renderRooms();
    renderConvs();
    renderMembers();
    renderTopic();
    renderOlder();
  }

  function setTopic(room, topic, setBy) {
    state.topics.set(room, { topic: topic || "", setBy: setBy || null });
    if (sameName(room, state.current)) renderTopic();
  }

  // The room we talk in changed (or was confirmed): show its log, unless a
  // conversation is shown, and refresh what we know about it.
  function switchTo(room, { show = false } = {}) {
    const changed = room !== state.current;
    state.current = room;
    if (show) state.view = null;
    store("sessionStorage", ROOM_KEY, room);
    if ((changed || show) && state.view === null) showView();
    else if (state.view === null) logFor(viewKey()).unread = 0;
    renderAll();
    if (room) {
      refreshWho();
      refreshTopic();
    }
  }

  // Shows a room the user picked: the current one at once, another once
  // the server has made it current.
  function showRoom(room) {
    if (sameName(room, state.current)) {
      state.view = null;
      showView();
      renderAll();
    } else {
      state.showNext = room;
      joinRoom(room);
    }
  }

  // One member as "who" and "crowd" frames list them: noted colour, and the
  // entry the member list keeps.
  function memberFrom(m) {
    noteColour(m.name, colourFrom(m));
    return {
      name: m.name,
      door: str(m.door),
      registered: m.registered === true,
      away: typeof m.away === "string" ? m.away : null,
    };
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
    const h = state.hello;
    if (h !== null) {
      // Until the hello is answered, frames belong to a session that may be
      // void: they wait, and are dropped if the session continues.
      if (frame.type === "continued") return onContinued(frame);
      state.held.push(frame);
      helloAnswered(h, frame);
      if (!h.code && !h.token) settle();
      return;
    }
    if (frame.type === "continued") return onContinued(frame); // to a /resume, say
    dispatch(frame);
    if (state.missedLeft > 0) {
      state.missedLeft -= 1;
      if (state.missedLeft === 0) {
        marker.remove();
        placeMarker(logFor(viewKey()));
      }
    }
  }

  function dispatch(frame) {
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
      case "crowd":
        return onCrowd(f);
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
        else systemLine(here(), text, { event: "topic_info" });
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
        else systemLine(here(), text, { event: "rooms" });
        return;
      }
      case "who": {
        const room = str(f.room);
        if (room && Array.isArray(f.members)) {
          state.members.set(
            room,
            f.members.filter((m) => m && typeof m.name === "string").map(memberFrom),
          );
          if (sameName(room, state.current)) renderMembers();
          renderRooms();
        }
        const waiting = state.quiet.who.get(room) || 0;
        if (waiting > 0) state.quiet.who.set(room, waiting - 1);
        else systemLine(here(), text, { event: "who" });
        return;
      }
      case "help":
        return onHelp(f);
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
      case "away":
        return onAway(f);
      case "goodbye":
        state.quit = true;
        if (str(f.code) === TAKEN_CODE || TAKEN_TEXT.test(text)) return takenOver(text);
        systemLine(here(), text, { event: "goodbye" });
        return;
      default:
        // motd and anything newer: the readable message is enough.
        systemLine(here(), text, { event: str(f.event) });
        return;
    }
  }

  // -- sessions: welcome, hello, continued -----------------------------------------

  function onWelcome(f) {
    state.welcomed = true;
    state.serverName = str(f.server) || "tchat";
    ui.brand.textContent = state.serverName;
    renderTitle();
    attempt = 0; // a connection that got this far counts as successful
    state.nick = str(f.name);
    state.welcomeRoom = str(f.room) || null;
    state.welcomeJoinPending = state.welcomeRoom !== null;
    state.welcomeFrame = f;
    state.joined = [];
    state.members.clear();
    state.quiet = { rooms: 0, topic: 0, who: new Map(), status: new Map() };
    state.nickRequest = null;
    state.resuming.clear();
    state.missedLeft = 0;
    state.account = null; // until the token logs this connection in
    if (f.palette && typeof f.palette === "object") {
      for (const [name, css] of Object.entries(f.palette)) {
        if (typeof css === "string") state.paletteByCss.set(css.toLowerCase(), name);
      }
    }
    noteColour(state.nick, colourFrom(f));
    for (const log of state.logs.values()) {
      log.loading = null;
      log.asked = [];
      log.caughtUp = [];
    }
    const first = !state.everWelcomed;
    state.everWelcomed = true;
    const restore = state.restore;
    state.restore = null;
    if (restore && !first) {
      // Resume from what we showed, whatever the server sends before the
      // hello is answered (a join replay may move last on).
      for (const room of restore.rooms) {
        const log = logFor(room);
        if (log.resumeFrom === undefined) log.resumeFrom = log.last;
      }
    }
    sendHello(str(f.resume_code), first, first ? null : restore);
  }

  // The first frame after every welcome.  The code names the session to
  // continue: on a page's first connection, the one this tab kept (a
  // reload); later, the page's own (a network drop, a server restart).  A
  // kept token logs us in, or continues the account's session in a new
  // tab.  With either, what the server sends waits for the answer.
  function sendHello(welcomeCode, first, restore) {
    const hello = { type: "hello", client_id: clientId("hello") };
    const code = first ? stored("sessionStorage", CODE_KEY) : state.sessionCode;
    if (code && code !== welcomeCode) hello.code = code;
    const token = stored("localStorage", TOKEN_KEY);
    if (token) hello.token = token;
    // A new session starts under the nick this browser last chose, so the
    // others see "alice joined", not a guest renamed.
    const nick = stored("localStorage", NICK_KEY);
    if (nick && !token && !hello.code && first) hello.name = nick;
    state.codeSent = hello.code || null;
    if (!first && restore) state.restoreRoom = restore.current;
    state.hello = {
      cid: hello.client_id,
      code: hello.code !== undefined,
      token: hello.token !== undefined,
      tokenSent: hello.token !== undefined,
      welcomeCode,
      welcomeBack: false,
      restore,
      first,
    };
    state.held = [];
    send(hello);
    if (!state.hello.code && !state.hello.token) {
      settle();
      return;
    }
    const h = state.hello;
    clearTimeout(state.helloTimer);
    state.helloTimer = setTimeout(() => {
      if (state.hello === h) settle(); // never answered: a new session
    }, HELLO_WAIT_MS);
  }

  // Notes which part of the hello a frame answers.
  function helloAnswered(h, f) {
    const code = str(f.code);
    if (f.type === "error" && f.client_id === h.cid) {
      // The server answers the code, then the token.
      if (code === "token-invalid" || code === "account-unavailable") h.token = false;
      else if (h.code) h.code = false;
      else h.token = false;
    } else if (f.type === "system" && f.event === "status" && /^welcome back\b/i.test(str(f.message))) {
      h.code = false;
      h.welcomeBack = true;
    } else if (f.type === "system" && f.event === "login") {
      h.token = false;
    }
  }

  // The hello did not continue a session: this connection's welcome is the
  // session (a new one, or one the server restored from its store: "welcome
  // back"), and what waited is shown.
  function settle() {
    const h = state.hello;
    state.hello = null;
    clearTimeout(state.helloTimer);
    const f = state.welcomeFrame;
    if (!h.welcomeBack) {
      state.sessionCode = h.welcomeCode;
      store("sessionStorage", CODE_KEY, h.welcomeCode);
      state.restoreRoom = null;
    } else {
      state.sessionCode = state.codeSent || h.welcomeCode;
    }
    if (document.activeElement !== ui.nick) setNickField(state.nick);
    noteColour(state.nick, colourFrom(f));
    const motd = Array.isArray(f.motd) ? f.motd.map(str) : [];
    const lines = [str(f.message)].concat(motd).filter((l) => l !== "");
    systemLine(state.welcomeRoom || here(), lines.join("\n"), { event: "welcome" });
    renderAccount();
    setConnState("open", "connected");
    const held = state.held;
    state.held = [];
    quietly(() => {
      for (const frame of held) dispatch(frame);
    });
    if (h.restore) {
      if (h.welcomeBack) resumeRooms(h.restore.rooms);
      else restoreSession(h.restore, h.tokenSent);
    }
    refreshRooms();
    renderOlder();
    sendUnsent();
  }

  // The server still had our session (lingering after a drop, or open in
  // another tab): take its nick, colour, rooms and account; the welcome's
  // guest and MOTD never were.  The frames it missed follow.
  function onContinued(f) {
    state.hello = null;
    state.held = [];
    clearTimeout(state.helloTimer);
    state.codeSent = null;
    state.nick = str(f.name) || state.nick;
    state.chosenNick = state.nick;
    noteColour(state.nick, colourFrom(f));
    state.account = typeof f.account === "string" && f.account ? f.account : null;
    const code = str(f.resume_code);
    if (code) {
      const reloaded = state.convs.size === 0;
      state.sessionCode = code;
      store("sessionStorage", CODE_KEY, code);
      if (reloaded) restoreConvs(code);
    }
    state.joined = Array.isArray(f.rooms) ? f.rooms.map(str).filter((r) => r) : [];
    state.welcomeJoinPending = false;
    state.restoreRoom = null;
    state.missedLeft = Number.isSafeInteger(f.missed) && f.missed > 0 ? f.missed : 0;
    setNickField(state.nick);
    renderAccount();
    setConnState("open", "connected");
    const current = findJoined(str(f.current));
    switchTo(current, { show: state.view === null });
    // Fill in what may have been lost in flight; a reloaded page, which
    // shows nothing yet, gets each room's latest lines.
    const fresh = state.joined.filter((room) => {
      const log = state.logs.get(room);
      return !log || log.last === null;
    });
    resumeRooms(state.joined.filter((room) => !fresh.includes(room)));
    for (const room of fresh) requestOlder(room, true);
    refreshRooms();
    renderAll();
    sendUnsent();
  }

  // A "resumed" is to come for this room (one more, if the server resumes
  // it on its own after "welcome back" too).
  function expectResumed(room, point) {
    const known = state.resuming.get(room.toLowerCase());
    if (known) known.n += 1;
    else state.resuming.set(room.toLowerCase(), { room, point, n: 1 });
  }

  // One "resume" for these rooms, each from the last message we showed.
  function resumeRooms(rooms) {
    if (!rooms.length) return;
    const points = {};
    for (const room of rooms) {
      const log = state.logs.get(room);
      const last = !log ? null : log.resumeFrom !== undefined ? log.resumeFrom : log.last;
      if (last === null) points[room] = 0;
      else if (last.epoch) points[room] = { id: last.id, epoch: last.epoch };
      else points[room] = last.id; // a bare id: the room's current epoch
      expectResumed(room, last);
    }
    state.resumeDeadline = performance.now() + RESUME_WAIT_MS;
    setTimeout(sendUnsent, RESUME_WAIT_MS);
    send({ type: "resume", rooms: points });
  }

  // A newer connection (another tab, or this one reloaded elsewhere) took
  // our session: say so calmly, and do not take it back on our own.
  function takenOver(text) {
    state.quit = true;
    state.elsewhere = true;
    showNotice(text || "This chat continues in another tab or window.");
  }

  ui.noticeReconnect.addEventListener("click", () => {
    ui.notice.hidden = true;
    state.elsewhere = false;
    state.quit = false;
    attempt = 0;
    if (state.ws === null) connect();
  });

  // The answer to the hello's code: "welcome back, NICK: restoring #a, #b"
  // (or "...: you were in no room"), then each room's catch-up and
  // "resumed", which typed lines wait for as after a reconnect.
  function onWelcomeBack(f, message) {
    const listed = /: restoring (.+)$/.exec(message);
    const rooms = Array.isArray(f.rooms) ? f.rooms.map(str) : listed ? listed[1].split(", ") : [];
    for (const room of rooms) {
      if (!room) continue;
      const log = logFor(room);
      const point = log.resumeFrom !== undefined ? log.resumeFrom : log.last;
      expectResumed(room, point);
    }
    if (state.resuming.size) {
      state.resumeDeadline = performance.now() + RESUME_WAIT_MS;
      setTimeout(sendUnsent, RESUME_WAIT_MS);
    } else {
      state.restoreRoom = null;
    }
  }

  // After a reconnect to a server that no longer had our session: take
  // back the nick and the rooms, current one last, with what was said in
  // them meanwhile.  One "resume" asks for every room from the last
  // message we showed in it: the server joins us to each (without the
  // replay of a join), sends what we missed, then "resumed".
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
    resumeRooms(rooms);
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
      state.hello !== null ||
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
    const log = state.logs.get(entry.node.dataset.room);
    if (log) regroupNear(log, entry.node);
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

  // -- presence --------------------------------------------------------------------

  function presenceLine(room, f) {
    const node = systemLine(room, msgText(f), { event: str(f.event), ts: f.ts });
    node.classList.add("msg-presence");
    node.dataset.who = str(f.name);
    regroupNear(logFor(room), node);
  }

  // A nick taken right after joining (a newcomer naming themselves) reads
  // as one line, "alice joined #lobby", when nothing came in between.
  function mergeRename(room, f) {
    const log = state.logs.get(room);
    const last = log && log.nodes.length ? log.nodes[log.nodes.length - 1] : null;
    if (!last || last.dataset.event !== "join" || !sameName(last.dataset.who || "", str(f.name))) {
      return false;
    }
    const joined = { ...f, type: "system", event: "join", name: str(f.new_name), room };
    last.dataset.who = str(f.new_name);
    const text = last.querySelector(".text");
    if (text) text.textContent = msgText(joined);
    return true;
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
      systemLine(room, msgText(f), { event: "join", ts: f.ts }).dataset.who = name;
      switchTo(room, { show: sameName(room, state.showNext) });
      if (sameName(room, state.showNext)) state.showNext = null;
    } else {
      noteColour(name, colourFrom(f));
      addMember(room, name, str(f.door), f.registered === true);
      presenceLine(room, f);
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
    if (isMe(name)) {
      systemLine(room, msgText(f), { event: "part", ts: f.ts });
      state.joined = state.joined.filter((r) => !sameName(r, room));
      state.members.delete(room);
      const log = state.logs.get(room);
      if (log) log.unread = 0;
      renderRooms();
    } else {
      presenceLine(room, f);
      removeMember(room, name);
      if (sameName(room, state.current)) {
        renderMembers();
        refreshWho();
      }
    }
    refreshRooms();
  }

  // A big room's arrivals and departures of the last seconds, in one frame
  // (the server's [limits] big_room): its member list takes them all at
  // once, in one pass however long it is, and one line says so.
  function onCrowd(f) {
    const room = str(f.room);
    const joined = (Array.isArray(f.joined) ? f.joined : [])
      .filter((m) => m && typeof m.name === "string" && m.name)
      .map(memberFrom);
    const left = new Set((Array.isArray(f.left) ? f.left : []).map((n) => lower(str(n))));
    const list = state.members.get(room);
    if (list) {
      const kept = list.filter((m) => !left.has(lower(m.name)));
      const have = new Set(kept.map((m) => lower(m.name)));
      for (const m of joined) {
        if (have.has(lower(m.name))) continue;
        have.add(lower(m.name));
        kept.push(m);
      }
      state.members.set(room, kept);
    }
    const node = systemLine(room, str(f.message), { event: "crowd", ts: f.ts });
    node.classList.add("msg-presence");
    if (sameName(room, state.current)) renderMembers();
    refreshRooms();
  }

  function onGone(f) {
    const name = str(f.name);
    const rooms = roomsOf(name);
    for (const room of rooms) {
      presenceLine(room, f);
      removeMember(room, name);
    }
    if (state.convs.has(lower(name))) presenceLine(convKey(name), f);
    renderMembers();
    refreshWho();
    refreshRooms();
  }

  function onNick(f) {
    const old = str(f.name);
    const now = str(f.new_name);
    const rooms = isMe(old) ? [state.current] : roomsOf(old);
    for (const room of rooms) {
      if (mergeRename(room, f)) continue;
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
    // A conversation follows its peer to the new nick.
    const conv = state.convs.get(lower(old));
    if (conv && !isMe(old) && !state.convs.has(lower(now))) {
      state.convs.delete(lower(old));
      conv.nick = now;
      state.convs.set(lower(now), conv);
      const kept = keptConvs.get(lower(old));
      if (kept) {
        keptConvs.delete(lower(old));
        const renamed = (n) => (sameName(n, old) ? now : n);
        keptConvs.set(
          lower(now),
          kept.map((m) => ({ ...m, from: renamed(m.from), to: renamed(m.to) })),
        );
        saveConvs();
      }
      const log = state.logs.get(convKey(old));
      if (log) {
        state.logs.delete(convKey(old));
        state.logs.set(convKey(now), log);
        for (const node of log.nodes) node.dataset.room = convKey(now);
      }
      if (state.view === convKey(old)) state.view = convKey(now);
      systemLine(convKey(now), msgText(f), { event: "nick", ts: f.ts });
      renderConvs();
      renderTopic();
    }
    if (isMe(old)) {
      const request = state.nickRequest;
      state.nick = now;
      state.chosenNick = now;
      state.nickRequest = null;
      if (request && request.then && sameName(request.name, now)) request.then();
      if (request && sameName(request.name, now) && f.registered !== true) {
        store("localStorage", NICK_KEY, now);
      }
      if (document.activeElement !== ui.nick || sameName(ui.nick.value.trim(), now)) {
        setNickField(now);
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

  // Someone went away or came back: their member list entry says so.
  function onAway(f) {
    const name = str(f.name);
    const away = typeof f.away === "string" ? f.away : null;
    for (const room of roomsOf(name)) {
      for (const m of state.members.get(room) || []) {
        if (sameName(m.name, name)) m.away = away;
      }
    }
    renderMembers();
  }

  function onStatus(f) {
    const message = str(f.message);
    if (/^welcome back\b/i.test(message)) {
      if (state.codeSent) onWelcomeBack(f, message);
      else if (state.typedCode) {
        store("sessionStorage", CODE_KEY, state.typedCode);
        state.sessionCode = state.typedCode;
      }
      state.typedCode = null;
      state.codeSent = null;
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
      const show = sameName(room, state.showNext);
      if (show) state.showNext = null;
      switchTo(room, { show });
    } else if (noRoom) {
      switchTo(null);
    } else {
      // Away, back, and the like change how we show in the member list.
      refreshWho();
      // "too many failed logins lately: yours is checked in N s"
      if (state.panelWait !== null && /log/i.test(message)) panelError(message);
    }
    if (!quiet) systemLine(room && state.view === null ? room : here(), message, { event: "status" });
  }

  // /help: the commands in the help panel, not the log.
  function onHelp(f) {
    const list = Array.isArray(f.commands)
      ? f.commands.filter((c) => c && typeof c === "object")
      : [];
    const parts = [];
    for (const c of list) parts.push(el("dt", "", str(c.usage)), el("dd", "", str(c.description)));
    if (!parts.length) parts.push(el("dd", "", str(f.message)));
    ui.helpCommands.replaceChildren(...parts);
    state.helpLoaded = true;
    closeDrawers();
    if (!ui.helpPanel.open) openDialog(ui.helpPanel, ui.openHelp);
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
    if (code === TAKEN_CODE || (TAKEN_TEXT.test(message) && !cid)) return takenOver(message);
    if (cid.startsWith("older-")) {
      for (const log of state.logs.values()) {
        if (log.loading !== cid) continue;
        log.loading = null;
        const i = log.asked.indexOf("older");
        if (i >= 0) log.asked.splice(i, 1);
      }
      renderOlder();
    }
    // Answers to the hello: the code or the token did not work.
    if (code === "token-invalid") {
      store("localStorage", TOKEN_KEY, null);
      state.account = null;
      renderAccount();
    }
    const hello = cid.startsWith("hello-");
    if (hello && code !== "token-invalid") {
      // The welcome that came with this connection says what we are now.
      state.codeSent = null;
      return;
    }
    // A typed /history that failed: no page is coming for it.
    const typedHistory = state.historyAsked.findIndex((a) => a.cid === cid);
    if (cid && typedHistory >= 0) {
      const log = logFor(state.historyAsked[typedHistory].room);
      const i = log.asked.lastIndexOf("typed");
      if (i >= 0) log.asked.splice(i, 1);
      state.historyAsked.splice(typedHistory, 1);
    }
    const asked = state.nickRequest;
    if (cid && state.pending.has(cid)) {
      const pending = state.pending.get(cid);
      state.pending.delete(cid);
      failPending(pending, "Not sent: " + message);
    }
    const pm = state.pmPending.findIndex((p) => p.cid === cid);
    if (cid && pm >= 0) {
      failPending(state.pmPending[pm], "Not sent: " + message);
      state.pmPending.splice(pm, 1);
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
          here(),
          `${request.name} is still taken (perhaps by your previous connection); trying again…`,
          { event: "status" },
        );
      }
      return;
    }
    if (nickError) {
      state.nickRequest = null;
      if (state.nick) setNickField(state.nick);
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
    if (state.typed.has(cid)) {
      state.typed.delete(cid);
      if (!forPanel || !ui.panel.open) composerError(message);
    } else if (!forPanel || !ui.panel.open) {
      errorLine(message, code);
    }
    sendUnsent();
  }

  // A line's text.  Presence lines are told without the door (the member
  // list and a nick's title show it, once per person) and with the
  // registered mark as the member list has it.
  function msgText(f) {
    const name = str(f.name) + (f.registered === true && f.event !== "nick" ? " \u2713" : "");
    const reason = f.reason ? ` (${str(f.reason)})` : "";
    switch (f.type === "system" ? str(f.event) : "") {
      case "join":
        return `${name} joined ${str(f.room)}`;
      case "part":
        return `${name} left ${str(f.room)}${reason}`;
      case "quit":
        return `${name} quit${reason}`;
      case "lost":
        return `${name} lost connection`;
      case "nick":
        return `${name} is now known as ${str(f.new_name)}${f.registered === true ? " \u2713" : ""}`;
      default:
        return str(f.message);
    }
  }

  // -- user actions ----------------------------------------------------------

  // What the user typed, by client_id: its errors show by the composer.
  function noteTyped(cid) {
    state.typed.add(cid);
    if (state.typed.size > 200) state.typed.delete(state.typed.values().next().value);
  }

  function setNickField(nick) {
    ui.nick.value = nick || "";
    if (document.activeElement !== ui.settingsNick) ui.settingsNick.value = nick || "";
  }

  function requestNick(name, restoring = false, existing = null) {
    const cid = clientId("nick");
    const request = existing || { name, retries: restoring ? NICK_RETRIES : 0 };
    request.clientId = cid;
    state.nickRequest = request;
    if (!restoring) noteTyped(cid);
    send({ type: "nick", name, client_id: cid });
    // A nick the server takes as unchanged gets no answer: stop waiting.
    setTimeout(() => {
      if (state.nickRequest === request && request.clientId === cid) {
        state.nickRequest = null;
        if (document.activeElement !== ui.nick && state.nick !== null) setNickField(state.nick);
        if (request.failed) request.failed(`${name} did not become your nick.`);
        sendUnsent();
      }
    }, NICK_RETRY_MS * 2);
    return request;
  }

  function submitNick(field = ui.nick) {
    const wanted = field.value.trim();
    if (!wanted || state.nick === null || wanted === state.nick) {
      if (state.nick !== null) setNickField(state.nick);
      return;
    }
    if (state.nickRequest && state.nickRequest.name === wanted) return; // already asked
    if (!connected()) {
      composerError("Not connected: your nick was not changed.");
      setNickField(state.nick);
      return;
    }
    composerError("");
    requestNick(wanted);
  }

  for (const field of [ui.nick, ui.settingsNick]) {
    field.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        submitNick(field);
        if (field === ui.nick) ui.message.focus();
      } else if (e.key === "Escape" && field === ui.nick) {
        if (state.nick !== null) setNickField(state.nick);
        ui.message.focus();
      }
    });
    field.addEventListener("change", () => submitNick(field));
  }

  const history = [];
  let historyAt = 0;
  let draft = "";

  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const raw = ui.message.value;
    if (!raw.trim()) return;
    composerError("");
    if (!connected() && state.hello === null) {
      composerError("Not connected: your message was not sent.");
      return;
    }
    const trimmed = raw.trim();
    const command = trimmed.startsWith("/") && !trimmed.startsWith("//");
    const conv = state.view ? state.convs.get(state.view.slice(1)) : null;
    if (conv && !command) return sendPrivate(conv.nick, raw, trimmed);
    const cid = clientId("c");
    const frame = { type: "message", message: raw, client_id: cid };
    if (state.current) frame.room = state.current;
    if (encoder.encode(JSON.stringify(frame)).length > MAX_FRAME_BYTES) {
      // The server would close the connection (1009) for a frame this big.
      composerError("That message is too long to send.");
      return;
    }
    noteTyped(cid);
    const typedCode = /^\/resume\s+(\S+)/i.exec(trimmed);
    if (typedCode) state.typedCode = typedCode[1];
    const msgTo = /^\/(?:msg|query)\s+(\S+)\s+\S/i.exec(trimmed);
    if (msgTo) state.typedMsgTo = msgTo[1];
    if (/^\/history\b/i.test(trimmed) && state.current) {
      logFor(state.current).asked.push("typed");
      state.historyAsked.push({ cid, room: state.current });
    }
    if (/^\/mentions\b/i.test(trimmed)) state.typedMentions = true;
    // Plain text (and //text, which the server sends as /text) comes back
    // as an acknowledgement; show it as pending until then.  After a
    // reconnect, lines still to be sent again go first, and none goes
    // before the nick is back: this one waits (see sendUnsent).
    const wait = !command && (state.unsent.size > 0 || holdingMessages());
    if (!wait && !send(frame)) {
      composerError("Not connected: your message was not sent.");
      return;
    }
    if (!command) {
      const node = el("div", "msg msg-user msg-own msg-pending");
      node.dataset.clientId = cid;
      node.dataset.from = state.nick || "";
      node.dataset.kind = "say";
      node.dataset.ts = String(Date.now() / 1000);
      node.dataset.door = "web";
      node.title = "Sending…";
      node.append(
        timeNode(),
        space(),
        nickNode(state.nick || "", undefined, "web"),
        space(),
        el("span", "text", trimmed.startsWith("//") ? trimmed.slice(1) : trimmed),
      );
      const entry = { node, frame, nick: state.nick, tries: wait ? 0 : 1 };
      (wait ? state.unsent : state.pending).set(cid, entry);
      addLine(state.current, node);
    }
    typedLine(raw, trimmed);
  });

  // A private message typed in its conversation: shown as pending until
  // the server's copy comes back.
  function sendPrivate(to, raw, trimmed) {
    if (!connected()) {
      composerError("Not connected: your message was not sent.");
      return;
    }
    const text = trimmed.startsWith("//") ? trimmed.slice(1) : trimmed;
    const cid = clientId("pm");
    noteTyped(cid);
    if (!send({ type: "msg", to, message: text, client_id: cid })) {
      composerError("Not connected: your message was not sent.");
      return;
    }
    const node = el("div", "msg msg-private msg-outgoing msg-own msg-pending");
    node.dataset.from = state.nick || "";
    node.dataset.kind = "say";
    node.dataset.ts = String(Date.now() / 1000);
    node.title = "Sending…";
    node.append(timeNode(), space(), nickNode(state.nick || ""), space(), el("span", "text", text));
    state.pmPending.push({ node, to, text, cid });
    addLine(convKey(to), node);
    typedLine(raw, trimmed);
  }

  function typedLine(raw, trimmed) {
    if (history[history.length - 1] !== raw && !SECRET.test(trimmed)) history.push(raw);
    if (history.length > 100) history.shift();
    historyAt = history.length;
    draft = "";
    ui.message.value = "";
    scrollToBottom();
  }

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
      composerError("Not connected.");
      return;
    }
    if (findJoined(room)) quietStatus(findJoined(room));
    send({ type: "join", room });
  }

  ui.rooms.addEventListener("click", (e) => {
    const item = e.target.closest("[data-room]");
    if (!item || !ui.rooms.contains(item)) return;
    closeDrawers();
    showRoom(item.dataset.room);
  });

  ui.convs.addEventListener("click", (e) => {
    const item = e.target.closest("[data-nick]");
    if (!item || !ui.convs.contains(item)) return;
    openConversation(item.dataset.nick);
  });

  ui.joinForm.addEventListener("submit", (e) => {
    e.preventDefault();
    let room = ui.joinRoom.value.trim();
    if (!room) return;
    if (!room.startsWith("#")) room = "#" + room;
    state.showNext = room;
    joinRoom(room);
    ui.joinRoom.value = "";
    closeDrawers();
  });

  ui.leave.addEventListener("click", () => {
    if (state.view !== null) return closeConversation();
    if (!state.current) return;
    if (!connected()) {
      composerError("Not connected.");
      return;
    }
    send({ type: "part", room: state.current });
  });

  ui.members.addEventListener("click", (e) => {
    const item = e.target.closest("[data-name]");
    if (!item || isMe(item.dataset.name)) return;
    openConversation(item.dataset.name);
    ui.message.focus();
  });

  for (const list of [ui.rooms, ui.convs, ui.members, ui.mentionList]) listKeys(list);

  // -- dialogs: help, settings, mentions, account ------------------------------------

  function openDialog(dialog, opener) {
    closeDrawers();
    if (!dialog.open) dialog.showModal();
    if (opener) opener.setAttribute("aria-expanded", "true");
    dialog.addEventListener(
      "close",
      () => {
        if (opener) opener.setAttribute("aria-expanded", "false");
      },
      { once: true },
    );
  }

  for (const dialog of [ui.helpPanel, ui.settingsPanel, ui.mentionsPanel, ui.panel]) {
    dialog.addEventListener("click", (e) => {
      if (e.target === dialog) dialog.close(); // the backdrop, outside the box
    });
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close());
    }
  }

  ui.openHelp.addEventListener("click", () => {
    if (!state.helpLoaded && connected()) send({ type: "help", client_id: clientId("help") });
    else openDialog(ui.helpPanel, ui.openHelp);
  });

  ui.openSettings.addEventListener("click", () => {
    const form = ui.settingsForm;
    for (const input of form.querySelectorAll('input[name="theme"]')) {
      input.checked = input.value === settings.theme;
    }
    for (const input of form.querySelectorAll('input[name="clock"]')) {
      input.checked = input.value === settings.clock;
    }
    ui.setPresence.checked = settings.presence;
    ui.setNotify.checked = settings.notify && notifyAllowed();
    ui.settingsNick.value = state.nick || "";
    ui.notifyNote.textContent = "";
    openDialog(ui.settingsPanel, ui.openSettings);
  });

  ui.settingsForm.addEventListener("submit", (e) => e.preventDefault());

  function notifyAllowed() {
    return typeof Notification === "function" && Notification.permission === "granted";
  }

  ui.settingsForm.addEventListener("change", (e) => {
    const input = e.target;
    if (input.name === "theme") settings.theme = input.value;
    else if (input.name === "clock") {
      settings.clock = input.value;
      retime();
    } else if (input === ui.setPresence) {
      settings.presence = input.checked;
      applySettings();
      regroup(logFor(viewKey()));
      if (stickToBottom) scrollToBottom();
    } else if (input === ui.setNotify) {
      settings.notify = input.checked;
      if (input.checked) askNotify();
    }
    applySettings();
    saveSettings();
  });

  function askNotify() {
    if (typeof Notification !== "function") {
      settings.notify = ui.setNotify.checked = false;
      ui.notifyNote.textContent = "This browser cannot show notifications.";
      return;
    }
    if (Notification.permission === "granted") return;
    Promise.resolve(Notification.requestPermission()).then((answer) => {
      const granted = answer === "granted";
      settings.notify = ui.setNotify.checked = granted;
      ui.notifyNote.textContent = granted ? "" : "The browser does not allow notifications here.";
      saveSettings();
    });
  }

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
    openDialog(ui.panel, ui.account);
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
  });
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
    if (typeof f.token === "string" && f.token) store("localStorage", TOKEN_KEY, f.token);
    state.panelWait = null;
    closePanel();
    renderAccount();
    systemLine(here(), str(f.message), { event: "login" });
    refreshWho(); // our registered mark
    sendUnsent();
  }

  function onLogout(f) {
    state.account = null;
    store("localStorage", TOKEN_KEY, null);
    state.panelWait = null;
    closePanel();
    renderAccount();
    systemLine(here(), str(f.message), { event: "logout" });
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

  function focusFirst(panel) {
    const target = panel.querySelector('button[tabindex="0"], li > button, button, input');
    if (target) target.focus();
  }

  ui.toggleRooms.addEventListener("click", () => {
    const open = !document.body.classList.contains("show-rooms");
    setDrawer(open ? "rooms" : null);
    if (open) {
      refreshRooms();
      focusFirst($("rooms-panel"));
    }
  });
  ui.toggleMembers.addEventListener("click", () => {
    const open = !document.body.classList.contains("show-members");
    setDrawer(open ? "members" : null);
    if (open) focusFirst($("members-panel"));
  });
  ui.backdrop.addEventListener("click", closeDrawers);
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    const drawer = document.body.classList.contains("show-rooms")
      ? ui.toggleRooms
      : document.body.classList.contains("show-members")
        ? ui.toggleMembers
        : null;
    setDrawer(null);
    if (drawer) drawer.focus();
    else if (!ui.composerError.hidden && document.activeElement === ui.message) composerError("");
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

  function onClose() {
    const wasWelcomed = state.welcomed && state.hello === null;
    state.ws = null;
    state.welcomed = false;
    if (state.hello !== null) {
      // Closed before the hello was answered: the session is what it was.
      state.restore = state.hello.restore;
      state.hello = null;
      state.held = [];
      clearTimeout(state.helloTimer);
    }
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
    // A private message has no id to send it again by: it may have gone.
    for (const entry of state.pmPending) {
      failPending(entry, "Not confirmed: the connection closed; it may not have been sent");
    }
    state.pmPending = [];
    for (const { room, point } of state.resuming.values()) {
      const log = logFor(room);
      if (log.resumeFrom === undefined) log.resumeFrom = point;
    }
    state.resuming.clear();
    state.missedLeft = 0;
    renderOlder();
    state.nickRequest = null;
    state.members.clear();
    renderMembers();
    if (state.elsewhere) {
      setConnState("elsewhere", "continued elsewhere");
      return;
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

  applySettings();
  renderAll();
  renderAccount();
  renderMentionCount();
  connect();
  setInterval(() => {
    if (!document.hidden) refreshRooms();
  }, POLL_ROOMS_MS);
  if (window.matchMedia("(min-width: 761px)").matches) ui.message.focus();
})();
