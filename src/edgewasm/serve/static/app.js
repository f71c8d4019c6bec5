// The page of `edgewasm serve`: pick a classifier, send a photo to /models/{m}/classify, show what came back.
"use strict";
const $ = (id) => document.getElementById(id);

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function loadModels() {
  try {
    const r = await fetch("/models");
    const data = await r.json();
    const select = $("model");
    select.innerHTML = "";
    const classifiers = data.models.filter((m) => m.task === "image-classification");
    for (const m of classifiers) {
      const o = document.createElement("option");
      o.value = m.name;
      o.textContent = m.description ? `${m.name} — ${m.description}` : m.name;
      select.appendChild(o);
    }
    select.disabled = classifiers.length === 0;
    if (!classifiers.length) showError("This server has no image-classification model.");
    $("server-state").textContent = data.ready ? "ready" : "starting…";
    $("server-state").className = "state " + (data.ready ? "ok" : "wait");
    if (!data.ready) setTimeout(loadModels, 500);
  } catch (e) {
    $("server-state").textContent = "unreachable";
    setTimeout(loadModels, 1000);
  }
}

function render(reply, model, ms) {
  $("label").textContent = reply.label;
  $("confidence").textContent = (100 * reply.confidence).toFixed(1) + "%";
  const bars = $("bars");
  bars.innerHTML = "";
  for (const c of reply.top_k || []) {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = (100 * c.confidence).toFixed(1) + "%";
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = (100 * c.confidence).toFixed(1) + "%";
    row.append(name, track, value);
    bars.appendChild(row);
  }
  const body = $("stages").querySelector("tbody");
  body.innerHTML = "";
  for (const [stage, v] of Object.entries(reply.stages_ms || {})) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.children[0].textContent = stage;
    tr.children[1].textContent = Number(v).toFixed(2);
    body.appendChild(tr);
  }
  $("meta").textContent =
    `${model} · model version ${reply.model_version} · in the guest ${Number(reply.latency_ms).toFixed(1)} ms · round trip ${ms.toFixed(1)} ms`;
  $("result").hidden = false;
}

async function classify(file) {
  showError("");
  const model = $("model").value;
  if (!model) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("result").classList.add("busy");
  const form = new FormData();
  form.append("image", file, file.name);
  const t0 = performance.now();
  try {
    const r = await fetch(`/models/${encodeURIComponent(model)}/classify?top_k=5`, { method: "POST", body: form });
    const reply = await r.json();
    if (!r.ok) {
      showError(`${r.status} ${reply.kind || ""}: ${reply.error}`);
      $("result").hidden = true;
      return;
    }
    render(reply, model, performance.now() - t0);
  } catch (e) {
    showError("request failed: " + e);
  } finally {
    $("result").classList.remove("busy");
  }
}

$("file").addEventListener("change", (e) => { if (e.target.files[0]) classify(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]);
});
loadModels();
