// Hive dashboard: one page, no framework, no build step. It talks to the same
// /api as every other client: HTTP for state (polled every few seconds and on
// relevant events) and the /api/events WebSocket for everything live.
'use strict';

(() => {
  // ---------------------------------------------------------------- config

  const params = new URLSearchParams(location.search);
  const TOKEN = params.get('token');
  const REFRESH_MS = 2500; // status, peers, topics, tension, nodes
  const HISTORY_MS = 15 * 60 * 1000; // tension history window
  const FEED_MAX = 200; // items kept per topic feed and in the DM list
  const ACTIVITY_MAX = 80;
  const BACKFILL = 300; // cursors of stored history shown on first load
  const HEX_MAX = 256; // bytes shown as hex before truncating
  const BANNER_MIN_MS = 1200; // a banner stays at least this long (no flicker)
  const API_RETRY_MS = 30000; // re-probe optional endpoints that 404'd

  const SIGNAL_INFO = {
    daemon_down: 'daemon not running',
    restarts: 'restarts in the last 10 min ÷ 5',
    ipc_latency: 'p99 IPC round trip above 50 ms',
    backlog: 'IPC requests in flight ÷ 1024',
    outbox: 'messages waiting to go out ÷ 10,000',
    dropped_clients: 'slow event clients dropped (5 min) ÷ 3',
    peers_below_target: 'connected peers short of the target',
    children_down: 'child nodes not running',
    catching_up: 'catch-ups with peers waiting or running ÷ 4',
  };

  // ----------------------------------------------------------------- state

  const S = {
    status: null,
    selfId: null,
    daemon: { state: 'unknown', pid: null, restarts: null },
    daemonSince: null, // ms timestamp when the current daemon started, if known
    sinceExact: false, // false: only "at least since page load"
    sawDown: false, // this page saw the daemon not running at some point
    daemonSeq: 0, // bumped by every daemon event: older status answers are stale
    pageStart: Date.now(),
    peers: [],
    peersKey: '',
    topics: new Map(), // topic -> { subscribed: bool, peers: number|null }
    feeds: new Map(), // topic -> { el, count, unread }
    activeTopic: null,
    seen: new Set(), // cursors of stored events already shown
    lastCursor: null, // resume point for the WebSocket
    outgoing: new Map(), // outbox id -> DM list item we sent
    tension: { api: null, checked: 0, history: [], value: null, signals: {} },
    nodes: { api: null, checked: 0, list: null, key: '' },
    ws: null,
    wsAttempt: 0,
    wsTimer: null,
    hostUp: true,
    bannerShownAt: 0,
    bannerTimer: null,
    refreshTimers: {},
    inflight: {},
    again: {},
  };

  // ---------------------------------------------------------------- scopes

  // What this page's token may do (GET /api/whoami). Until the answer, and
  // on a host without tokens, everything; buttons a token cannot use are
  // disabled with the reason in their title.
  const ACCESS = { token: null, held: new Set(['read', 'write', 'admin']) };
  const SCOPED_BUTTONS = {
    write: ['subscribe-btn', 'unsubscribe-btn', 'publish-btn', 'dm-send'],
    admin: ['dial-btn'],
  };
  const can = (scope) => ACCESS.held.has(scope);
  const lacks = (scope) => `Disabled: the API token${ACCESS.token ? ` “${ACCESS.token}”` : ''} lacks the ${scope} scope`;

  /** Disables (with the reason) every button whose scope the token lacks. */
  function applyScopes() {
    for (const [scope, ids] of Object.entries(SCOPED_BUTTONS)) {
      for (const id of ids) {
        const el = document.getElementById(id);
        if (!el || can(scope)) continue;
        el.disabled = true;
        el.title = lacks(scope);
        el.dataset.missingScope = scope;
      }
    }
    const note = document.getElementById('scope-note');
    const missing = ['write', 'admin'].filter((x) => !can(x));
    if (note) {
      note.hidden = !missing.length;
      note.textContent = missing.length ? `This token (${ACCESS.token || 'unnamed'}) lacks the ${missing.join(' and ')} scope${missing.length > 1 ? 's' : ''}: ${[!can('write') && 'subscribing, publishing and sending', !can('admin') && 'dialing, spawning and stopping nodes'].filter(Boolean).join('; ')} are disabled.` : '';
    }
  }

  async function refreshScopes() {
    try {
      const me = await api('/api/whoami');
      if (me && Array.isArray(me.scopes)) {
        ACCESS.token = me.token || null;
        ACCESS.held = new Set(me.scopes);
      }
    } catch {
      /* an older host without /api/whoami: assume everything */
    }
    applyScopes();
  }

  // --------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  /** Builds an element: h('li', {class: 'x', 'data-k': 'v', onclick: fn}, child, 'text'). */
  function h(tag, attrs, ...children) {
    const svg = ['svg', 'g', 'line', 'circle', 'path', 'text', 'title', 'polyline', 'rect', 'defs', 'linearGradient', 'stop'].includes(tag);
    const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function setText(id, value) {
    const el = $(id);
    const text = value === null || value === undefined || value === '' ? '—' : String(value);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function shortId(id, tail = 6) {
    if (!id) return '—';
    if (id.length <= 14) return id;
    // 12D3KooW is the same for every Ed25519 peer id: the tail tells them apart.
    return id.startsWith('12D3KooW') ? `…${id.slice(-tail)}` : `${id.slice(0, 4)}…${id.slice(-tail)}`;
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return '—';
    let s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hr = Math.floor(s / 3600); s -= hr * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${d}d ${hr}h`;
    if (hr) return `${hr}h ${String(m).padStart(2, '0')}m`;
    if (m) return `${m}m ${String(s).padStart(2, '0')}s`;
    return `${s}s`;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  function fmtRtt(ms) {
    if (ms === null || ms === undefined) return '—';
    return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
  }

  function rttClass(ms) {
    if (ms === null || ms === undefined) return 'unknown';
    return ms < 50 ? 'good' : ms < 200 ? 'fair' : 'poor';
  }

  function tensionClass(v) {
    if (v === null || v === undefined) return 'unknown';
    return v < 0.25 ? 'good' : v < 0.6 ? 'fair' : 'poor';
  }

  function tensionWord(v) {
    if (v === null || v === undefined) return '—';
    if (v < 0.05) return 'calm';
    if (v < 0.25) return 'settled';
    if (v < 0.6) return 'strained';
    if (v < 0.95) return 'distressed';
    return 'broken';
  }

  function b64ToBytes(b64) {
    try {
      const bin = atob(b64 || '');
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    } catch {
      return new Uint8Array(0);
    }
  }

  function bytesToHex(bytes, max = HEX_MAX) {
    const n = Math.min(bytes.length, max);
    const parts = new Array(n);
    for (let i = 0; i < n; i++) parts[i] = bytes[i].toString(16).padStart(2, '0');
    return parts.join(' ') + (bytes.length > max ? ' …' : '');
  }

  function bytesToB64(bytes) {
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  }

  function hexToBytes(text) {
    const clean = text.replace(/0x/gi, '').replace(/[\s,:]/g, '');
    if (clean.length % 2 || /[^0-9a-f]/i.test(clean)) return null;
    const out = new Uint8Array(clean.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
    return out;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? '' : 's'}`;
  }

  // ------------------------------------------------------------------- api

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, { method = 'GET', body, headers = {} } = {}) {
    const hdrs = { ...headers };
    if (TOKEN) hdrs.Authorization = `Bearer ${TOKEN}`;
    let res;
    try {
      res = await fetch(path, { method, body, headers: hdrs, cache: 'no-store' });
    } catch (e) {
      setHostUp(false);
      throw new ApiError(0, 'cannot reach the host');
    }
    setHostUp(true);
    if (res.status === 401) $('auth-banner').hidden = false;
    else if (res.ok) $('auth-banner').hidden = true;
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!res.ok) {
      const err = data && data.error;
      throw new ApiError(res.status, (err && err.message) || `${res.status} ${res.statusText}`, err && err.code);
    }
    return data;
  }

  /** Runs fn unless the same job is running; then runs it once more after. */
  async function once(name, fn) {
    if (S.inflight[name]) {
      S.again[name] = fn;
      return;
    }
    S.inflight[name] = true;
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof ApiError)) console.warn(name, e);
    } finally {
      S.inflight[name] = false;
    }
    const again = S.again[name];
    if (again) {
      delete S.again[name];
      await once(name, again);
    }
  }

  /** Coalesces bursts of events into one refresh. */
  function soon(name, fn, delay = 150) {
    clearTimeout(S.refreshTimers[name]);
    S.refreshTimers[name] = setTimeout(() => once(name, fn), delay);
  }

  function setHostUp(up) {
    if (S.hostUp === up) return;
    S.hostUp = up;
    $('host-banner').hidden = up || (S.ws && S.ws.readyState === WebSocket.OPEN);
    document.body.classList.toggle('offline', !up);
    if (!up) log('warn', 'Lost contact with the host');
    else log('ok', 'Host reachable again');
  }

  // ------------------------------------------------------------ activity

  function log(level, text) {
    const list = $('activity');
    list.prepend(h('li', { class: `act act-${level}` }, h('time', { text: fmtTime(Date.now()) }), h('span', { text })));
    while (list.children.length > ACTIVITY_MAX) list.lastChild.remove();
  }

  // --------------------------------------------------------------- copying

  async function copy(text, button) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch {
      const ta = h('textarea', { class: 'offscreen', readonly: true });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      try {
        ok = document.execCommand('copy');
      } catch {
        ok = false;
      }
      ta.remove();
    }
    if (button) {
      button.classList.add(ok ? 'copied' : 'copy-failed');
      button.setAttribute('aria-label', ok ? 'Copied' : 'Copy failed');
      setTimeout(() => {
        button.classList.remove('copied', 'copy-failed');
        button.setAttribute('aria-label', button.title || 'Copy');
      }, 1200);
    }
  }

  function copyButton(value, what) {
    return h('button', { type: 'button', class: 'copy', 'data-testid': 'copy', 'data-copy': value, title: `Copy ${what}`, 'aria-label': `Copy ${what}` });
  }

  document.addEventListener('click', (ev) => {
    const btn = ev.target.closest('button.copy');
    if (btn && btn.dataset.copy) copy(btn.dataset.copy, btn);
  });

  // ---------------------------------------------------------- this node

  async function refreshStatus() {
    const seq = S.daemonSeq;
    const st = await api('/api/status');
    S.status = st;
    // A daemon event that arrived while this request was out is newer than
    // the answer's daemon part: keep it.
    renderStatus(st, seq === S.daemonSeq);
    if (S.tension.api !== true) recordTension(st.tension, st.signals);
    document.body.dataset.ready = 'true';
  }

  let addrsKey = '';
  function renderStatus(st, daemonFresh = true) {
    S.selfId = st.peer_id || S.selfId;
    setText('node-peer-id', st.peer_id);
    $('copy-peer-id').dataset.copy = st.peer_id || '';
    setText('top-peer', shortId(st.peer_id, 8));
    $('top-peer').title = st.peer_id || '';
    const addrs = st.listen_addrs || [];
    const key = JSON.stringify(addrs);
    if (key !== addrsKey) {
      addrsKey = key;
      const list = $('node-addrs');
      list.replaceChildren(
        ...(addrs.length
          ? addrs.map((a) => h('li', { class: 'copyrow' }, h('code', { class: 'mono break', text: a }), copyButton(a, 'address')))
          : [h('li', { class: 'muted', text: 'not listening' })]),
      );
    }
    if (daemonFresh) applyDaemon(st.daemon || {});
    setText('node-peers', st.peers);
    setText('node-topics', (st.topics || []).length);
    setText('host-version', st.version);
    setText('daemon-version', st.daemon_version);
    renderSync(st.sync);
    renderInbound(st.inbound);
    setText('foot-version', st.version ? `hive ${st.version}` : 'hive');
    for (const t of st.topics || []) {
      if (!S.topics.has(t)) S.topics.set(t, { subscribed: true, peers: null });
    }
    renderTopics();
  }

  // What the daemon caught up on from its peers (absent in go mode).
  function renderSync(sync) {
    const el = $('node-sync');
    if (!sync) {
      el.textContent = 'off';
      el.dataset.state = 'off';
      return;
    }
    const peers = sync.peers || [];
    const parts = [sync.behind > 0 ? `catching up with ${plural(sync.behind, 'peer topic')}` : 'up to date'];
    parts.push(`${sync.fetched} fetched from ${plural(peers.length, 'peer')}`);
    if (peers.length) parts.push(`last ${fmtDuration(Date.now() - peers[0].last_ms)} ago`);
    if (sync.rejected) parts.push(`${sync.rejected} refused (bad signature)`);
    if (sync.failed) parts.push(`${sync.failed} failed`);
    el.textContent = parts.join(' · ');
    el.dataset.state = sync.behind > 0 ? 'behind' : 'ok';
    el.dataset.peers = String(peers.length);
    el.dataset.fetched = String(sync.fetched);
    el.title = peers.map((p) => `${shortId(p.peer_id, 8)}: ${p.fetched} fetched, ${p.rejected} refused, ${fmtTime(p.last_ms)}`).join('\n');
  }

  // How the host's store keeps up with its daemon.
  function renderInbound(inbound) {
    if (!inbound) return setText('node-inbound', '—');
    const { gaps = 0, repaired = 0, lost = 0 } = inbound;
    setText('node-inbound', gaps ? `${plural(gaps, 'gap')} seen, ${repaired} repaired, ${lost} lost` : 'no gaps');
  }

  function applyDaemon(d) {
    const state = d.state || 'unknown';
    const prev = S.daemon;
    const pid = d.pid === undefined ? prev.pid : d.pid;
    const restarts = d.restarts === undefined ? prev.restarts : d.restarts;
    const now = Date.now();

    // Uptime: the host's own figure when it gives one, else from the moment
    // this page saw the daemon (re)start; a daemon already running when the
    // page opened has run at least since then.
    const uptime = d.uptime_secs ?? d.uptime ?? (typeof d.uptime_ms === 'number' ? d.uptime_ms / 1000 : undefined);
    if (typeof uptime === 'number') {
      S.daemonSince = now - uptime * 1000;
      S.sinceExact = true;
    } else if (state !== 'running') {
      S.daemonSince = null;
      if (state !== 'unknown') S.sawDown = true;
    } else if (S.daemonSince === null || (pid && prev.pid && pid !== prev.pid)) {
      const seenStart = S.sawDown || (pid && prev.pid && pid !== prev.pid);
      S.daemonSince = seenStart ? now : S.pageStart;
      S.sinceExact = Boolean(seenStart);
    }

    if (state !== prev.state && prev.state !== 'unknown') {
      const lvl = state === 'running' ? 'ok' : 'warn';
      log(lvl, `Daemon ${state}${pid ? ` (pid ${pid})` : ''}`);
      if (state === 'running') {
        soon('status', refreshStatus);
        soon('peers', refreshPeers, 400);
        soon('topics', refreshTopics, 400);
      }
    }
    S.daemon = { state, pid, restarts };

    const stateEl = $('daemon-state');
    stateEl.dataset.state = state;
    setText('daemon-state', state);
    setText('daemon-pid', pid);
    setText('daemon-restarts', restarts);
    const pill = $('daemon-pill');
    pill.dataset.state = state;
    setText('daemon-pill-text', `daemon ${state}`);
    renderUptime();
    setBanner(state);
  }

  function renderUptime() {
    if (S.daemon.state !== 'running' || S.daemonSince === null) {
      setText('daemon-uptime', S.daemon.state === 'running' ? '—' : '0s');
      return;
    }
    const text = fmtDuration(Date.now() - S.daemonSince);
    setText('daemon-uptime', S.sinceExact ? text : `≥ ${text}`);
    $('daemon-uptime').title = S.sinceExact ? '' : 'running since before this page was opened';
  }

  function setBanner(state) {
    const banner = $('daemon-banner');
    clearTimeout(S.bannerTimer);
    if (state !== 'running' && state !== 'unknown') {
      const text = state === 'restarting' ? 'Daemon restarting…' : state === 'starting' ? 'Daemon starting…' : 'Daemon stopped';
      setText('daemon-banner-text', text);
      banner.dataset.state = state;
      if (banner.hidden) {
        banner.hidden = false;
        S.bannerShownAt = Date.now();
      }
    } else if (!banner.hidden) {
      const wait = Math.max(0, S.bannerShownAt + BANNER_MIN_MS - Date.now());
      S.bannerTimer = setTimeout(() => {
        banner.hidden = true;
      }, wait);
    }
  }

  // ------------------------------------------------------------- tension

  function recordTension(value, signals) {
    if (typeof value !== 'number') return;
    const t = S.tension;
    t.value = value;
    t.signals = signals || {};
    t.history.push({ t: Date.now(), value });
    const cutoff = Date.now() - HISTORY_MS;
    while (t.history.length && t.history[0].t < cutoff) t.history.shift();
    renderTension();
  }

  async function refreshTension() {
    const t = S.tension;
    if (t.api === false && Date.now() - t.checked < API_RETRY_MS) return;
    try {
      const data = await api('/api/tension');
      t.api = true;
      t.value = data.value;
      t.signals = data.signals || {};
      const hist = Array.isArray(data.history) ? data.history.filter((p) => typeof p.t === 'number' && typeof p.value === 'number') : [];
      if (!hist.length || Date.now() - hist[hist.length - 1].t > 1000) hist.push({ t: Date.now(), value: data.value });
      t.history = hist;
      renderTension();
    } catch (e) {
      if (e.status === 404) {
        if (t.api !== false) t.history = t.history || [];
        t.api = false;
        t.checked = Date.now();
        renderTension();
      }
    }
  }

  function renderTension() {
    const t = S.tension;
    const v = t.value;
    const cls = tensionClass(v);
    const card = $('card-tension');
    card.dataset.level = cls;
    setText('tension-value', typeof v === 'number' ? v.toFixed(2) : '—');
    setText('tension-label', tensionWord(v));
    const arc = $('gauge-arc');
    const frac = typeof v === 'number' ? Math.min(1, Math.max(0, v)) : 0;
    arc.setAttribute('stroke-dasharray', `${(frac * 100).toFixed(2)} 100`);
    const angle = Math.PI * (1 - frac);
    const needle = $('gauge-needle');
    needle.setAttribute('x2', (100 + 62 * Math.cos(angle)).toFixed(1));
    needle.setAttribute('y2', (100 - 62 * Math.sin(angle)).toFixed(1));
    setText('tension-source', t.api ? 'from the host' : 'sampled by this page');
    renderSparkline();
    renderSignals();
  }

  function renderSparkline() {
    const svg = $('tension-sparkline');
    const W = 600;
    const H = 120;
    const now = Date.now();
    const from = now - HISTORY_MS;
    const x = (tm) => ((tm - from) / HISTORY_MS) * W;
    const y = (v) => H - 4 - Math.min(1, Math.max(0, v)) * (H - 8);
    const pts = S.tension.history.filter((p) => p.t >= from - 60000);
    const kids = [
      h('defs', {}, h('linearGradient', { id: 'spark-fill', x1: 0, y1: 0, x2: 0, y2: 1 },
        h('stop', { offset: '0%', 'stop-color': 'currentColor', 'stop-opacity': 0.35 }),
        h('stop', { offset: '100%', 'stop-color': 'currentColor', 'stop-opacity': 0.02 }))),
    ];
    for (const g of [0.25, 0.5, 0.75]) kids.push(h('line', { class: 'spark-grid', x1: 0, x2: W, y1: y(g), y2: y(g), 'vector-effect': 'non-scaling-stroke' }));
    for (const m of [5, 10]) kids.push(h('line', { class: 'spark-grid', x1: x(now - m * 60000), x2: x(now - m * 60000), y1: 0, y2: H, 'vector-effect': 'non-scaling-stroke' }));
    if (pts.length) {
      const coords = pts.map((p) => [Math.max(0, x(p.t)), y(p.value)]);
      if (coords.length === 1) coords.unshift([Math.max(0, coords[0][0] - 4), coords[0][1]]);
      const last = coords[coords.length - 1];
      coords.push([W, last[1]]); // the current value holds until now
      const line = coords.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ');
      kids.push(h('path', { class: 'spark-area', d: `M${coords[0][0].toFixed(1)},${H} L${line.replace(/ /g, ' L')} L${W},${H} Z`, fill: 'url(#spark-fill)' }));
      kids.push(h('polyline', { class: 'spark-line', points: line, 'vector-effect': 'non-scaling-stroke' }));
    }
    svg.replaceChildren(...kids);
    svg.dataset.points = String(pts.length);
  }

  let signalsKey = '';
  function renderSignals() {
    const sig = S.tension.signals || {};
    const names = Object.keys(sig).sort();
    const key = JSON.stringify(names.map((n) => [n, Math.round(sig[n] * 1000)]));
    if (key === signalsKey) return;
    signalsKey = key;
    const list = $('signals');
    if (!names.length) {
      list.replaceChildren(h('li', { class: 'muted', text: 'no signals reported' }));
      return;
    }
    list.replaceChildren(
      ...names.map((n) => {
        const v = Math.min(1, Math.max(0, Number(sig[n]) || 0));
        return h('li', { class: 'signal', 'data-signal': n, 'data-level': tensionClass(v) },
          h('div', { class: 'signal-name' }, h('code', { text: n }), SIGNAL_INFO[n] ? h('span', { class: 'muted small', text: SIGNAL_INFO[n] }) : null),
          h('div', { class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 1, 'aria-valuenow': v.toFixed(3), 'aria-label': n },
            h('div', { class: 'bar-fill', style: `width:${(v * 100).toFixed(1)}%` })),
          h('span', { class: 'signal-value mono', text: v.toFixed(2) }));
      }),
    );
  }

  // ---------------------------------------------------------------- peers

  async function refreshPeers() {
    try {
      const list = await api('/api/peers');
      S.peers = Array.isArray(list) ? list : [];
      $('card-peers').classList.remove('stale');
    } catch (e) {
      if (e.status === 503) $('card-peers').classList.add('stale');
      throw e;
    }
    const now = Date.now();
    for (const p of S.peers) p._since = typeof p.connected_secs === 'number' ? now - p.connected_secs * 1000 : null;
    renderPeers();
  }

  /** The id of this host's node with that peer id (n1, n2, …), if any. */
  function hiveNode(peerId) {
    const list = S.nodes.list;
    const node = list && list.find((n) => n.peer_id === peerId);
    return node ? String(node.id) : null;
  }

  function connectedCell(td, p) {
    td.title = p._since ? `since ${new Date(p._since).toLocaleString()}` : '';
    td.replaceChildren(...(p._since
      ? [h('span', { text: fmtTime(p._since) }), h('span', { class: 'muted small', text: `${fmtDuration(Date.now() - p._since)} ago` })]
      : ['—']));
  }

  let rowsKey = '';
  function renderPeers() {
    const peers = [...S.peers].sort((a, b) => a.peer_id.localeCompare(b.peer_id));
    setText('peers-count', peers.length);
    $('peers-empty').hidden = peers.length > 0;
    const body = $('peers-body');
    const key = JSON.stringify(peers.map((p) => [p.peer_id, p.addrs, hiveNode(p.peer_id)]));
    if (key !== rowsKey) {
      // Rebuilt only when peers or addresses change, so that buttons under
      // the pointer do not flicker on every refresh.
      rowsKey = key;
      body.replaceChildren(...peers.map((p) => {
        const addrs = p.addrs || [];
        return h('tr', { 'data-testid': 'peer-row', 'data-peer-id': p.peer_id },
          h('td', { class: 'peer-cell', 'data-label': 'Peer' },
            h('div', { class: 'copyrow' }, h('code', { class: 'mono break', title: p.peer_id, text: p.peer_id }), copyButton(p.peer_id, 'peer id')),
            hiveNode(p.peer_id) ? h('span', { class: 'badge self', title: 'a node of this host', text: `node ${hiveNode(p.peer_id)}` }) : null),
          h('td', { 'data-label': 'Addresses' }, addrs.length ? addrs.map((a) => h('code', { class: 'mono addr break', text: a })) : h('span', { class: 'muted', text: '—' })),
          h('td', { class: 'num', 'data-label': 'Latency' }, h('span', { class: 'rtt', 'data-testid': 'peer-rtt' })),
          h('td', { class: 'since', 'data-label': 'Connected' }));
      }));
    }
    peers.forEach((p, i) => {
      const row = body.children[i];
      const rtt = row.querySelector('.rtt');
      rtt.className = `rtt rtt-${rttClass(p.rtt_ms)}`;
      rtt.textContent = fmtRtt(p.rtt_ms);
      connectedCell(row.querySelector('.since'), p);
    });
    const graphKey = JSON.stringify(peers.map((p) => [p.peer_id, p.rtt_ms && Math.round(p.rtt_ms), hiveNode(p.peer_id)]));
    if (graphKey !== S.peersKey) {
      S.peersKey = graphKey;
      renderGraph(peers);
      renderDmPeers(peers);
    }
  }

  function renderGraph(peers) {
    const svg = $('peers-graph');
    const n = peers.length;
    const R = n <= 1 ? 95 : 105;
    const r = n > 16 ? 9 : n > 8 ? 13 : 18;
    const kids = [];
    const pos = peers.map((_, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
      return [R * Math.cos(a), R * Math.sin(a) * 0.95];
    });
    peers.forEach((p, i) => {
      const [px, py] = pos[i];
      kids.push(h('line', { class: `edge rtt-${rttClass(p.rtt_ms)}`, x1: 0, y1: 0, x2: px, y2: py }));
      if (n <= 12 && p.rtt_ms !== undefined && p.rtt_ms !== null) {
        kids.push(h('text', { class: 'edge-label', x: px * 0.5, y: py * 0.5 - 4, 'text-anchor': 'middle', text: fmtRtt(p.rtt_ms) }));
      }
    });
    peers.forEach((p, i) => {
      const [px, py] = pos[i];
      const below = py >= 0;
      const own = hiveNode(p.peer_id);
      kids.push(h('g', { class: `gnode peer${own ? ' own' : ''}`, 'data-peer-id': p.peer_id },
        h('title', { text: `${p.peer_id}\n${(p.addrs || []).join('\n')}\nlatency ${fmtRtt(p.rtt_ms)}` }),
        h('circle', { cx: px, cy: py, r, class: `rtt-${rttClass(p.rtt_ms)}` }),
        own && r >= 13 ? h('text', { x: px, y: py + 4, 'text-anchor': 'middle', class: 'own-label', text: own }) : null,
        n <= 16 ? h('text', { x: px, y: below ? py + r + 13 : py - r - 6, 'text-anchor': 'middle', class: 'node-label', text: shortId(p.peer_id) }) : null));
    });
    kids.push(h('g', { class: 'gnode self' },
      h('title', { text: `this node\n${S.selfId || ''}` }),
      h('circle', { cx: 0, cy: 0, r: 28 }),
      h('text', { x: 0, y: 4, 'text-anchor': 'middle', class: 'self-label', text: 'this node' })));
    if (!n) kids.push(h('text', { x: 0, y: 62, 'text-anchor': 'middle', class: 'node-label muted-fill', text: 'no peers yet' }));
    svg.replaceChildren(...kids);
  }

  function renderDmPeers(peers) {
    const sel = $('dm-peer');
    const prev = sel.value;
    const opts = peers.map((p) => h('option', { value: p.peer_id, text: `${shortId(p.peer_id, 10)}${p.rtt_ms ? ` · ${fmtRtt(p.rtt_ms)}` : ''}` }));
    if (!opts.length) opts.push(h('option', { value: '', text: 'no connected peers' }));
    sel.replaceChildren(...opts);
    if (prev && peers.some((p) => p.peer_id === prev)) sel.value = prev;
    $('dm-send').disabled = !peers.length || !can('write');
  }

  $('dial-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const addr = $('dial-input').value.trim();
    if (!addr) return;
    const msg = $('dial-msg');
    msg.className = 'form-msg';
    msg.textContent = `Dialing ${addr}…`;
    $('dial-btn').disabled = true;
    try {
      const res = await api('/api/dial', { method: 'POST', body: JSON.stringify({ addr }), headers: { 'Content-Type': 'application/json' } });
      msg.className = 'form-msg ok';
      msg.textContent = `Connected to ${shortId(res.peer_id, 10)}`;
      $('dial-input').value = '';
      soon('peers', refreshPeers, 50);
    } catch (e) {
      msg.className = 'form-msg err';
      msg.textContent = e.message;
    } finally {
      $('dial-btn').disabled = !can('admin');
    }
  });

  // --------------------------------------------------------------- topics

  async function refreshTopics() {
    const list = await api('/api/topics');
    const live = new Map((list || []).map((t) => [t.topic, t.peers]));
    for (const [name, info] of S.topics) {
      info.subscribed = live.has(name);
      info.peers = live.has(name) ? live.get(name) : null;
    }
    for (const [name, peers] of live) {
      if (!S.topics.has(name)) S.topics.set(name, { subscribed: true, peers });
    }
    renderTopics();
  }

  function ensureFeed(topic) {
    let feed = S.feeds.get(topic);
    if (!feed) {
      const el = h('ol', { class: 'feed', 'data-testid': 'feed', 'data-topic': topic, 'aria-label': `messages on ${topic}`, hidden: true },
        h('li', { class: 'feed-empty muted', text: 'No messages yet.' }));
      $('topic-feeds').append(el);
      feed = { el, unread: 0 };
      S.feeds.set(topic, feed);
    }
    if (!S.topics.has(topic)) S.topics.set(topic, { subscribed: false, peers: null });
    return feed;
  }

  let tabsKey = '';
  function renderTopics() {
    const names = [...new Set([...S.topics.keys()])].filter((t) => S.topics.get(t).subscribed || S.feeds.has(t)).sort();
    if (S.activeTopic && !names.includes(S.activeTopic)) S.activeTopic = null;
    if (!S.activeTopic && names.length) S.activeTopic = names.find((t) => S.topics.get(t).subscribed) || names[0];
    for (const t of names) ensureFeed(t);

    const key = JSON.stringify([S.activeTopic, names.map((t) => [t, S.topics.get(t).subscribed, S.topics.get(t).peers, S.feeds.get(t)?.unread || 0])]);
    if (key === tabsKey) return;
    tabsKey = key;

    $('topic-tabs').replaceChildren(
      ...names.map((t) => {
        const info = S.topics.get(t);
        const feed = S.feeds.get(t);
        const active = t === S.activeTopic;
        return h('button', {
          type: 'button', role: 'tab', class: `tab${info.subscribed ? '' : ' unsubscribed'}`, 'aria-selected': active ? 'true' : 'false',
          'data-testid': 'topic-tab', 'data-topic': t, 'data-subscribed': info.subscribed ? 'true' : 'false',
          onclick: () => selectTopic(t),
        },
        h('span', { class: 'tab-name', text: t }),
        info.subscribed && info.peers !== null ? h('span', { class: 'tab-peers', title: 'remote peers in this topic', text: `${info.peers}` }) : null,
        !info.subscribed ? h('span', { class: 'tab-note', text: 'off' }) : null,
        feed && feed.unread && !active ? h('span', { class: 'tab-unread', text: feed.unread > 99 ? '99+' : String(feed.unread) }) : null);
      }),
    );
    for (const [t, feed] of S.feeds) feed.el.hidden = t !== S.activeTopic;
    $('feeds-empty').hidden = names.length > 0;

    const bar = $('topic-bar');
    const active = S.activeTopic && S.topics.get(S.activeTopic);
    bar.hidden = !active;
    if (active) {
      const peers = active.peers === null ? '' : ` · ${plural(active.peers, 'peer')} in the mesh`;
      setText('topic-bar-info', active.subscribed ? `Subscribed to “${S.activeTopic}”${peers}` : `Not subscribed to “${S.activeTopic}” (history only)`);
      const btn = $('unsubscribe-btn');
      btn.textContent = active.subscribed ? 'Unsubscribe' : 'Subscribe again';
      btn.dataset.action = active.subscribed ? 'unsubscribe' : 'subscribe';
    }
    $('publish-btn').disabled = !S.activeTopic || !can('write');
    $('publish-input').placeholder = S.activeTopic ? `Message to publish on “${S.activeTopic}” (Ctrl+Enter sends)` : 'Subscribe to a topic first';
  }

  function selectTopic(t) {
    S.activeTopic = t;
    const feed = S.feeds.get(t);
    if (feed) feed.unread = 0;
    renderTopics();
  }

  function topicMsg(text, cls = '') {
    const el = $('topic-msg');
    el.className = `form-msg ${cls}`;
    el.textContent = text;
  }

  async function subscribe(topic) {
    topicMsg(`Subscribing to “${topic}”…`);
    try {
      await api(`/api/topics/${encodeURIComponent(topic)}/subscribe`, { method: 'POST' });
      const info = S.topics.get(topic) || { subscribed: true, peers: null };
      info.subscribed = true;
      S.topics.set(topic, info);
      ensureFeed(topic);
      S.activeTopic = topic;
      topicMsg(`Subscribed to “${topic}”.`, 'ok');
      log('ok', `Subscribed to ${topic}`);
      renderTopics();
      soon('topics', refreshTopics, 50);
      soon('status', refreshStatus, 50);
      return true;
    } catch (e) {
      topicMsg(e.message, 'err');
      return false;
    }
  }

  async function unsubscribe(topic) {
    try {
      await api(`/api/topics/${encodeURIComponent(topic)}/unsubscribe`, { method: 'POST' });
      const info = S.topics.get(topic);
      if (info) {
        info.subscribed = false;
        info.peers = null;
      }
      topicMsg(`Unsubscribed from “${topic}”.`, 'ok');
      log('info', `Unsubscribed from ${topic}`);
      renderTopics();
      soon('status', refreshStatus, 50);
    } catch (e) {
      topicMsg(e.message, 'err');
    }
  }

  $('subscribe-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('topic-input');
    const topic = input.value.trim();
    if (!topic) return;
    if (new TextEncoder().encode(topic).length > 256) {
      topicMsg('A topic name is at most 256 bytes.', 'err');
      return;
    }
    $('subscribe-btn').disabled = true;
    if (await subscribe(topic)) input.value = '';
    $('subscribe-btn').disabled = !can('write');
  });

  $('unsubscribe-btn').addEventListener('click', () => {
    const t = S.activeTopic;
    if (!t) return;
    if ($('unsubscribe-btn').dataset.action === 'subscribe') subscribe(t);
    else unsubscribe(t);
  });

  /** One message as a list item: text shown as text, anything else as hex. */
  function messageItem({ from, text, data, id, time, cursor, outgoing, status, testid }) {
    const bytes = b64ToBytes(data);
    const isText = typeof text === 'string';
    const who = outgoing ? 'you' : from === S.selfId ? 'this node' : shortId(from, 8);
    return h('li', {
      class: `msg${outgoing ? ' outgoing' : ''}`, 'data-testid': testid, 'data-kind': isText ? 'text' : 'binary',
      'data-cursor': cursor ?? null, 'data-id': id || null, 'data-from': from || null,
    },
    h('div', { class: 'msg-meta' },
      h('time', { text: fmtTime(time || Date.now()), title: new Date(time || Date.now()).toLocaleString() }),
      h('span', { class: 'msg-from mono', title: from || '', text: who }),
      isText ? null : h('span', { class: 'badge', text: `binary · ${plural(bytes.length, 'byte')}` }),
      status ? h('span', { class: `msg-status ${status.cls || ''}`, 'data-testid': 'msg-status', text: status.text }) : null),
    isText
      ? h('div', { class: 'msg-body msg-text', 'data-testid': 'msg-body', text: text })
      : h('code', { class: 'msg-body msg-hex mono', 'data-testid': 'msg-body', title: `${bytes.length} bytes`, text: bytes.length ? bytesToHex(bytes) : '(empty)' }));
  }

  function addMessage(f, { live = true } = {}) {
    const feed = ensureFeed(f.topic);
    const li = messageItem({
      from: f.from, text: f.text, data: f.data, id: f.id, time: f.received_ms || Date.now(), cursor: f.cursor, testid: 'feed-item',
    });
    insertItem(feed.el, li, f.cursor, live);
    while (feed.el.children.length > FEED_MAX) feed.el.lastChild.remove();
    if (live && f.topic !== S.activeTopic) feed.unread++;
    renderTopics();
  }

  /**
   * Newest first. Live events (and replays after a reconnect) arrive in
   * cursor order and are newer than anything shown; history fetched on the
   * first load is slotted in by cursor.
   */
  function insertItem(list, li, cursor, live) {
    list.querySelector(':scope > .feed-empty')?.remove();
    if (live || typeof cursor !== 'number') {
      list.prepend(li);
      return;
    }
    for (const child of list.children) {
      if (child.dataset.cursor && Number(child.dataset.cursor) < cursor) {
        list.insertBefore(li, child);
        return;
      }
    }
    list.append(li);
  }

  $('publish-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const topic = S.activeTopic;
    if (!topic) return;
    const input = $('publish-input');
    const raw = input.value;
    if (!raw) return;
    const asHex = $('publish-hex').checked;
    const msg = $('publish-msg');
    let body;
    if (asHex) {
      body = hexToBytes(raw);
      if (!body) {
        msg.className = 'form-msg err';
        msg.textContent = 'Not hex: use pairs of hex digits, e.g. "de ad be ef".';
        return;
      }
    } else {
      body = new TextEncoder().encode(raw);
    }
    $('publish-btn').disabled = true;
    try {
      const res = await api(`/api/topics/${encodeURIComponent(topic)}/publish`, {
        method: 'POST', body, headers: { 'Content-Type': asHex ? 'application/octet-stream' : 'text/plain; charset=utf-8' },
      });
      input.value = '';
      msg.className = 'form-msg ok';
      msg.textContent = `Queued for “${topic}” (id ${res.id}).`;
      const feed = ensureFeed(topic);
      const b64 = bytesToB64(body);
      const li = messageItem({
        from: S.selfId, text: asHex ? undefined : raw, data: b64, id: res.id, outgoing: true, testid: 'feed-item',
        status: { text: 'published', cls: 'ok' },
      });
      insertItem(feed.el, li, null, true);
    } catch (e) {
      msg.className = 'form-msg err';
      msg.textContent = e.message;
    } finally {
      $('publish-btn').disabled = !S.activeTopic || !can('write');
    }
  });

  // ----------------------------------------------------- direct messages

  function addDirect(f, live) {
    const list = $('dm-list');
    const li = messageItem({ from: f.from, text: f.text, data: f.data, id: f.id, time: f.received_ms || Date.now(), cursor: f.cursor, testid: 'dm-item' });
    li.dataset.dir = 'in';
    li.querySelector('.msg-meta').insertBefore(h('span', { class: 'dir dir-in', text: '↓ from' }), li.querySelector('.msg-from'));
    insertItem(list, li, f.cursor, live);
    trimDm();
  }

  function trimDm() {
    const list = $('dm-list');
    while (list.children.length > FEED_MAX) list.lastChild.remove();
    for (const [id, li] of S.outgoing) if (!li.isConnected) S.outgoing.delete(id);
    $('dm-empty').hidden = list.children.length > 0;
  }

  $('dm-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const peer = $('dm-peer').value;
    const text = $('dm-input').value;
    const msg = $('dm-msg');
    if (!peer || !text) return;
    const body = new TextEncoder().encode(text);
    const li = messageItem({ from: peer, text, data: bytesToB64(body), outgoing: true, testid: 'dm-item', status: { text: 'sending…' } });
    li.dataset.dir = 'out';
    const meta = li.querySelector('.msg-meta');
    meta.querySelector('.msg-from').textContent = `to ${shortId(peer, 8)}`;
    meta.insertBefore(h('span', { class: 'dir dir-out', text: '↑' }), meta.querySelector('.msg-from'));
    $('dm-list').prepend(li);
    trimDm();
    $('dm-input').value = '';
    msg.textContent = '';
    const status = li.querySelector('.msg-status');
    try {
      const res = await api(`/api/peers/${encodeURIComponent(peer)}/send?wait=15`, { method: 'POST', body, headers: { 'Content-Type': 'text/plain; charset=utf-8' } });
      li.dataset.id = res.id;
      S.outgoing.set(res.id, li);
      status.textContent = res.acknowledged ? 'acknowledged ✓' : 'queued, retrying';
      status.className = `msg-status ${res.acknowledged ? 'ok' : 'warn'}`;
    } catch (e) {
      status.textContent = `not sent: ${e.message}`;
      status.className = 'msg-status err';
    }
  });

  function markUndelivered(f) {
    const li = S.outgoing.get(f.id);
    if (li) {
      const status = li.querySelector('.msg-status');
      status.textContent = f.type === 'expired' ? 'expired, not delivered' : `failed${f.reason ? `: ${f.reason}` : ''}`;
      status.className = 'msg-status err';
    }
  }

  // Ctrl/Cmd+Enter sends from either text box.
  for (const [input, form] of [['publish-input', 'publish-form'], ['dm-input', 'dm-form']]) {
    $(input).addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        $(form).requestSubmit();
      }
    });
  }

  // ---------------------------------------------------------------- nodes

  async function refreshNodes() {
    const n = S.nodes;
    if (n.api === false && Date.now() - n.checked < API_RETRY_MS) {
      renderNodes();
      return;
    }
    try {
      const list = await api('/api/nodes');
      n.api = true;
      n.list = Array.isArray(list) ? list : (list && list.nodes) || [];
    } catch (e) {
      if (e.status === 404) {
        n.api = false;
        n.checked = Date.now();
        n.list = null;
      }
    }
    renderNodes();
    renderPeers();
  }

  function renderNodes() {
    const n = S.nodes;
    const st = S.status;
    const list = n.api && n.list
      ? n.list
      : st
        ? [{ id: 'this node', peer_id: st.peer_id, parent: null, generation: 0, state: S.daemon.state, pid: S.daemon.pid, restarts: S.daemon.restarts, peers: st.peers, tension: S.tension.value, _local: true }]
        : [];
    $('nodes-actions').hidden = !n.api;
    setText('nodes-count', list.length);
    $('nodes-note').textContent = n.api ? '' : 'This host supervises one node.';
    const key = JSON.stringify([n.api, S.selfId, list.map((x) => [x.id, x.parent, x.state, x.pid, x.restarts, x.peers, x.tension && Math.round(x.tension * 100), x.generation])]);
    if (key === n.key) return;
    n.key = key;

    const ids = new Set(list.map((x) => String(x.id)));
    const children = new Map();
    const roots = [];
    for (const node of list) {
      const parent = node.parent === null || node.parent === undefined ? null : String(node.parent);
      if (parent === null || !ids.has(parent)) roots.push(node);
      else {
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(node);
      }
    }
    const item = (node) => {
      const kids = children.get(String(node.id)) || [];
      const tau = typeof node.tension === 'number' ? node.tension : null;
      const state = node.state || 'unknown';
      const isRoot = node.parent === null || node.parent === undefined;
      return h('li', { class: 'tree-item', 'data-testid': 'node', 'data-node-id': node.id, 'data-state': state },
        h('div', { class: 'node-row' },
          h('span', { class: 'state-dot', 'data-state': state, title: state }),
          h('div', { class: 'node-main' },
            h('div', { class: 'node-title' },
              h('strong', { text: node._local ? 'this node' : String(node.id) }),
              !node._local && node.peer_id && node.peer_id === S.selfId ? h('span', { class: 'badge self', text: 'this node' }) : null,
              node.generation !== undefined && !node._local ? h('span', { class: 'badge', text: `gen ${node.generation}` }) : null,
              h('span', { class: 'state', 'data-state': state, text: state })),
            h('div', { class: 'node-sub muted small' },
              h('code', { class: 'mono', title: node.peer_id || '', text: shortId(node.peer_id, 8) }),
              ` · pid ${node.pid ?? '—'} · ${plural(node.restarts ?? 0, 'restart')} · ${plural(node.peers ?? 0, 'peer')}`)),
          h('div', { class: 'node-tau', title: 'tension τ', 'data-level': tensionClass(tau) },
            h('span', { class: 'tau', text: 'τ' }),
            h('div', { class: 'bar small-bar' }, h('div', { class: 'bar-fill', style: `width:${((tau || 0) * 100).toFixed(0)}%` })),
            h('span', { class: 'mono', text: tau === null ? '—' : tau.toFixed(2) })),
          n.api ? h('div', { class: 'node-actions' },
            h('button', { type: 'button', class: 'ghost small-btn', 'data-testid': 'node-spawn', disabled: !can('admin'), title: can('admin') ? 'spawn child nodes under this one' : lacks('admin'), onclick: (ev) => spawnNodes(node.id, ev.currentTarget) }, '+ spawn'),
            !isRoot ? h('button', { type: 'button', class: 'ghost small-btn danger', 'data-testid': 'node-stop', disabled: !can('admin'), title: can('admin') ? 'stop this node and the nodes below it' : lacks('admin'), onclick: (ev) => stopNode(node.id, ev.currentTarget) }, 'stop') : null) : null),
        kids.length ? h('ul', { class: 'tree' }, kids.map(item)) : null);
    };
    $('nodes-tree').replaceChildren(...roots.map(item));
  }

  async function spawnNodes(parent, button) {
    const count = Math.max(1, Math.min(64, parseInt($('spawn-count').value, 10) || 1));
    if (button) button.disabled = true;
    log('info', `Spawning ${plural(count, 'node')} under ${parent}…`);
    try {
      const made = await api('/api/nodes', { method: 'POST', body: JSON.stringify({ parent, count }), headers: { 'Content-Type': 'application/json' } });
      const ids = Array.isArray(made) ? made.map((x) => x.id).join(', ') : '';
      log('ok', `Spawned ${ids || plural(count, 'node')} under ${parent}`);
    } catch (e) {
      log('err', `Spawn under ${parent} failed: ${e.message}`);
    } finally {
      if (button) button.disabled = false;
    }
    soon('nodes', refreshNodes, 0);
  }

  async function stopNode(id, button) {
    if (button) button.disabled = true;
    try {
      const res = await api(`/api/nodes/${encodeURIComponent(id)}`, { method: 'DELETE' });
      const stopped = res && Array.isArray(res.stopped) ? res.stopped.join(', ') : id;
      log('info', `Stopped ${stopped}`);
    } catch (e) {
      log('err', `Stopping ${id} failed: ${e.message}`);
      if (button) button.disabled = false;
    }
    soon('nodes', refreshNodes, 0);
  }

  // ------------------------------------------------------------ events

  function setWsState(state, text) {
    const el = $('ws-status');
    el.dataset.state = state;
    setText('ws-status-text', text || state);
    $('host-banner').hidden = S.hostUp || state === 'live';
  }

  function connectEvents() {
    clearTimeout(S.wsTimer);
    const q = new URLSearchParams();
    if (S.lastCursor !== null) q.set('after', String(S.lastCursor));
    if (TOKEN) q.set('token', TOKEN);
    const qs = q.toString();
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/api/events${qs ? `?${qs}` : ''}`;
    setWsState('connecting', S.wsAttempt ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    let first = true;
    ws.onopen = () => {
      setWsState('live', 'live');
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (first) {
        first = false;
        if (onFirstFrame(ws, f)) return;
      }
      handleFrame(f);
    };
    ws.onclose = (ev) => {
      if (S.ws !== ws) return;
      S.ws = null;
      if (!first) {
        // It was working: this is a fresh failure, start the backoff over.
        S.wsAttempt = 0;
        log('warn', `Event stream closed${ev.reason ? `: ${ev.reason}` : ''}; reconnecting`);
      }
      scheduleReconnect(ev.code === 4008 ? 0 : undefined);
    };
  }

  function scheduleReconnect(delay) {
    const attempt = S.wsAttempt++;
    const base = Math.min(10000, 500 * 2 ** attempt);
    const wait = delay ?? Math.round(base * (0.75 + Math.random() * 0.5));
    const until = Date.now() + wait;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setWsState('down', left ? `reconnecting in ${left}s` : 'reconnecting');
    };
    tick();
    clearInterval(S.wsCountdown);
    S.wsCountdown = setInterval(tick, 500);
    S.wsTimer = setTimeout(() => {
      clearInterval(S.wsCountdown);
      connectEvents();
    }, wait);
  }

  /** The first frame names the newest stored cursor. Returns true if handled. */
  function onFirstFrame(ws, f) {
    S.wsAttempt = 0;
    setHostUp(true);
    const cursor = typeof f.cursor === 'number' ? f.cursor : null;
    if (S.lastCursor === null) {
      // First connection: live events start after `cursor`; show recent
      // stored history up to it once.
      S.lastCursor = cursor ?? 0;
      if (cursor) backfill(cursor);
    } else if (cursor !== null && cursor < S.lastCursor) {
      // The host's store is not the one we knew (new data dir): start over
      // from its cursor, or every new event would be skipped.
      log('warn', 'The host has a different message store; resyncing');
      S.lastCursor = cursor;
      S.seen.clear();
      ws.close();
      S.ws = null;
      connectEvents();
      return true;
    } else {
      log('ok', 'Event stream reconnected; replaying what was missed');
    }
    // Anything may have changed while we were away.
    soon('status', refreshStatus, 0);
    soon('peers', refreshPeers, 100);
    soon('topics', refreshTopics, 100);
    return false;
  }

  async function backfill(upto) {
    const after = Math.max(0, upto - BACKFILL);
    const subscribed = new Set((S.status && S.status.topics) || []);
    for (const kind of ['message', 'direct']) {
      try {
        const page = await api(`/api/messages?kind=${kind}&after=${after}&limit=${BACKFILL}`);
        for (const f of page.messages || []) {
          if (f.cursor > upto) continue;
          if (kind === 'message' && !subscribed.has(f.topic)) continue;
          handleStored(f, false);
        }
      } catch {
        /* history is a nicety */
      }
    }
  }

  const STORED = new Set(['message', 'direct', 'expired', 'failed']);

  function handleStored(f, live) {
    if (typeof f.cursor === 'number') {
      if (S.seen.has(f.cursor)) return;
      S.seen.add(f.cursor);
      if (live && (S.lastCursor === null || f.cursor > S.lastCursor)) S.lastCursor = f.cursor;
    }
    switch (f.type) {
      case 'message':
        addMessage(f, { live });
        break;
      case 'direct':
        addDirect(f, live);
        if (live) log('info', `Direct message from ${shortId(f.from, 8)}`);
        break;
      default:
        markUndelivered(f);
        if (live) log('err', `${f.direct ? 'Direct message' : 'Publish'} ${f.id} ${f.type}${f.reason ? `: ${f.reason}` : ''}`);
    }
  }

  function handleFrame(f) {
    if (STORED.has(f.type)) {
      handleStored(f, true);
      return;
    }
    switch (f.type) {
      case 'daemon':
        S.daemonSeq++;
        applyDaemon({ state: f.state, pid: f.pid, restarts: f.restarts });
        break;
      case 'peer_connected':
        log('ok', `Peer connected ${shortId(f.peer_id, 8)}${f.addr ? ` via ${f.addr}` : ''}`);
        soon('peers', refreshPeers);
        soon('status', refreshStatus, 300);
        break;
      case 'peer_disconnected':
        log('info', `Peer disconnected ${shortId(f.peer_id, 8)}`);
        soon('peers', refreshPeers);
        soon('status', refreshStatus, 300);
        break;
      case 'new_listen_addr':
      case 'expired_listen_addr':
        soon('status', refreshStatus);
        break;
      case 'topic_peer_joined':
      case 'topic_peer_left':
        soon('topics', refreshTopics);
        break;
      case 'lagged':
        log('warn', `Event stream lagged: ${f.missed} events missed`);
        break;
      default:
        break;
    }
  }

  // ----------------------------------------------------------------- main

  function tick() {
    once('status', refreshStatus);
    once('peers', refreshPeers);
    once('topics', refreshTopics);
    once('tension', refreshTension);
    once('nodes', refreshNodes);
  }

  async function start() {
    log('info', 'Dashboard opened');
    await refreshScopes();
    // Status first, so that history is filtered to the subscribed topics.
    await once('status', refreshStatus);
    await once('tension', refreshTension);
    connectEvents();
    tick();
    setInterval(tick, REFRESH_MS);
    setInterval(() => {
      renderUptime();
      if (S.tension.history.length) renderSparkline();
    }, 1000);
  }

  start();
})();
