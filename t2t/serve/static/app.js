// The t2t page: pick a model, decode inputs through /v1/generate, show the n-best and the attention.
"use strict";
const $ = (id) => document.getElementById(id);
let models = [];
let lastResults = [];

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function showCard(card) {
  const box = $("card");
  box.replaceChildren(text("h2", card.name));
  const rows = [["task", card.task], ["source", card.source], ["model", `${card.model.arch}, ${card.model.parameters.toLocaleString()} parameters`],
    ["tokenizer", `${card.tokenizer.name} (${card.tokenizer.source_vocab} / ${card.tokenizer.target_vocab})`],
    ["decoding", `beam ${card.decode.beam} by default (a request for more n-best widens it), length penalty ${card.decode.length_penalty}`],
    ["data", Object.entries(card.data).filter(([, v]) => v !== null && v !== "").map(([k, v]) => `${k}: ${v}`).join(", ")]];
  for (const [split, s] of Object.entries(card.scores || {})) {
    const figures = Object.entries(s.metrics).map(([k, m]) => `${k} ${Number(m.value).toFixed(2)}`).join(", ");
    rows.push([`${split} (${s.sentences})`, figures || "-"]);
    for (const [b, m] of Object.entries(s.baselines || {})) {
      rows.push([`${split}, baseline ${b}`, Object.entries(m).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(", ")]);
    }
  }
  const table = document.createElement("table");
  for (const [k, v] of rows) {
    const tr = document.createElement("tr");
    tr.append(text("th", k), text("td", String(v)));
    table.append(tr);
  }
  box.append(table);
  $("beam").placeholder = card.decode.beam;
}

async function loadModels() {
  const res = await fetch("/v1/models");
  const data = await res.json();
  models = data.models;
  const select = $("model");
  select.replaceChildren(...models.map((m) => { const o = text("option", `${m.name} (${m.task})`); o.value = m.name; return o; }));
  select.value = data.default;
  showCard(models.find((m) => m.name === data.default));
  $("status").textContent = `${models.length} model${models.length > 1 ? "s" : ""} loaded`;
}

function drawHeatmap(att, label) {
  const canvas = $("heatmap");
  const ctx = canvas.getContext("2d");
  const cell = 22, font = "12px system-ui, sans-serif";
  const shown = (t) => t.replace(/ /g, "\u2423");
  ctx.font = font;
  const left = 8 + Math.max(...att.target_tokens.map((t) => ctx.measureText(shown(t)).width));
  const top = 8 + Math.max(...att.source_tokens.map((t) => ctx.measureText(shown(t)).width));
  canvas.width = left + cell * att.source_tokens.length + 4;
  canvas.height = top + cell * att.target_tokens.length + 4;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = font;
  att.weights.forEach((row, i) => row.forEach((w, j) => {
    const v = Math.round(255 * (1 - Math.min(1, Math.max(0, w))));
    ctx.fillStyle = `rgb(${v}, ${Math.round(v * 0.9 + 25)}, 255)`;
    ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
  }));
  ctx.fillStyle = "#1d2330";
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  att.target_tokens.forEach((t, i) => ctx.fillText(shown(t), left - 4, top + i * cell + cell / 2));
  att.source_tokens.forEach((t, j) => {
    ctx.save();
    ctx.translate(left + j * cell + cell / 2, top - 4);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left";
    ctx.fillText(shown(t), 0, 0);
    ctx.restore();
  });
  $("attention-of").textContent = label;
  $("attention").hidden = false;
  canvas.dataset.drawn = String(att.weights.length * att.source_tokens.length);
}

function select(i) {
  document.querySelectorAll(".result").forEach((el, k) => el.classList.toggle("selected", k === i));
  const r = lastResults[i];
  if (r && r.output.attention) drawHeatmap(r.output.attention, `"${r.source}"`);
}

function clearResults(status) {
  lastResults = [];
  $("results").replaceChildren();
  $("attention").hidden = true;
  $("heatmap").dataset.drawn = "";
  $("status").textContent = status;
}

async function generate() {
  const inputs = $("inputs").value.split("\n").filter((l) => l.trim() !== "");
  $("error").textContent = "";
  if (!inputs.length) { $("error").textContent = "type at least one input"; return; }
  const body = { model: $("model").value, inputs, attention: true };
  const sampling = $("sampling").checked;
  const nbest = parseInt($("nbest").value, 10);
  const beam = parseInt($("beam").value, 10);
  if (sampling) body.sampling = true;
  if (!Number.isNaN(beam)) body.beam = beam;
  if (!sampling && !Number.isNaN(nbest)) body.nbest = nbest;
  $("submit").disabled = true;
  try {
    const res = await fetch("/v1/generate", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await res.json();
    if (!res.ok) {
      clearResults("the last request was refused");
      $("error").textContent = `${res.status}: ${data.error || res.statusText}`;
      return;
    }
    lastResults = data.outputs.map((output, i) => ({ source: inputs[i], output }));
    const box = $("results");
    box.replaceChildren(...lastResults.map((r, i) => {
      const div = document.createElement("div");
      div.className = "result";
      div.append(text("div", r.source, "source"), text("div", r.output.hypotheses[0].text, "output"));
      if (r.output.hypotheses.length > 1) {
        const ol = document.createElement("ol");
        for (const h of r.output.hypotheses) {
          const li = text("li", h.text, "hyp");
          li.append(text("span", h.score.toFixed(3), "score"));
          ol.append(li);
        }
        div.append(ol);
      }
      div.addEventListener("click", () => select(i));
      return div;
    }));
    select(0);
    const d = data.decode;
    const how = d.sampling ? "sampled" : `beam ${d.beam}${d.nbest > 1 ? `, ${d.nbest}-best` : ""}`;
    $("status").textContent = `decoded ${inputs.length} input${inputs.length > 1 ? "s" : ""} (${how}) in ${data.batch.decode_ms.toFixed(0)} ms (batch of ${data.batch.sentences})`;
  } catch (e) {
    clearResults("the last request failed");
    $("error").textContent = `request failed: ${e}`;
  } finally {
    $("submit").disabled = false;
  }
}

$("model").addEventListener("change", () => showCard(models.find((m) => m.name === $("model").value)));
$("submit").addEventListener("click", generate);
$("inputs").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(); });
loadModels().catch((e) => { $("status").textContent = `could not load models: ${e}`; });
