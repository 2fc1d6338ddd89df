// The emulator's dashboard: renders the JSON of /_emulator/api/ with DOM calls and textContent only.
"use strict";

const API = "api/";
const REFRESH_MS = 3000;

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function body(tableId) {
  const tbody = document.querySelector("#" + tableId + " tbody");
  tbody.replaceChildren();
  return tbody;
}

async function getJson(path) {
  const response = await fetch(API + path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.code + ": " + data.error.message : "HTTP " + response.status);
  return data;
}

function status(id, text, isError) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.className = isError ? "error" : "muted";
}

async function loadComponents() {
  try {
    const data = await getJson("components");
    document.getElementById("summary").textContent =
      "phase " + data.phase + " · backend " + data.backend + " · enclave runtime " + data.enclave_runtime +
      (data.api_url ? " · API " + data.api_url : "") + (data.error ? " · error: " + data.error : "");
    const tbody = body("components");
    for (const c of data.components) {
      const row = document.createElement("tr");
      row.dataset.component = c.name;
      cell(row, c.name);
      cell(row, c.healthy ? "healthy" : "unhealthy" + (c.detail ? " (" + c.detail + ")" : ""), c.healthy ? "ok" : "bad");
      cell(row, c.address);
      cell(row, c.pids.join(" "));
      cell(row, c.started_seconds === null ? "" : c.started_seconds.toFixed(2) + " s");
      tbody.appendChild(row);
    }
  } catch (error) {
    status("summary", String(error.message), true);
  }
}

async function loadPcrs() {
  try {
    const data = await getJson("pcrs");
    const tbody = body("pcrs");
    for (const r of data.rows) {
      const row = document.createElement("tr");
      row.dataset.pcr = r.name;
      cell(row, r.name);
      cell(row, r.measured === null ? "—" : r.measured, "hex");
      cell(row, r.policy.length ? r.policy.join(" | ") : "not pinned", r.policy.length ? "hex" : "muted");
      const verdict = r.matches === null ? "" : r.matches ? "match" : "MISMATCH";
      cell(row, verdict, r.matches === null ? "" : r.matches ? "ok" : "bad");
      tbody.appendChild(row);
    }
    status(
      "pcrs-summary",
      (data.enclave_id ? "enclave " + data.enclave_id + ": " : "") +
        (data.admitted_by ? "admitted by key policy statement " + data.admitted_by : "no decrypt statement admits this enclave: KMS refuses it") +
        (data.detail ? " (" + data.detail + ")" : ""),
      !data.admitted_by
    );
  } catch (error) {
    status("pcrs-summary", String(error.message), true);
  }
}

async function loadDecisions() {
  try {
    const data = await getJson("decisions?limit=50");
    const tbody = body("decisions");
    if (!data.available) {
      status("decisions-status", "decisions not available: " + data.detail, false);
      return;
    }
    status("decisions-status", data.decisions.length ? "newest first" : "no decisions yet", false);
    for (const d of data.decisions) {
      const row = document.createElement("tr");
      cell(row, d.at);
      cell(row, d.operation);
      cell(row, d.principal);
      cell(row, d.key_id);
      cell(row, d.allowed ? "allowed" : "denied", d.allowed ? "ok" : "bad");
      cell(row, d.reason);
      tbody.appendChild(row);
    }
  } catch (error) {
    status("decisions-status", String(error.message), true);
  }
}

function parseParams(text) {
  const params = {};
  for (const part of text.trim().split(/\s+/)) {
    if (!part) continue;
    const at = part.indexOf("=");
    if (at < 1) throw new Error("parameters are k=v pairs separated by spaces");
    params[part.slice(0, at)] = part.slice(at + 1);
  }
  return params;
}

let switching = false;

async function switchFault(name, on, paramsText) {
  switching = true;
  status("faults-status", (on ? "switching on " : "switching off ") + name + "…", false);
  try {
    const response = await fetch(API + "faults/" + encodeURIComponent(name), {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Emulator-Dashboard": "1" },
      body: JSON.stringify({ on: on, params: on ? parseParams(paramsText) : {} }),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error ? data.error.code + ": " + data.error.message : "HTTP " + response.status);
    status("faults-status", name + " is " + (on ? "on" : "off") + "; active: " + (data.active.join(", ") || "none"), false);
  } catch (error) {
    status("faults-status", name + ": " + String(error.message), true);
  } finally {
    switching = false;
    await loadFaults();
  }
}

async function loadFaults() {
  try {
    const data = await getJson("faults");
    const tbody = body("faults");
    for (const f of data.faults) {
      const row = document.createElement("tr");
      row.dataset.fault = f.name;
      const toggle = document.createElement("input");
      toggle.type = "checkbox";
      toggle.className = "switch";
      toggle.id = "fault-" + f.name;
      toggle.checked = f.active;
      toggle.title = f.one_shot ? "one-shot: happens once when switched on" : "on / off";
      const params = document.createElement("input");
      params.className = "params";
      params.value = Object.entries(f.params).map(([k, v]) => k + "=" + v).join(" ");
      params.placeholder = Object.keys(f.parameters).map((k) => k + "=").join(" ");
      params.title = Object.entries(f.parameters).map(([k, v]) => k + ": " + v).join("\n");
      toggle.addEventListener("change", () => switchFault(f.name, toggle.checked, params.value));
      const on = cell(row, "");
      on.appendChild(toggle);
      const nameCell = cell(row, f.name + (f.one_shot ? " (one-shot)" : ""));
      nameCell.title = f.injection;
      const paramsCell = cell(row, "");
      paramsCell.appendChild(params);
      const answers = document.createElement("ul");
      answers.className = "answers";
      for (const a of f.answers) {
        const item = document.createElement("li");
        item.textContent = a.route + " → " + a.status + (a.code ? " " + a.code : "");
        answers.appendChild(item);
      }
      cell(row, "").appendChild(answers);
      tbody.appendChild(row);
    }
  } catch (error) {
    status("faults-status", String(error.message), true);
  }
}

async function loadAudit(vaultId) {
  try {
    const data = await getJson("audit?vault_id=" + encodeURIComponent(vaultId));
    const tbody = body("audit");
    for (const e of data.entries) {
      const row = document.createElement("tr");
      cell(row, e.at);
      cell(row, e.event);
      cell(row, e.reason);
      cell(row, e.fields.join(", "));
      tbody.appendChild(row);
    }
    status("audit-status", data.entries.length + " record(s), newest first" + (data.truncated ? " (older ones not shown)" : ""), false);
  } catch (error) {
    body("audit");
    status("audit-status", String(error.message), true);
  }
}

// One round at a time: while the daemon is busy (a relaunch takes seconds), polls wait instead of piling up.
async function refresh() {
  const editing = document.activeElement && document.activeElement.classList.contains("params");
  await Promise.all([loadComponents(), loadDecisions(), loadPcrs(), switching || editing ? null : loadFaults()]);
  setTimeout(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit(document.getElementById("vault-id").value.trim());
  });
  refresh();
});
