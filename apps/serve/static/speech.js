// The speech page: microphone -> AudioWorklet -> int16 PCM over a WebSocket; draws the
// log-mel frames and posteriors the server sends back and lists the recognised digits.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token");
let ctx = null, ws = null, source = null, node = null, stream = null;
let labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "blank"];
let lastMel = null;

function wsUrl(rate) {
  const q = new URLSearchParams({ rate: String(rate), format: "int16", spectrogram: "1" });
  if (token) q.set("token", token);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/speech?${q}`;
}

function status(text, bad) {
  $("status").textContent = text;
  $("status").className = bad ? "err" : "";
}

// --- drawing: both canvases scroll left by one column per frame -------------------
const COL = 2;  // pixels per frame
function scroll(canvas) {
  const g = canvas.getContext("2d");
  g.drawImage(canvas, -COL, 0);
  return g;
}
function heat(v) {  // 0..1 -> colour (dark blue, cyan, yellow)
  const r = Math.round(255 * Math.min(1, Math.max(0, 2 * v - 0.6)));
  const gr = Math.round(255 * Math.min(1, Math.max(0, 1.6 * v)));
  const b = Math.round(255 * Math.min(1, Math.max(0, 0.35 + 0.9 * v - 1.2 * v * v)));
  return `rgb(${r},${gr},${b})`;
}
function drawMel(frame) {
  const c = $("spec"), g = scroll(c), h = c.height, n = frame.length, x = c.width - COL;
  for (let i = 0; i < n; i++) {  // log power about -14 (silence) .. 4 (loud)
    g.fillStyle = heat((frame[i] + 14) / 18);
    const y0 = h - ((i + 1) * h) / n;
    g.fillRect(x, y0, COL, Math.ceil(h / n));
  }
}
function drawPost(p) {
  const c = $("post"), g = scroll(c), h = c.height, n = p.length, x = c.width - COL;
  for (let i = 0; i < n; i++) {
    g.fillStyle = i === n - 1 ? `rgba(138,147,166,${p[i]})` : heat(p[i]);
    g.fillRect(x, (i * h) / n, COL, Math.ceil(h / n));
  }
}
function labelPosteriors() {
  const c = $("post"), g = c.getContext("2d"), h = c.height / labels.length;
  g.fillStyle = "#0b0d12";
  g.fillRect(0, 0, 40, c.height);  // a fixed label column over the scrolling image
  g.fillStyle = "#8a93a6";
  g.font = "11px system-ui";
  labels.forEach((l, i) => g.fillText(l, 2, i * h + h * 0.75));
}

function addDigit(msg) {
  const box = $("digits");
  const el = document.createElement("div");
  el.className = "digit";
  el.innerHTML = `<b>${msg.digit}</b><small>${Math.round(msg.latency_ms)} ms · ${msg.time_s.toFixed(2)} s</small>`;
  box.appendChild(el);
  const seen = box.dataset.digits ? box.dataset.digits.split(" ") : [];
  seen.push(String(msg.digit));
  box.dataset.digits = seen.join(" ");
  box.dataset.count = String(seen.length);
}

function onMessage(ev) {
  const msg = JSON.parse(ev.data);
  if (msg.type === "frames") {
    (msg.mel || []).forEach(drawMel);
    msg.post.forEach(drawPost);
    if (msg.post.length) labelPosteriors();
    document.body.dataset.frames = String(msg.frame + msg.post.length);
  } else if (msg.type === "digit") {
    addDigit(msg);
  } else if (msg.type === "hello") {
    labels = msg.labels;
    status(`listening: ${msg.rate} Hz microphone, resampled to ${msg.model_rate} Hz on the server`);
  } else if (msg.type === "error") {
    status(`server: ${msg.error}`, true);
  }
}

async function start() {
  $("start").disabled = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false,
               channelCount: 1 } });
    ctx = new AudioContext();
    await ctx.audioWorklet.addModule("/static/speech-worklet.js");
    source = ctx.createMediaStreamSource(stream);
    node = new AudioWorkletNode(ctx, "chunk-sender");
    ws = new WebSocket(wsUrl(ctx.sampleRate));
    ws.binaryType = "arraybuffer";
    ws.onmessage = onMessage;
    ws.onclose = (ev) => { status(`disconnected (${ev.code} ${ev.reason})`, ev.code !== 1000); };
    node.port.onmessage = (ev) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      const x = ev.data, pcm = new Int16Array(x.length);
      for (let i = 0; i < x.length; i++) {
        const v = Math.max(-1, Math.min(1, x[i]));
        pcm[i] = v < 0 ? v * 32768 : v * 32767;
      }
      ws.send(pcm.buffer);
    };
    source.connect(node);
    $("stop").disabled = false;
  } catch (err) {
    status(`cannot start: ${err}`, true);
    $("start").disabled = false;
  }
}

function stop() {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: "flush" }));
    setTimeout(() => ws.close(1000, "done"), 300);
  }
  if (source) source.disconnect();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (ctx) ctx.close();
  $("stop").disabled = true;
  $("start").disabled = false;
  status("stopped");
}

$("start").onclick = start;
$("stop").onclick = stop;
labelPosteriors();
