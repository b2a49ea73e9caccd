// The forecast page: replays the demo series over /ws/forecast (a record every
// 1000 / speed ms) and draws the series, the forecasts and the running MAE.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token");
const speed = Number(params.get("speed") || 20);  // rows per second
const WINDOW = 240;  // rows shown
const rows = [];  // {row, y, forecast, naive, mae, naive_mae}
let horizon = 6;

function wsUrl(period) {
  const q = new URLSearchParams({ period: String(period) });
  if (token) q.set("token", token);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/forecast?${q}`;
}

function line(g, pts, colour, dash) {
  g.strokeStyle = colour;
  g.setLineDash(dash || []);
  g.lineWidth = 1.6;
  g.beginPath();
  let pen = false;
  for (const [x, y] of pts) {
    if (y === null || !isFinite(y)) { pen = false; continue; }
    if (pen) g.lineTo(x, y); else g.moveTo(x, y);
    pen = true;
  }
  g.stroke();
  g.setLineDash([]);
}

function draw() {
  const c = $("chart"), g = c.getContext("2d"), w = c.width, h = c.height;
  g.clearRect(0, 0, w, h);
  if (!rows.length) return;
  const last = rows[rows.length - 1].row, first = last - WINDOW + 1;
  const shown = rows.filter((r) => r.row >= first - horizon);
  const vals = shown.flatMap((r) => (r.row >= first ? [r.y, r.forecast] : [r.forecast]));
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = 0.08 * (hi - lo);
  lo -= pad; hi += pad;
  const X = (row) => ((row - first) / (WINDOW + horizon)) * w;
  const Y = (v) => h - ((v - lo) / (hi - lo)) * h;
  g.fillStyle = "#8a93a6";
  g.font = "11px system-ui";
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    g.fillText(v.toFixed(1), 4, Y(v) - 2);
    g.fillStyle = "#202634";
    g.fillRect(0, Y(v), w, 1);
    g.fillStyle = "#8a93a6";
  }
  line(g, shown.map((r) => [X(r.row + horizon), r.naive]), "#8a93a6", [4, 4]);
  line(g, shown.map((r) => [X(r.row), r.y]), "#e6e9ef");
  line(g, shown.map((r) => [X(r.row + horizon), r.forecast]), "#4cc3ff");
  g.fillStyle = "#4cc3ff";
  g.fillRect(X(last), 0, 1, h);  // now: forecasts to the right are still ahead
  drawErrors();
}

function drawErrors() {
  const c = $("errs"), g = c.getContext("2d"), w = c.width, h = c.height;
  g.clearRect(0, 0, w, h);
  const scored = rows.filter((r) => r.scored > 0);
  if (!scored.length) return;
  const hi = Math.max(...scored.map((r) => Math.max(r.mae, r.naive_mae))) * 1.1 || 1;
  const n = rows[rows.length - 1].row + 1;
  const X = (row) => (row / n) * w, Y = (v) => h - (v / hi) * h;
  line(g, scored.map((r) => [X(r.row), r.naive_mae]), "#8a93a6", [4, 4]);
  line(g, scored.map((r) => [X(r.row), r.mae]), "#4cc3ff");
}

function onMessage(ev) {
  const m = JSON.parse(ev.data);
  if (m.type === "forecast") {
    rows.push(m);
    if (rows.length > 4 * WINDOW) rows.splice(0, rows.length - 2 * WINDOW);
    $("mae").textContent = m.mae.toFixed(3);
    $("naive").textContent = m.naive_mae.toFixed(3);
    $("ratio").textContent = m.naive_mae > 0 ? (m.mae / m.naive_mae).toFixed(3) : "–";
    $("scored").textContent = String(m.scored);
    document.body.dataset.rows = String(m.row + 1);
  } else if (m.type === "hello") {
    horizon = m.horizon;
    $("h").textContent = String(horizon);
  } else if (m.type === "error") {
    $("status").textContent = `server: ${m.error}`;
    $("status").className = "err";
  }
}

async function main() {
  const demo = await (await fetch("/forecast/demo.json")).json();
  $("title").textContent = `${demo.name} (${demo.unit}), one reading per hour, replayed at ${speed} rows/s`;
  const ws = new WebSocket(wsUrl(demo.period_s));
  ws.onmessage = onMessage;
  ws.onclose = (ev) => { $("status").textContent = `disconnected (${ev.code})`; };
  ws.onopen = () => {
    $("status").textContent = "streaming: every row is forecast, then learned from when its target arrives";
    let i = 0;
    const timer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) { clearInterval(timer); return; }
      if (i >= demo.values.length) { i = 0; }  // loop the series
      ws.send(JSON.stringify({ y: demo.values[i] }));
      i += 1;
    }, 1000 / speed);
  };
  const frame = () => { draw(); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
}
main();
