// The gateway's dashboard: asks /stats every second and redraws the two tables. Nothing is
// kept between updates (the minute of history is the gateway's), so the page does not grow
// however long it stays open.
"use strict";

const EVERY_MS = 1000;

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function ms(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(0)} ms`;
}

function routes(stats) {
  const body = document.createElement("tbody");
  body.id = "routes";
  for (const route of stats.routes) {
    const row = body.insertRow();
    row.dataset.route = route.route;
    cell(row, route.route, "text");
    cell(row, route.upstream, "text");
    cell(row, route.rps.toFixed(1), "rps");
    cell(row, ms(route.p50_ms), "p50");
    cell(row, ms(route.p99_ms), "p99");
    cell(row, String(route.client_errors));
    cell(row, String(route.server_errors), route.server_errors > 0 ? "bad" : "");
    cell(row, `${(route.error_rate * 100).toFixed(1)} %`, route.error_rate > 0 ? "bad" : "");
  }
  return body;
}

function upstreams(stats) {
  const body = document.createElement("tbody");
  body.id = "upstreams";
  for (const upstream of stats.upstreams) {
    for (const address of upstream.addresses) {
      const row = body.insertRow();
      row.className = address.up ? "up" : "down";
      row.dataset.address = address.address;
      cell(row, upstream.name, "text");
      cell(row, address.target, "text");
      cell(row, address.address, "text");
      cell(row, address.up ? "up" : address.healthy ? "ejected" : "down", "state");
      cell(row, String(address.in_flight));
      cell(row, String(address.requests));
    }
  }
  return body;
}

function show(stats) {
  document.getElementById("generation").textContent = String(stats.generation);
  document.getElementById("reloads").textContent =
    `${stats.reloads.succeeded} ok, ${stats.reloads.failed} failed`;
  document.getElementById("connections").textContent = String(stats.connections);
  document.getElementById("window").textContent =
    `over the last ${Math.round(stats.window_seconds)} s`;
  document.getElementById("routes").replaceWith(routes(stats));
  document.getElementById("upstreams").replaceWith(upstreams(stats));
  document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  document.getElementById("error").hidden = true;
}

async function update() {
  try {
    const response = await fetch("/stats", { cache: "no-store" });
    if (!response.ok) throw new Error(`/stats answered ${response.status}`);
    show(await response.json());
  } catch (err) {
    const error = document.getElementById("error");
    error.textContent = `No figures: ${err.message}. Retrying…`;
    error.hidden = false;
  } finally {
    setTimeout(update, EVERY_MS);
  }
}

update();
