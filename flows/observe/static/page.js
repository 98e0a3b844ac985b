// Fills the status page from /status. Every name and text goes in as textContent, never as
// markup, so a device, unit, sink or error text cannot inject HTML.
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = el("tr");
  for (const c of cells) tr.append(c instanceof Node ? c : el("td", c));
  return tr;
}

function num(n) { return el("td", n === null || n === undefined ? "-" : n, "n"); }

function age(s) {
  if (s === null || s === undefined) return "";
  return s < 60 ? s.toFixed(1) + " s" : s < 3600 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";
}

function shown(v) {
  if (v.text !== null && v.text !== undefined) {
    return typeof v.value === "number" ? v.text + " (" + v.value + ")" : v.text;
  }
  if (typeof v.value === "number") return Number.isInteger(v.value) ? String(v.value) : String(Number(v.value.toPrecision(6)));
  return String(v.value);
}

function bus(b) {
  const sec = el("section");
  sec.className = "bus";
  sec.dataset.bus = b.name;
  const h = el("h2", "bus " + b.name + " ");
  h.append(el("span", b.state, b.up ? "ok" : "bad"));
  sec.append(h);
  sec.append(el("p", "ticks " + (b.ticks ?? "-") + ", late ticks " + (b.late ?? "-") +
    ", reads " + (b.reads ?? "-") + ", failed reads " + (b.errors ?? "-"), "facts"));
  const t = el("table");
  t.append(row(["device", "unit id", "answering", "rows", "error rows", "last values", "last error"].map((x) => el("th", x))));
  for (const d of b.devices) {
    const vals = el("td", null, "values");
    for (const v of d.values) {
      const s = el("span");
      s.append(el("b", v.parameter), " = " + shown(v) + (v.unit ? " " + v.unit : "") + " ");
      s.append(el("span", age(v.age_s), "age"));
      vals.append(s);
    }
    const err = el("td", null, "error");
    if (d.last_error) {
      err.append(el("span", d.last_error), " ");
      err.append(el("span", age(d.last_error_age_s) + " ago", "age"));
    }
    const tr = row([el("td", d.name), num(d.address),
      el("td", d.answering ? "answering" : "not answering", d.answering ? "ok" : "bad"),
      num(d.rows), num(d.errors), vals, err]);
    tr.dataset.device = d.name;
    tr.className = d.answering ? "answering" : "silent";
    t.append(tr);
  }
  sec.append(t);
  return sec;
}

function render(s) {
  document.title = "bytewax-daq status: " + s.process;
  document.getElementById("process").textContent = s.process + ", config " + s.config;
  document.getElementById("facts").textContent = "started " + s.started_at.replace("T", " ").slice(0, 19) +
    " UTC, up " + age(s.uptime_s) + "; " + s.rate_hz + " ticks/s; workers " + s.workers.join(", ");
  const link = document.getElementById("link");
  link.textContent = "updated " + s.now.replace("T", " ").slice(0, 19) + " UTC, every " + s.refresh_s + " s";
  link.className = "";
  const buses = document.getElementById("buses");
  buses.replaceChildren(...(s.buses.length ? s.buses.map(bus) : [el("p", "no bus polled yet")]));
  const body = document.querySelector("#sinks tbody");
  body.replaceChildren(...s.sinks.map((k) => {
    const state = el("td", k.state, k.state === "writing" ? "ok" : k.state === "spooling" ? "warn" : "bad");
    return row([el("td", k.sink), num(k.worker), state, num(k.rows_written), num(k.rows_spooled),
      num(k.rows_spooled_total), num(k.retries), el("td", k.last_error || "", "error")]);
  }));
}

let refresh = 1;

async function poll() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    const s = await r.json();
    refresh = s.refresh_s;
    render(s);
  } catch (e) {
    const link = document.getElementById("link");
    link.textContent = "no answer from the flow's process (" + e + "); asking again";
    link.className = "stale";
  }
  setTimeout(poll, refresh * 1000);
}

poll();
