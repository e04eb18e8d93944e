"use strict";
// The pooldaemon dashboard: views over /api/v1 (the control socket's API), kept live by the
// event stream /api/v1/events. Plain DOM, no libraries, no build step. Text from the daemon is
// only ever set with textContent (the h() helper), never parsed as HTML.

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
// Endpoints this daemon has beyond the core API ("rules", "library", …).
const FEATURES = new Set(document.querySelector('meta[name="api-features"]').content.split(" "));
const main = document.getElementById("main");
const live = document.getElementById("live");
const toastBox = document.getElementById("toast");
const UNFINISHED = new Set(["queued", "resolving", "downloading", "verifying"]);
const MAX_ROWS = 300;

// -- small helpers ------------------------------------------------------------------------------

function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

let toastTimer = 0;
function toast(text) {
  toastBox.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toastBox.textContent = ""; }, 6000);
}

function size(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function when(seconds) {
  if (!seconds) return "never";
  const ago = Date.now() / 1000 - seconds;
  if (ago < 60) return "just now";
  if (ago < 3600) return Math.round(ago / 60) + " min ago";
  if (ago < 86400) return Math.round(ago / 3600) + " h ago";
  return new Date(seconds * 1000).toLocaleString();
}

function button(label, onclick, props = {}) {
  return h("button", { type: "button", onclick, ...props }, label);
}

function cell(label, ...content) {
  return h("td", { "data-label": label }, ...content);
}

function table(headers, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows));
}

// Redraw `box` without losing the keyboard: a control focused inside it hands focus to its twin
// (same label) in the new content, else to the view.
function redraw(box, ...nodes) {
  const active = document.activeElement;
  const name = box.contains(active) && active !== box ? controlName(active) : null;
  box.replaceChildren(...nodes);
  if (name === null) return;
  const twin = [...box.querySelectorAll("button, input, select")].find((el) => controlName(el) === name);
  (twin || main).focus();
}

function controlName(el) {
  return el.getAttribute("aria-label") || el.getAttribute("name") || el.textContent;
}

function note(text) {
  return h("p", { class: "note" }, text);
}

// -- the API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(url, body) {
  const init = { headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = CSRF;
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url, init);
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (resp.status === 401) signedOut();
  if (!resp.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(resp.status, error.code || "http_" + resp.status, error.message || resp.statusText);
  }
  return data;
}

const api = (path, body) => request("/api/v1" + path, body);

// A feature the daemon may not have: null when it does not (asked only when it does).
async function optional(path) {
  return FEATURES.has(path.slice(1)) ? api(path) : null;
}

// -- routing ------------------------------------------------------------------------------------

const views = { overview, jobs, search, rules, library, settings };
let current = { name: "", refresh: null, onEvent: null };

async function route() {
  const hash = location.hash.slice(1);
  // Another anchor (the skip link's #main) keeps the view shown; on a fresh page, the overview.
  const name = views[hash] ? hash : current.name ? null : "overview";
  if (!name) return;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === "#" + name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = { name, refresh: null, onEvent: null };
  current = view;
  document.title = name[0].toUpperCase() + name.slice(1) + " · pooldaemon";
  try {
    await views[name](view);
  } catch (err) {
    mount(view, h("h1", {}, document.title), h("p", { class: "error", role: "alert" }, err.message));
  }
}

// Show a view's content, unless the user has moved on to another view since it started loading.
function mount(view, ...nodes) {
  if (view !== current) return;
  main.replaceChildren(...nodes);
  performance.mark("view:" + view.name); // when the view had its data (tests/benchmarks/bench_web.py)
}

// -- overview -----------------------------------------------------------------------------------

async function overview(view) {
  const render = async () => {
    const status = await api("/status");
    const counts = status.jobs || {};
    const active = ["resolving", "downloading", "verifying"].reduce((n, s) => n + (counts[s] || 0), 0);
    const card = (value, label) => h("div", { class: "card" }, h("b", {}, value), h("span", {}, label));
    const parts = [
      h("h1", {}, "Overview"),
      h("div", { class: "cards" },
        card(size(status.rate_bps) + "/s", "download rate"),
        card(active, "downloading"),
        card(counts.queued || 0, "queued"),
        card(counts.done || 0, "done"),
        card(counts.failed || 0, "failed")),
      h("p", { class: "actions" },
        status.paused
          ? button("Resume all downloads", () => post("/resume", "Downloads resumed"))
          : button("Pause all downloads", () => post("/pause", "Downloads paused"), { class: "quiet" }),
        h("span", { class: "muted" }, "pooldaemon " + status.version)),
      h("h2", {}, "Pools"),
      status.pools.length === 0
        ? note("No pools are configured yet: add one to the config file and restart pooldaemon.")
        : table(["Pool", "Catalog synced", "Queue synced", "Problem", ""], status.pools.map(poolRow)),
    ];
    const held = holdText(status.schedule, status.gig);
    if (held) parts.splice(3, 0, h("p", { id: "downloads-held" }, held));
    if (status.library) parts.push(h("h2", {}, "Library"), h("p", { id: "library-line" }, libraryLine(status.library)));
    mount(view, ...parts);
  };
  view.refresh = debounce(render);
  view.onEvent = (event) => {
    if (/^(job\.state|sync|pool\.|downloader\.)/.test(event.type)) view.refresh();
  };
  await render();
}

// What the schedule window and gig mode do to downloads now (docs/interface.md §10), or "".
function holdText(schedule, gig) {
  const parts = [];
  if (schedule && schedule.paused) parts.push("Downloads held" + (schedule.reason ? ": " + schedule.reason : ""));
  else if (schedule && schedule.limit_bps) {
    parts.push(`Downloads limited to ${size(schedule.limit_bps)}/s` + (schedule.reason ? ": " + schedule.reason : ""));
  }
  if (schedule && schedule.window) {
    parts.push("schedule " + schedule.window + (schedule.next_change ? ` until ${new Date(schedule.next_change).toLocaleString()}` : ""));
  }
  if (gig) parts.push(`gig mode: ${gig.app} is running (${gig.action})`);
  else if (schedule) parts.push("no DJ app running");
  if (schedule && !schedule.window) parts.unshift("No schedule window in force");
  return parts.join(" · ");
}

function libraryLine(library) {
  const counts = library.states || {};
  const shown = LIBRARY_STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
  const audit = library.last_audit;
  return (shown.length ? shown.join(", ") : "No files yet") +
    (audit ? ` · last audit ${when(audit.finished)}: ${audit.checked} checked, ${audit.lost} lost` : "");
}

function poolRow(pool) {
  const problem = pool.blocked_reason || pool.last_error;
  return h("tr", {},
    cell("Pool", h("strong", {}, pool.name), " ", h("span", { class: "muted" }, pool.type + (pool.enabled ? "" : " (disabled)"))),
    cell("Catalog synced", when(pool.last_catalog_sync)),
    cell("Queue synced", when(pool.last_queue_sync)),
    cell("Problem", problem ? h("span", { class: "error" }, problem) : h("span", { class: "muted" }, "none")),
    cell("", pool.enabled ? button("Sync now", (e) => syncPool(pool.name, e.target), { class: "quiet" }) : ""));
}

async function syncPool(name, btn) {
  btn.disabled = true;
  btn.textContent = "Syncing…";
  try {
    const r = await api(`/pools/${encodeURIComponent(name)}/sync`, { full: false });
    toast(`${name}: ${r.added} added, ${r.updated} updated, ${r.removed} removed, ${r.queue_new} new in the queue`);
  } catch (err) {
    toast(`${name}: ${err.message}`);
  } finally {
    btn.disabled = false;
    btn.textContent = "Sync now";
  }
}

async function post(path, done) {
  try {
    await api(path, {});
    toast(done);
    if (current.refresh) current.refresh();
  } catch (err) {
    toast(err.message);
  }
}

function debounce(fn, ms = 300) {
  let timer = 0;
  return () => { clearTimeout(timer); timer = setTimeout(() => fn().catch((err) => toast(err.message)), ms); };
}

// -- jobs ---------------------------------------------------------------------------------------

async function jobs(view) {
  const body = h("tbody", {});
  const rows = new Map();
  const upsert = (job) => {
    const row = jobRow(job);
    const old = rows.get(job.id);
    if (old) {
      const focused = old.contains(document.activeElement) && document.activeElement.dataset.action;
      old.replaceWith(row);
      // Keep the keyboard where it was: on the same action, else on the row's first button.
      if (focused) (row.querySelector(`[data-action="${focused}"]`) || row.querySelector("button") || main).focus();
    } else {
      body.prepend(row);
    }
    rows.set(job.id, row);
    empty.hidden = rows.size > 0;
  };
  const empty = note("No downloads yet. Find tracks under Search, or queue them at the pool's website.");
  const load = async () => {
    const data = await api("/jobs");
    rows.clear();
    body.replaceChildren();
    for (const job of data.items.slice(0, MAX_ROWS).reverse()) upsert(job);
    empty.hidden = rows.size > 0;
  };
  mount(view,
    h("h1", {}, "Jobs"),
    h("p", { class: "actions" },
      button("Pause all", () => post("/pause", "Downloads paused"), { class: "quiet" }),
      button("Resume all", () => post("/resume", "Downloads resumed"), { class: "quiet" })),
    empty,
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ["Track", "Pool", "State", "Progress", ""].map((n) => h("th", { scope: "col" }, n)))),
      body));
  view.refresh = load;
  view.onEvent = (event) => {
    if (event.type === "job.state" && event.job) upsert(event.job);
    else if (event.type === "job.progress") progress(rows.get(event.job), event);
  };
  await load();
}

function jobRow(job) {
  const title = [job.artist, job.title].filter(Boolean).join(" – ") || job.ref;
  const done = job.state === "done";
  return h("tr", { "data-job": job.id, "data-state": job.state },
    cell("Track", h("div", {}, title), h("div", { class: "muted" }, job.ref),
      job.error ? h("div", { class: "error" }, job.error) : null,
      done && job.path ? h("div", { class: "muted" }, job.path) : null),
    cell("Pool", job.pool),
    cell("State", h("span", { class: "state " + job.state }, job.state)),
    cell("Progress",
      h("progress", { max: job.bytes_total || 1, value: done ? job.bytes_total || 1 : job.bytes_done || 0, "aria-label": "Progress of " + title }),
      h("div", { class: "progress-text" }, progressText(job.bytes_done, job.bytes_total, job.rate_bps, job.state))),
    cell("", h("div", { class: "actions" }, jobActions(job).map(([action, label]) =>
      button(label, () => jobAction(job.id, action), { "data-action": action, "aria-label": `${label} ${title}`, class: action === "cancel" ? "quiet" : null })))));
}

function jobActions(job) {
  if (UNFINISHED.has(job.state)) return [["pause", "Pause"], ["cancel", "Cancel"]];
  if (job.state === "paused") return [["resume", "Resume"], ["cancel", "Cancel"]];
  if (job.state === "failed" || job.state === "cancelled") return [["retry", "Retry"]];
  return [];
}

function progressText(done, total, rate, state) {
  const parts = [total ? `${size(done || 0)} of ${size(total)}` : size(done || 0)];
  if (state === "downloading" && rate) parts.push(size(rate) + "/s");
  return parts.join(" · ");
}

function progress(row, event) {
  if (!row) return;
  const bar = row.querySelector("progress");
  if (event.bytes_total) bar.max = event.bytes_total;
  bar.value = event.bytes_done;
  row.querySelector(".progress-text").textContent =
    progressText(event.bytes_done, event.bytes_total, event.rate_bps, "downloading");
}

async function jobAction(id, action) {
  try {
    await api(`/jobs/${id}/${action}`, {});
    // The event stream brings the new state; refresh in case it is down.
    if (live.classList.contains("off") && current.refresh) await current.refresh();
  } catch (err) {
    toast(err.message);
  }
}

// -- search -------------------------------------------------------------------------------------

async function search(view) {
  const pools = await api("/pools");
  const field = (label, name, props = {}) => h("label", {}, label, h("input", { name, ...props }));
  const choice = (label, name, options) => h("label", {}, label,
    h("select", { name }, options.map(([value, text]) => h("option", { value }, text))));
  const results = h("div", { id: "results", "aria-live": "polite" });
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); run(0); } },
    h("label", { class: "wide" }, "Artist, title or editor", h("input", { name: "q", type: "search", autocomplete: "off" })),
    choice("Pool", "pool", [["", "All pools"], ...pools.map((p) => [p.name, p.name])]),
    field("Genre", "genre", { placeholder: "House, Techno" }),
    field("BPM", "bpm", { placeholder: "120-128", inputmode: "numeric" }),
    field("Year", "year", { placeholder: "2024", inputmode: "numeric" }),
    field("Mix", "mix", { placeholder: "Extended" }),
    choice("Advisory", "advisory", [["", "Any"], ["clean", "Clean"], ["dirty", "Dirty"]]),
    choice("Media", "media", [["", "Any"], ["audio", "Audio"], ["video", "Video"]]),
    h("button", { type: "submit" }, "Search"));
  const limit = 50;
  async function run(offset) {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (String(value).trim()) params.set(key, String(value).trim());
    params.set("limit", limit);
    params.set("offset", offset);
    results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    try {
      const data = await api("/catalog?" + params);
      const more = offset + data.items.length < data.total;
      results.replaceChildren(
        h("p", { class: "muted" }, `${data.total} track${data.total === 1 ? "" : "s"}`),
        data.items.length ? table(["Track", "Genre", "BPM", "Year", "Pool", ""], data.items.map(trackRow)) : "",
        h("p", { class: "actions" },
          offset > 0 ? button("Previous", () => run(Math.max(0, offset - limit)), { class: "quiet" }) : "",
          more ? button("Next", () => run(offset + limit), { class: "quiet" }) : ""));
    } catch (err) {
      results.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
    }
  }
  mount(view, h("h1", {}, "Search"), form, results);
  form.elements.q.focus();
}

function trackRow(track) {
  const title = track.title + (track.mix ? ` (${track.mix})` : "");
  return h("tr", { "data-ref": track.ref },
    cell("Track", h("div", {}, h("strong", {}, track.artist || "?"), " – ", title),
      track.editor ? h("div", { class: "muted" }, track.editor) : null),
    cell("Genre", track.genre || "—"),
    cell("BPM", track.bpm ?? "—"),
    cell("Year", track.year ?? "—"),
    cell("Pool", track.pool),
    cell("", button(track.downloaded ? "Downloaded ✓" : "Download", (e) => download(track, e.target),
      { "data-action": "download", "aria-label": `Download ${track.artist} – ${title}` })));
}

async function download(track, btn) {
  btn.disabled = true;
  try {
    const answer = await api("/jobs", { refs: [track.ref] });
    if (answer.accepted.length) {
      btn.textContent = "Queued";
      toast(`${track.title}: queued (job ${answer.accepted[0].job})`);
    } else {
      btn.disabled = false;
      toast(`${track.title}: ${answer.rejected[0].reason}`);
    }
  } catch (err) {
    btn.disabled = false;
    toast(err.message);
  }
}

// -- rules --------------------------------------------------------------------------------------

async function rules(view) {
  const data = await optional("/rules");
  const items = (data && data.items) || [];
  if (items.length === 0) {
    mount(view, h("h1", {}, "Rules"), note("No rules configured."));
    return;
  }
  const list = h("div", { id: "rules-list" });
  // Preview and backfill of one rule, below the list; a refresh of the counts leaves it alone.
  const detail = h("section", { id: "rule-detail", "aria-live": "polite" });
  const render = (answer) => {
    redraw(list, table(["Rule", "Matched", "Queued", "Skipped", "Waiting", "Last match", ""],
      answer.items.map((rule) => ruleRow(rule, detail, load))));
  };
  const load = async () => render(await api("/rules"));
  render(data);
  mount(view, h("h1", {}, "Rules"),
    h("p", { class: "muted" }, "A rule downloads the matching tracks that enter a pool's catalog after it " +
      "first appeared. Counts are since then. Edit rules in the config file and restart pooldaemon."),
    list, detail);
  view.refresh = debounce(load);
  view.onEvent = (event) => { if (/^(sync|job\.state)/.test(event.type)) view.refresh(); };
}

function ruleRow(rule, detail, reload) {
  const name = rule.name;
  const num = (label, value) => h("td", { "data-label": label, class: "num" }, String(value ?? 0));
  return h("tr", { "data-rule": name },
    cell("Rule", h("strong", {}, name), rule.enabled ? "" : h("span", { class: "muted" }, " (disabled)")),
    num("Matched", rule.matched), num("Queued", rule.queued), num("Skipped", rule.skipped),
    num("Waiting", rule.waiting),
    cell("Last match", rule.last_match ? new Date(rule.last_match).toLocaleString() : "never"),
    cell("", h("div", { class: "actions" },
      button("Preview", () => rulePreview(name, detail, 0),
        { "data-action": "preview", "aria-label": "Preview " + name, class: "quiet" }),
      button("Backfill…", () => ruleBackfill(name, rule.enabled, detail, reload),
        { "data-action": "backfill", "aria-label": "Backfill " + name, class: "quiet" }))));
}

async function rulePreview(name, detail, offset) {
  const limit = 25;
  const heading = h("h2", { tabindex: "-1" }, "Preview: " + name);
  detail.replaceChildren(heading, h("p", { class: "muted" }, "Loading…"));
  heading.focus();
  try {
    const data = await api(`/rules/${encodeURIComponent(name)}/preview?limit=${limit}&offset=${offset}`);
    const more = offset + data.items.length < data.total;
    const rows = data.items.map((track) => {
      const title = track.title + (track.mix ? ` (${track.mix})` : "");
      return h("tr", { "data-ref": track.ref, "data-in-library": track.in_library ? "yes" : "no" },
        cell("Track", h("div", {}, h("strong", {}, track.artist || "?"), " – ", title),
          track.version ? h("div", { class: "muted" }, track.version) : null),
        cell("Genre", track.genre || "—"),
        cell("BPM", track.bpm ?? "—"),
        cell("Date", track.date || "—"),
        cell("Pool", track.pool),
        cell("Library", track.in_library
          ? h("span", { class: "state done" }, "in library")
          : h("span", { class: "muted" }, "not yet")));
    });
    detail.replaceChildren(heading,
      h("p", { class: "muted" }, `${data.total} track${data.total === 1 ? "" : "s"} in the mirror match this ` +
        "rule: what a backfill would take (tracks in the library are skipped). Nothing is downloaded."),
      rows.length ? table(["Track", "Genre", "BPM", "Date", "Pool", "Library"], rows) : "",
      h("p", { class: "actions" },
        offset > 0 ? button("Previous", () => rulePreview(name, detail, Math.max(0, offset - limit)), { class: "quiet" }) : "",
        more ? button("Next", () => rulePreview(name, detail, offset + limit), { class: "quiet" }) : ""));
  } catch (err) {
    detail.replaceChildren(heading, h("p", { class: "error", role: "alert" }, err.message));
  }
  heading.focus(); // moved in the DOM again: focus it where it now is
}

// A backfill takes the back catalog: it is asked for, then confirmed, never started by one click.
function ruleBackfill(name, enabled, detail, reload) {
  const heading = h("h2", { tabindex: "-1" }, "Backfill: " + name);
  const answer = h("p", { role: "status" });
  const since = h("input", { name: "since", type: "date" });
  const confirm = h("button", { type: "submit", "data-action": "confirm-backfill" }, "Yes, download them");
  const cancel = button("Cancel", () => detail.replaceChildren(), { class: "quiet", "data-action": "cancel-backfill" });
  const form = h("form", { class: "confirm", onsubmit: async (e) => {
    e.preventDefault();
    confirm.disabled = true;
    since.disabled = true;
    answer.textContent = "Queueing…";
    try {
      const body = { backfill: true };
      if (since.value) body.since = since.value;
      const r = await api(`/rules/${encodeURIComponent(name)}/run`, body);
      answer.className = "";
      answer.textContent = `${r.queued} queued, ${r.skipped} skipped (already in the library or ` +
        "waiting for the rule's daily limit). The queued ones are under Jobs.";
      answer.dataset.queued = r.queued;
      cancel.textContent = "Close";
      reload().catch((err) => toast(err.message));
    } catch (err) {
      answer.className = "error";
      answer.textContent = err.message;
      confirm.disabled = false;
      since.disabled = false;
    }
  } },
  h("p", {}, "This downloads every track already in the mirror that the rule matches, not only new " +
    "ones. Use Preview first to see what that is."),
  h("label", {}, "Only tracks dated on or after (optional)", since),
  h("p", { class: "actions" }, confirm, cancel),
  answer);
  form.addEventListener("keydown", (e) => { if (e.key === "Escape") detail.replaceChildren(); });
  if (!enabled) confirm.disabled = true;
  detail.replaceChildren(heading, enabled ? form
    : note("This rule is disabled in the config (enabled = false): it takes nothing."));
  heading.focus();
}

// -- library ------------------------------------------------------------------------------------

const LIBRARY_STATES = ["downloaded", "adopted", "deleted", "lost", "failed"];

async function library(view) {
  if (!FEATURES.has("library")) {
    mount(view, h("h1", {}, "Library"), note("No library data yet."));
    return;
  }
  const pools = await api("/pools");
  const summary = h("div", { id: "library-summary" });
  const answer = h("p", { id: "library-answer", role: "status" });
  const list = h("div", { id: "library-list", "aria-live": "polite" });
  const dupes = h("div", { id: "library-duplicates" });
  const limit = 50;
  let offset = 0;
  const choice = (label, name, options) => h("label", {}, label,
    h("select", { name }, options.map(([value, text]) => h("option", { value }, text))));
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); offset = 0; loadList(); } },
    h("label", { class: "wide" }, "Path or song", h("input", { name: "q", type: "search", autocomplete: "off" })),
    choice("State", "state", [["", "Any state"], ...LIBRARY_STATES.map((s) => [s, s])]),
    choice("Pool", "pool", [["", "All pools"], ...pools.map((p) => [p.name, p.name])]),
    h("button", { type: "submit" }, "Show"));

  const loadSummary = async () => {
    const state = await api("/library/audit");
    const counts = state.states || {};
    const card = (value, label) => h("div", { class: "card", "data-state": label }, h("b", {}, value), h("span", {}, label));
    const audit = state.last_audit;
    summary.replaceChildren(
      h("div", { class: "cards states" }, LIBRARY_STATES.map((s) => card(counts[s] || 0, s))),
      h("p", { class: "muted", id: "last-audit" }, audit
        ? `Last ${audit.full ? "full" : "quick"} audit ${when(audit.finished)}: ${auditText(audit)}.`
        : "No audit since pooldaemon started."));
  };
  const loadList = async () => {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (String(value).trim()) params.set(key, String(value).trim());
    params.set("limit", limit);
    params.set("offset", offset);
    const data = await api("/library?" + params);
    const more = offset + data.items.length < data.total;
    redraw(list,
      h("p", { class: "muted" }, `${data.total} file${data.total === 1 ? "" : "s"}`),
      data.items.length ? table(["File", "Song", "State", "Size", "Pool", "Checked"], data.items.map(entryRow)) : "",
      h("p", { class: "actions" },
        offset > 0 ? button("Previous", () => { offset = Math.max(0, offset - limit); loadList().catch(fail); }, { class: "quiet" }) : "",
        more ? button("Next", () => { offset += limit; loadList().catch(fail); }, { class: "quiet" }) : ""));
  };
  const fail = (err) => list.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
  const loadDupes = async () => {
    const groups = (await api("/library/duplicates")).items;
    dupes.replaceChildren(groups.length === 0
      ? h("p", { class: "muted" }, "None: every song and version is held once.")
      : table(["Song", "Version", "Files"], groups.map((group) => h("tr", {},
        cell("Song", group.song),
        cell("Version", group.version || "—"),
        cell("Files", group.items.map((entry) => h("div", {}, entry.path, " ",
          h("span", { class: "muted" }, entry.pool))))))));
  };
  const load = () => Promise.all([loadSummary(), loadList(), loadDupes()]);

  // Audit and heal answer in place; then what they changed is shown.
  const act = (label, path, body, describe) => button(label, async (e) => {
    const btn = e.target;
    btn.disabled = true;
    answer.className = "";
    answer.textContent = label + "…";
    try {
      const r = await api(path, body);
      answer.textContent = describe(r);
      await load();
    } catch (err) {
      answer.className = "error";
      answer.textContent = err.message;
    } finally {
      btn.disabled = false;
    }
  }, { "data-action": path.split("/").pop() + (body && body.full ? "-full" : ""), class: "quiet" });

  mount(view, h("h1", {}, "Library"), summary,
    h("p", { class: "actions" },
      act("Audit now", "/library/audit", { full: false }, (r) => "Audit: " + auditText(r) + "."),
      act("Full audit", "/library/audit", { full: true }, (r) => "Full audit: " + auditText(r) + "."),
      act("Heal", "/library/heal", {}, healText)),
    answer,
    h("h2", {}, "Files"), form, list,
    h("h2", {}, "Duplicates"), dupes);
  view.refresh = debounce(load);
  view.onEvent = (event) => { if (/^(job\.state|library\.)/.test(event.type)) view.refresh(); };
  await load();
}

function auditText(r) {
  return `${r.checked} checked, ${r.ok} ok, ${r.deleted} deleted, ${r.lost} lost`;
}

function healText(r) {
  const skipped = r.skipped || [];
  const text = `Heal: ${r.requested.length} download${r.requested.length === 1 ? "" : "s"} requested, ` +
    `${skipped.length} skipped.`;
  return skipped.length ? text + " " + skipped.map((s) => `${s.path}: ${s.reason}`).join("; ") : text;
}

function entryRow(entry) {
  const cut = entry.path.lastIndexOf("/");
  const numeric = (label, text) => h("td", { "data-label": label, class: "num" }, text);
  return h("tr", { "data-path": entry.path, "data-state": entry.state },
    cell("File", h("div", {}, h("strong", { class: "path" }, entry.path.slice(cut + 1))),
      h("div", { class: "muted path", title: entry.path }, "in " + (entry.path.slice(0, cut) || "/"))),
    cell("Song", entry.song || "—", entry.version ? h("div", { class: "muted" }, entry.version) : null),
    cell("State", h("span", { class: "state " + entry.state }, entry.state)),
    numeric("Size", size(entry.size_bytes)),
    cell("Pool", entry.pool || "—"),
    numeric("Checked", entry.checked ? when(entry.checked) : "not yet"));
}

// -- settings -----------------------------------------------------------------------------------

async function settings(view) {
  const data = await api("/settings");
  mount(view, h("h1", {}, "Settings"),
    h("p", { class: "muted" }, "Read only, secrets masked, as ", h("code", {}, "pooldaemon check-config"),
      " shows them. From " + (data.path || "the defaults (no config file)") +
      "; edit that file and restart pooldaemon to change them."),
    h("pre", { tabindex: "0", "aria-label": "Effective settings" }, h("code", {}, data.toml)));
}

// -- the event stream and the session -------------------------------------------------------------

let source = null;

function setLive(on, text) {
  live.classList.toggle("on", on);
  live.classList.toggle("off", !on);
  live.textContent = text || (on ? "live" : "reconnecting…");
}

function connect() {
  source = new EventSource("/api/v1/events");
  source.onopen = () => setLive(true);
  source.onerror = () => {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) {
      // Refused outright (a 401, or too many tabs): a 401 signs the page out, else retry.
      source = null;
      api("/status").then(
        () => setTimeout(connect, 5000),
        (err) => { if (err.status !== 401) setTimeout(connect, 5000); });
    }
  };
  source.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event.type === "shutdown") setLive(false, "pooldaemon stopped");
    else if (["subscribed", "resync", "dropped"].includes(event.type)) {
      // A fresh stream or missed events: reload what the view shows.
      if (current.refresh) current.refresh();
    } else if (current.onEvent) current.onEvent(event);
  };
}

function signedOut() {
  if (source) source.close();
  source = null;
  setLive(false, "signed out");
  main.replaceChildren(h("h1", {}, "Signed out"),
    h("p", {}, "Your dashboard session ended. On this computer, run ", h("code", {}, "poolctl ui"), " to open it again."));
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await request("/logout", {}); } catch { /* signed out either way */ }
  signedOut();
});
window.addEventListener("hashchange", () => { route().then(() => main.focus()); });
route();
connect();
