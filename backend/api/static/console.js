// YoopRL console: the little script behind the server-rendered pages.
// Untrusted text is only ever written with textContent; the console token lives in
// sessionStorage and travels in the Authorization header of POSTs, never in a URL.
"use strict";

const TOKEN_KEY = "yooprl-console-token";

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token()},
    body: JSON.stringify(body || {}),
    credentials: "omit",
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = {detail: response.statusText}; }
  return {status: response.status, data: data};
}

function setText(el, text) { if (el) { el.textContent = text == null ? "" : String(text); } }

function describe(result) {
  const d = result.data || {};
  if (d.detail) { return "error " + result.status + ": " + (typeof d.detail === "string" ? d.detail : JSON.stringify(d.detail)); }
  return "";
}

function setupToken() {
  const input = document.getElementById("token");
  const state = document.getElementById("token-state");
  if (!input) { return; }
  const show = () => setText(state, token() ? "token set for this tab" : "no token: controls will be refused");
  document.getElementById("token-save").addEventListener("click", () => {
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    show();
  });
  show();
}

// ---- Configure ----------------------------------------------------------------------

function showVariant(select) {
  const union = select.dataset.variantSelect;
  document.querySelectorAll("[data-variant-of]").forEach((div) => {
    if (div.dataset.variantOf !== union) { return; }
    const active = div.dataset.variant === select.value;
    div.hidden = !active;
    div.querySelectorAll("[data-path]").forEach((el) => { el.disabled = !active; });
  });
}

function formValues() {
  const values = {};
  document.querySelectorAll("#config-form [data-path]").forEach((el) => {
    if (el.disabled) { return; }
    values[el.dataset.path] = el.type === "checkbox" ? (el.checked ? "true" : "false") : el.value;
  });
  return values;
}

function clearErrors() {
  document.querySelectorAll("[data-error-for]").forEach((el) => setText(el, ""));
  document.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
}

function showErrors(errors) {
  (errors || []).forEach((err) => {
    let target = null;
    document.querySelectorAll("[data-error-for]").forEach((el) => {
      if (el.dataset.errorFor === err.field) { target = el; }
    });
    if (!target) { target = document.getElementById("form-errors"); }
    const prefix = target.textContent ? target.textContent + "; " : "";
    setText(target, prefix + (target.id === "form-errors" && err.field ? err.field + ": " : "") + err.message);
    document.querySelectorAll("[data-path]").forEach((el) => {
      if (el.dataset.path === err.field) { el.classList.add("invalid"); }
    });
  });
}

function setupConfigure() {
  document.querySelectorAll("[data-variant-select]").forEach((select) => {
    select.addEventListener("change", () => showVariant(select));
    showVariant(select);
  });
  const status = document.getElementById("config-status");
  const handle = (result, saving) => {
    clearErrors();
    const d = result.data || {};
    if (d.ok) {
      setText(status, saving ? "saved " + d.saved : "valid");
      setText(document.getElementById("resolved"), d.resolved);
      if (saving) { setText(document.getElementById("saved-yaml"), d.yaml); }
    } else {
      setText(status, d.errors ? d.errors.length + " error(s)" : describe(result));
      showErrors(d.errors);
    }
  };
  document.getElementById("validate").addEventListener("click", async () => {
    handle(await post("/api/config/validate", {values: formValues()}), false);
  });
  const save = document.getElementById("save");
  if (save) {
    save.addEventListener("click", async () => {
      const name = document.getElementById("config-name").value.trim();
      handle(await post("/api/config/save", {name: name, values: formValues()}), true);
    });
  }
}

// ---- Run ----------------------------------------------------------------------------

function fmtElapsed(s) { return s == null ? "" : Math.round(s) + " s"; }

async function pollRuns() {
  const rows = document.querySelectorAll("#runs-table tr[data-run]");
  let latest = null;
  for (const row of rows) {
    const name = row.dataset.run;
    if (!latest) { latest = name; }
    const status = row.querySelector(".run-status").textContent;
    if (!["running", "cancelling", ""].includes(status) && row.dataset.polled) { continue; }
    try {
      const r = await fetch("/api/runs/" + encodeURIComponent(name) + "/progress", {credentials: "omit"});
      if (!r.ok) { continue; }
      const p = await r.json();
      row.dataset.polled = "1";
      setText(row.querySelector(".run-status"), p.status);
      setText(row.querySelector(".run-jobs"), p.jobs_done + " / " + p.jobs_total);
      setText(row.querySelector(".run-current"), p.current_job || "");
      setText(row.querySelector(".run-elapsed"), fmtElapsed(p.elapsed_s));
      setText(row.querySelector(".run-modes"), (p.modes || []).join(", "));
      if (name === latest) { setText(document.getElementById("run-log"), p.log_tail); }
    } catch (e) { /* the next poll retries */ }
  }
}

function setupRuns() {
  const status = document.getElementById("run-status");
  const start = document.getElementById("run-start");
  if (start) {
    start.addEventListener("click", async () => {
      const v = (id) => document.getElementById(id).value.trim();
      const result = await post("/api/runs", {
        kind: v("run-kind"), config: v("run-config"), preset: v("run-preset"),
        encoders: v("run-encoders"), seed: v("run-seed"), data_dir: v("run-data-dir"), name: v("run-name"),
      });
      if (result.data.ok) {
        setText(status, "started " + result.data.name);
        setTimeout(() => window.location.reload(), 300);
      } else {
        setText(status, describe(result));
      }
    });
  }
  document.querySelectorAll("[data-run-action]").forEach((button) => {
    button.addEventListener("click", async () => {
      const name = button.dataset.runName;
      const result = await post("/api/runs/" + encodeURIComponent(name) + "/" + button.dataset.runAction, {});
      setText(status, result.data.ok ? button.dataset.runAction + ": " + name : describe(result));
      setTimeout(pollRuns, 300);
    });
  });
  pollRuns();
  setInterval(pollRuns, 1000);
}

// ---- Live ---------------------------------------------------------------------------

function setupLive() {
  const out = document.getElementById("live-result");
  document.querySelectorAll("[data-live-target]").forEach((button) => {
    button.addEventListener("click", async () => {
      const reason = document.getElementById("live-reason").value;
      const path = "/api/live/" + button.dataset.liveTarget + "/" + button.dataset.liveAction;
      const result = await post(path, {reason: reason});
      if (result.data.ok) {
        setText(out, button.dataset.liveTarget + " " + button.dataset.liveAction + ": done");
        setTimeout(() => window.location.reload(), 400);
      } else {
        setText(out, describe(result) || JSON.stringify(result.data.response || result.data));
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  const page = document.body.dataset.page;
  if (page === "configure") { setupConfigure(); }
  if (page === "runs" || page === "index") { setupRuns(); }
  if (page === "live") { setupLive(); }
});
