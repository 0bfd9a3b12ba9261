// The log explorer. Plain modern JavaScript, no framework and no build step: the
// page is a handful of views over four endpoints of the query API, and without a
// toolchain the gateway binary can embed these files as they are.
//
// State lives in the URL (?q=&level=&source=&range=&from=&to=&cid=&tid=&live=), so a link
// reproduces the view. The live tail reads /tail with fetch() rather than EventSource
// so that the API key travels in a header, never in a URL (URLs end up in logs and
// browser history); it resumes with Last-Event-ID after any drop.

const API = "/gateway/api/query";
const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };
const PAGE_SIZE = 100;
// The list keeps at most this many rows while live; older ones are cut from the end.
const LIVE_MAX_ROWS = 2000;

const $ = (id) => document.getElementById(id);

const view = {
  state: readState(),
  nextCursor: null,
  loading: false,
  generation: 0,
  shown: new Set(),
  summary: "",
  liveAdded: 0,
};

// ---- URL state ---------------------------------------------------------------

function readState() {
  const p = new URLSearchParams(location.search);
  const range = p.get("range") || "1h";
  return {
    q: p.get("q") || "",
    levels: (p.get("level") || "").split(",").filter((l) => LEVELS.includes(l)),
    source: p.get("source") || "",
    range: range in RANGES || range === "custom" ? range : "1h",
    from: p.get("from") || "",
    to: p.get("to") || "",
    cid: p.get("cid") || "",
    tid: p.get("tid") || "",
    live: p.get("live") === "1",
  };
}

// The URL of a view: the page's path and the state as query parameters.
function urlOf(s) {
  const p = new URLSearchParams();
  if (s.q) p.set("q", s.q);
  if (s.levels.length) p.set("level", s.levels.join(","));
  if (s.source) p.set("source", s.source);
  p.set("range", s.range);
  if (s.range === "custom") {
    if (s.from) p.set("from", s.from);
    if (s.to) p.set("to", s.to);
  }
  if (s.cid) p.set("cid", s.cid);
  if (s.tid) p.set("tid", s.tid);
  if (s.live) p.set("live", "1");
  return `${location.pathname}?${p}`;
}

function writeState(push) {
  const url = urlOf(view.state);
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function showStateInForm() {
  const s = view.state;
  $("query").value = s.q;
  $("source").value = s.source;
  $("range").value = s.range;
  $("from").value = toLocalInput(s.from);
  $("to").value = toLocalInput(s.to);
  for (const box of document.querySelectorAll("#levels input")) box.checked = s.levels.includes(box.value);
  for (const el of document.querySelectorAll(".custom")) el.hidden = s.range !== "custom";
  $("correlation").hidden = !s.cid;
  $("correlation-value").textContent = s.cid;
  $("trace").hidden = !s.tid;
  $("trace-value").textContent = s.tid;
  $("live").setAttribute("aria-pressed", String(s.live));
}

function readForm() {
  const s = view.state;
  s.q = $("query").value.trim();
  s.source = $("source").value.trim();
  s.range = $("range").value;
  s.levels = [...document.querySelectorAll("#levels input:checked")].map((b) => b.value);
  if (s.range === "custom") {
    s.from = fromLocalInput($("from").value) || new Date(Date.now() - 3600e3).toISOString();
    s.to = fromLocalInput($("to").value) || new Date().toISOString();
  }
}

// datetime-local inputs hold local time without a zone; the URL holds UTC.
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 19);
}

function fromLocalInput(value) {
  if (!value) return "";
  const d = new Date(value);
  return isNaN(d) ? "" : d.toISOString();
}

function windowOf(state) {
  if (state.range === "custom") {
    return { start: state.from || new Date(Date.now() - 3600e3).toISOString(), end: state.to || new Date().toISOString() };
  }
  const end = new Date();
  return { start: new Date(end.getTime() - RANGES[state.range]).toISOString(), end: end.toISOString() };
}

// ---- API ---------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const key = sessionStorage.getItem("apiKey");
  return key ? { ...extra, "X-API-Key": key } : extra;
}

async function api(path, params) {
  const url = `${API}${path}?${new URLSearchParams(params)}`;
  let response;
  try {
    response = await fetch(url, { headers: headers({ Accept: "application/json" }) });
  } catch {
    throw new ApiFailure("The gateway cannot be reached. Is it running?", 0);
  }
  if (response.ok) return response.json();
  throw await failureOf(response);
}

async function failureOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    /* not JSON: the status says enough */
  }
  const retry = response.headers.get("Retry-After");
  const fields = (body.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
  if (response.status === 401) {
    $("key-prompt").hidden = false;
    return new ApiFailure("An API key is needed: enter one above.", 401);
  }
  if (response.status === 429) {
    return new ApiFailure(`Too many requests (429): try again in ${retry || "a few"} s.`, 429);
  }
  const message = fields || body.message || response.statusText;
  const hint = retry ? ` Retry in ${retry} s.` : "";
  return new ApiFailure(`${response.status}: ${message}.${hint}`, response.status);
}

function filterParams(state, win) {
  const p = { startTime: win.start, endTime: win.end };
  if (state.levels.length) p.level = state.levels.join(",");
  if (state.source) p.source = state.source;
  return p;
}

// ---- loading -----------------------------------------------------------------

async function load() {
  const generation = ++view.generation;
  const state = view.state;
  const win = windowOf(state);
  view.window = win;
  view.nextCursor = null;
  view.shown.clear();
  $("events").replaceChildren();
  $("more").textContent = "";
  showMessage("Loading…");
  $("summary").textContent = "Events";
  loadHistogram(state, win, generation);
  loadStats(win, generation);
  try {
    const page = await fetchPage(state, win, null);
    if (generation !== view.generation) return;
    showPage(page, false);
  } catch (e) {
    if (generation === view.generation) showMessage(e.message, true);
  }
}

function fetchPage(state, win, cursor) {
  const params = { ...filterParams(state, win), size: PAGE_SIZE };
  if (state.cid) params.correlationId = state.cid;
  if (state.tid) params.traceId = state.tid;
  if (cursor) params.cursor = cursor;
  if (state.q) return api("/search", { ...params, query: state.q });
  return api("/logs", params);
}

function showPage(page, appending) {
  view.nextCursor = page.nextCursor || null;
  if (!appending) {
    const total = page.totalElements.toLocaleString();
    view.summary = `${page.totalElementsExact ? "" : "about "}${total} event${page.totalElements === 1 ? "" : "s"}`;
    view.liveAdded = 0;
    showSummary();
  }
  const fresh = page.content.filter((e) => !view.shown.has(e.id));
  for (const event of fresh) view.shown.add(event.id);
  $("events").append(...fresh.map((e) => eventRow(e, false)));
  if (!appending && page.content.length === 0) {
    showMessage("No events match. Widen the time range or remove a filter.");
  } else {
    hideMessage();
  }
  $("more").textContent = view.nextCursor ? "Scroll for older events" : page.content.length ? "No older events" : "";
}

function showSummary() {
  $("summary").textContent = view.liveAdded ? `${view.summary} + ${view.liveAdded} live` : view.summary;
}

async function loadMore() {
  if (!view.nextCursor || view.loading) return;
  view.loading = true;
  const generation = view.generation;
  $("more").textContent = "Loading older events…";
  try {
    const page = await fetchPage(view.state, view.window, view.nextCursor);
    if (generation === view.generation) showPage(page, true);
  } catch (e) {
    if (generation === view.generation) $("more").textContent = e.message;
  } finally {
    view.loading = false;
  }
}

async function loadHistogram(state, win, generation) {
  const params = filterParams(state, win);
  if (state.q) params.query = state.q;
  const ids = [state.cid && "correlation id", state.tid && "trace id"].filter(Boolean);
  $("histogram-note").textContent = ids.length ? `(without the ${ids.join(" and ")} filter${ids.length > 1 ? "s" : ""})` : "";
  try {
    const histogram = await api("/histogram", params);
    if (generation === view.generation) drawHistogram(histogram);
  } catch (e) {
    if (generation === view.generation) {
      $("histogram").replaceChildren();
      $("histogram-note").textContent = e.message;
    }
  }
}

async function loadStats(win, generation) {
  // /stats answers windows of at most 31 days.
  const start = new Date(Math.max(new Date(win.start).getTime(), new Date(win.end).getTime() - 31 * 24 * 3600e3));
  try {
    const stats = await api("/stats", { startTime: start.toISOString(), endTime: win.end });
    if (generation === view.generation) showStats(stats);
  } catch (e) {
    if (generation === view.generation) $("top-sources").replaceChildren(listItem(e.message));
  }
}

function listItem(text) {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

// ---- rendering ----------------------------------------------------------------

function showMessage(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
  box.hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

function eventRow(event, fresh) {
  const li = document.createElement("li");
  li.className = fresh ? "event fresh" : "event";
  li.tabIndex = 0;
  li.dataset.id = event.id;
  li.setAttribute("aria-label", `${event.level} from ${event.source}: ${event.message}`);
  const time = document.createElement("time");
  time.dateTime = event.timestamp;
  time.textContent = formatTime(event.timestamp);
  const level = document.createElement("span");
  level.className = `level ${event.level}`;
  level.textContent = event.level;
  const source = document.createElement("span");
  source.className = "source";
  source.textContent = event.source;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = event.message;
  li.append(time, level, source, text);
  li.addEventListener("click", () => openDetails(event));
  li.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      openDetails(event);
    } else if (e.key === "ArrowDown" || e.key === "j") {
      e.preventDefault();
      li.nextElementSibling?.focus();
    } else if (e.key === "ArrowUp" || e.key === "k") {
      e.preventDefault();
      li.previousElementSibling?.focus();
    }
  });
  return li;
}

function formatTime(iso) {
  const d = new Date(iso);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function openDetails(event) {
  const fields = $("details-fields");
  fields.replaceChildren();
  const add = (name, value) => {
    if (value === undefined || value === null || value === "") return;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value;
    fields.append(dt, dd);
  };
  add("id", event.id);
  add("time", `${event.timestamp} (${formatTime(event.timestamp)} local)`);
  add("level", event.level);
  add("source", event.source);
  add("message", event.message);
  if (event.correlationId) {
    const link = document.createElement("a");
    link.href = linkWith({ cid: event.correlationId, q: "" });
    link.textContent = event.correlationId;
    link.title = "Show every event with this correlation id";
    link.addEventListener("click", (e) => {
      e.preventDefault();
      $("details").close();
      Object.assign(view.state, { cid: event.correlationId, q: "" });
      apply(true);
    });
    add("correlation id", link);
  }
  add("request id", event.requestId);
  if (event.traceId) {
    const link = document.createElement("a");
    link.href = linkWith({ tid: event.traceId, q: "" });
    link.textContent = event.traceId;
    link.title = "Show every event with this trace id";
    link.addEventListener("click", (e) => {
      e.preventDefault();
      $("details").close();
      Object.assign(view.state, { tid: event.traceId, q: "" });
      apply(true);
    });
    add("trace id", link);
  }
  $("details-metadata").textContent = event.metadata ? JSON.stringify(event.metadata, null, 2) : "(none)";
  $("details").showModal();
}

function linkWith(changes) {
  return urlOf({ ...view.state, ...changes });
}

function showStats(stats) {
  $("error-rate").textContent = `${(stats.errorRate * 100).toFixed(2)} %`;
  $("total-logs").textContent = stats.totalLogs.toLocaleString();
  const d = stats.duration;
  const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)}`);
  $("durations").textContent = d.samples ? `${ms(d.p50)} / ${ms(d.p95)} / ${ms(d.p99)} ms` : "no samples";
  const list = $("top-sources");
  list.replaceChildren();
  const options = $("sources");
  options.replaceChildren();
  for (const top of stats.topSources) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${top.source} (${top.count.toLocaleString()})`;
    button.addEventListener("click", () => {
      view.state.source = top.source;
      apply(true);
    });
    li.append(button);
    list.append(li);
    const option = document.createElement("option");
    option.value = top.source;
    options.append(option);
  }
  if (!stats.topSources.length) list.append(listItem("no events in this window"));
}

// ---- histogram -------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const HIST_W = 1000;
const HIST_H = 120;

function drawHistogram(histogram) {
  const svg = $("histogram");
  svg.setAttribute("viewBox", `0 0 ${HIST_W} ${HIST_H}`);
  svg.replaceChildren();
  view.histogram = histogram;
  const buckets = histogram.buckets;
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const width = HIST_W / Math.max(1, buckets.length);
  const styles = getComputedStyle(document.documentElement);
  buckets.forEach((bucket, i) => {
    let y = HIST_H;
    for (const level of LEVELS) {
      const count = bucket.counts[level] || 0;
      if (!count) continue;
      const h = (count / max) * (HIST_H - 4);
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", i * width + 0.5);
      rect.setAttribute("y", y - h);
      rect.setAttribute("width", Math.max(0.5, width - 1));
      rect.setAttribute("height", h);
      rect.setAttribute("fill", styles.getPropertyValue(`--${level}`).trim());
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${formatTime(bucket.start)}: ${count} ${level}`;
      rect.append(title);
      svg.append(rect);
      y -= h;
    }
  });
  const total = buckets.reduce((n, b) => n + b.total, 0);
  $("histogram-note").textContent = `${total.toLocaleString()} in ${buckets.length} × ${histogram.interval}${histogram.exact ? "" : " (first matches only)"}`;
  $("legend").replaceChildren(
    ...LEVELS.map((level) => {
      const span = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = styles.getPropertyValue(`--${level}`).trim();
      span.append(swatch, level);
      return span;
    }),
  );
}

// Dragging across the histogram zooms into that span.
function histogramZoom() {
  const svg = $("histogram");
  let startX = null;
  let band = null;
  const xOf = (e) => {
    const box = svg.getBoundingClientRect();
    return Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
  };
  const timeAt = (fraction) => {
    const h = view.histogram;
    const start = new Date(h.startTime).getTime();
    const end = new Date(h.endTime).getTime();
    return new Date(start + fraction * (end - start));
  };
  svg.addEventListener("pointerdown", (e) => {
    if (!view.histogram) return;
    startX = xOf(e);
    svg.setPointerCapture(e.pointerId);
    band = document.createElementNS(SVG, "rect");
    band.setAttribute("class", "selection");
    band.setAttribute("y", 0);
    band.setAttribute("height", HIST_H);
    svg.append(band);
  });
  svg.addEventListener("pointermove", (e) => {
    if (startX === null) return;
    const x = xOf(e);
    band.setAttribute("x", Math.min(startX, x) * HIST_W);
    band.setAttribute("width", Math.abs(x - startX) * HIST_W);
  });
  svg.addEventListener("pointerup", (e) => {
    if (startX === null) return;
    const x = xOf(e);
    const [a, b] = [Math.min(startX, x), Math.max(startX, x)];
    startX = null;
    band?.remove();
    if (b - a < 0.01) return;
    Object.assign(view.state, { range: "custom", from: timeAt(a).toISOString(), to: timeAt(b).toISOString(), live: false });
    apply(true);
  });
}

// ---- live tail -------------------------------------------------------------------

const live = {
  controller: null,
  lastEventId: null,
  retryMs: 1000,
  received: 0,
  duplicates: 0,
  seen: new Set(),
  pending: [],
  timer: null,
  // The page's first load waits for the tail's `ready`, so nothing committed between
  // the page's snapshot and the tail's start can fall between the two.
  pageAfterReady: false,
  // Shown meanwhile because the tail could not start; loaded again at `ready`.
  pageShownMeanwhile: false,
};
// Ids remembered to count events sent twice (a check, shown to tests); the oldest go.
const SEEN_MAX = 20000;
// No byte for this long (three heartbeats) and the connection is taken for dead.
const SILENCE_MS = 45000;

function tailParams(state) {
  const p = {};
  if (state.levels.length) p.level = state.levels.join(",");
  if (state.source) p.source = state.source;
  if (state.q) p.query = state.q;
  if (state.cid) p.correlationId = state.cid;
  if (state.tid) p.traceId = state.tid;
  return p;
}

function startLive() {
  stopLive();
  live.pageAfterReady = true;
  live.pageShownMeanwhile = false;
  live.lastEventId = null;
  live.seen.clear();
  live.pending = [];
  connectLive();
}

// At the tail's `ready`: the page it was waiting for.
function loadWaitingPage() {
  if (!live.pageAfterReady) return;
  live.pageAfterReady = false;
  load();
}

// The tail cannot start yet: show the page meanwhile, and load it again at `ready`
// (what is committed before the tail starts may be newer than this page).
function loadPageMeanwhile() {
  if (!live.pageAfterReady || live.pageShownMeanwhile) return;
  live.pageShownMeanwhile = true;
  load();
}

function stopLive() {
  live.controller?.abort();
  live.controller = null;
  clearTimeout(live.timer);
  setLiveStatus("", "off");
  $("new-events").hidden = true;
}

function setLiveStatus(text, state) {
  const status = $("live-status");
  status.textContent = text;
  status.dataset.state = state;
  status.dataset.received = String(live.received);
  status.dataset.duplicates = String(live.duplicates);
}

async function connectLive() {
  const controller = new AbortController();
  live.controller = controller;
  const extra = { Accept: "text/event-stream" };
  if (live.lastEventId !== null) extra["Last-Event-ID"] = live.lastEventId;
  setLiveStatus(live.lastEventId === null ? "Connecting…" : "Reconnecting…", "connecting");
  let retryAfter = null;
  try {
    const response = await fetch(`${API}/tail?${new URLSearchParams(tailParams(view.state))}`, {
      headers: headers(extra),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const failure = await failureOf(response);
      // A newer connection (or stopping) took over while this one waited.
      if (controller.signal.aborted || live.controller !== controller) return;
      loadPageMeanwhile();
      if (response.status === 401 || response.status === 400) {
        setLiveStatus(`Live tail stopped: ${failure.message}`, "failed");
        return;
      }
      retryAfter = Number(response.headers.get("Retry-After")) || null;
      setLiveStatus(`Live tail unavailable: ${failure.message}`, "retrying");
    } else {
      await readStream(response.body, controller);
    }
  } catch (e) {
    if (controller.signal.aborted || live.controller !== controller) return;
    loadPageMeanwhile();
    setLiveStatus("Connection lost; reconnecting…", "retrying");
  }
  if (controller.signal.aborted || live.controller !== controller) return;
  const delay = retryAfter ? retryAfter * 1000 : live.retryMs;
  live.timer = setTimeout(connectLive, delay);
}

// Server-Sent Events, parsed as the EventSource standard says: messages end at a
// blank line; `id:` sets the resume point even for a message without data.
async function readStream(body, controller) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  // A CR at the end of a read may be the first half of a CRLF: held for the next.
  let heldCR = "";
  try {
    for (;;) {
      let timer;
      const silence = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), SILENCE_MS);
      });
      const read = await Promise.race([reader.read(), silence]);
      clearTimeout(timer);
      if (read === null) {
        setLiveStatus("No data for 45 s; reconnecting…", "retrying");
        return;
      }
      if (read.done || controller.signal.aborted) break;
      let text = heldCR + read.value;
      heldCR = text.endsWith("\r") ? "\r" : "";
      if (heldCR) text = text.slice(0, -1);
      buffer += text.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        dispatch(block);
      }
    }
    if (!controller.signal.aborted) setLiveStatus("Stream ended; reconnecting…", "retrying");
  } finally {
    // Whatever ended the loop, the connection is given back (it holds one of the
    // browser's connections to this host, and a place among TAIL_MAX_CLIENTS).
    reader.cancel().catch(() => {});
  }
}

function dispatch(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") live.lastEventId = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) live.retryMs = Number(value);
  }
  if (!data.length) return;
  let payload;
  try {
    payload = JSON.parse(data.join("\n"));
  } catch (e) {
    console.error("live tail: a message that is not JSON was skipped", e);
    return;
  }
  if (event === "ready") {
    setLiveStatus("Live: following new events", "live");
    loadWaitingPage();
  } else if (event === "tail-error") {
    setLiveStatus(`Live tail: ${payload.message} (retrying)`, "retrying");
  } else if (event === "message") {
    receive(payload);
  }
}

function receive(event) {
  live.received += 1;
  if (live.seen.has(event.id)) live.duplicates += 1;
  live.seen.add(event.id);
  if (live.seen.size > SEEN_MAX) live.seen.delete(live.seen.values().next().value);
  setLiveStatus("Live: following new events", "live");
  if (view.shown.has(event.id)) return;
  if (window.scrollY > 60) {
    live.pending.push(event);
    // More than the list keeps would be cut anyway: the oldest held events go.
    if (live.pending.length > LIVE_MAX_ROWS) live.pending.shift();
    const button = $("new-events");
    button.textContent = `${live.pending.length} new event${live.pending.length === 1 ? "" : "s"}: show`;
    button.hidden = false;
    return;
  }
  prepend([event]);
}

function prepend(events) {
  const list = $("events");
  for (const event of events) {
    if (view.shown.has(event.id)) continue;
    view.shown.add(event.id);
    list.prepend(eventRow(event, true));
    view.liveAdded += 1;
  }
  showSummary();
  hideMessage();
  while (list.children.length > LIVE_MAX_ROWS) {
    view.shown.delete(list.lastElementChild.dataset.id);
    list.lastElementChild.remove();
    view.nextCursor = null;
    $("more").textContent = "Older events were cut while live; search again to page through them.";
  }
}

function flushPending() {
  const events = live.pending;
  live.pending = [];
  $("new-events").hidden = true;
  prepend(events);
}

// ---- wiring ------------------------------------------------------------------------

function apply(push) {
  if (view.state.live && view.state.range === "custom") view.state.range = "15m";
  writeState(push);
  showStateInForm();
  refresh();
}

// The results for the current state; live, the page loads once the tail has started.
function refresh() {
  if (view.state.live) {
    startLive();
  } else {
    stopLive();
    load();
  }
}

function init() {
  const levels = $("levels");
  for (const level of LEVELS) {
    const label = document.createElement("label");
    label.className = `level-toggle level ${level}`;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = level;
    box.name = "level";
    label.append(box, level);
    levels.append(label);
  }
  showStateInForm();

  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    readForm();
    apply(true);
  });
  $("range").addEventListener("change", () => {
    for (const el of document.querySelectorAll(".custom")) el.hidden = $("range").value !== "custom";
    if ($("range").value !== "custom") {
      readForm();
      apply(true);
    }
  });
  levels.addEventListener("change", () => {
    readForm();
    apply(true);
  });
  $("live").addEventListener("click", () => {
    readForm();
    view.state.live = !view.state.live;
    apply(false);
  });
  $("correlation-clear").addEventListener("click", () => {
    view.state.cid = "";
    apply(true);
  });
  $("trace-clear").addEventListener("click", () => {
    view.state.tid = "";
    apply(true);
  });
  $("new-events").addEventListener("click", () => {
    window.scrollTo({ top: 0 });
    flushPending();
  });
  $("details-close").addEventListener("click", () => $("details").close());
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("apiKey", $("key").value);
    $("key").value = "";
    $("key-prompt").hidden = true;
    apply(false);
  });
  window.addEventListener("popstate", () => {
    view.state = readState();
    showStateInForm();
    refresh();
  });
  window.addEventListener("scroll", () => {
    if (window.scrollY <= 60 && live.pending.length) flushPending();
  });
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }).observe($("more"));
  document.addEventListener("keydown", (e) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
    if (e.key === "/" && !typing) {
      e.preventDefault();
      $("query").focus();
    } else if (e.key === "l" && !typing && !e.ctrlKey && !e.metaKey && !$("details").open) {
      $("live").click();
    }
  });
  histogramZoom();
  refresh();
}

init();
