#!/usr/bin/env node
// Spoken digits from a WAV file with the exported streamrnn recogniser, in Node.js.
//
//   python -c "from streamrnn.apps.speech import DigitRecognizer, export_onnx; \
//              export_onnx(DigitRecognizer.load(), 'digits.onnx')"
//   node listen.js digits.onnx some.wav          # one JSON line per digit
//
// The graph (streamrnn.apps.speech.export_onnx) maps raw PCM to frame posteriors and
// energies; every piece of state (unframed samples, recurrent state) is an input
// `state_<name>` and an output `new_state_<name>`, carried here from call to call. The
// WAV is read 20 ms at a time, as from a microphone. The endpointer and the decoder (a few
// comparisons per frame) are ported from streamrnn/apps/speech/_endpoint.py and
// _decode.py; their settings come from the file's metadata.
'use strict';

const fs = require('fs');
const ort = require('onnxruntime-node');

// -- the metadata: ModelProto field 14 (metadata_props), read with a minimal protobuf scan
function readVarint(buf, pos) {
  let value = 0, shift = 0, byte;
  do {
    byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, pos];
}

function fields(buf, start, end, onField) {
  let pos = start;
  while (pos < end) {
    let tag;
    [tag, pos] = readVarint(buf, pos);
    const field = Math.floor(tag / 8), wire = tag & 7;
    if (wire === 0) { [, pos] = readVarint(buf, pos); continue; }
    if (wire === 1) { pos += 8; continue; }
    if (wire === 5) { pos += 4; continue; }
    if (wire !== 2) throw new Error(`unexpected protobuf wire type ${wire}`);
    let len;
    [len, pos] = readVarint(buf, pos);
    onField(field, pos, pos + len);
    pos += len;
  }
}

function metadata(bytes) {
  const meta = {};
  fields(bytes, 0, bytes.length, (field, start, end) => {
    if (field !== 14) return;
    let key = '', value = '';
    fields(bytes, start, end, (f, s, e) => {
      const text = bytes.toString('utf8', s, e);
      if (f === 1) key = text; else if (f === 2) value = text;
    });
    meta[key] = value;
  });
  if (meta.streamrnn_format !== '1' || !meta.kind) {
    throw new Error('not a streamrnn recogniser export (no streamrnn_format / kind metadata)');
  }
  for (const k of Object.keys(meta)) {
    if (k !== 'streamrnn_format' && k !== 'streamrnn_version') meta[k] = JSON.parse(meta[k]);
  }
  return meta;
}

// -- a 16-bit PCM mono WAV, as float32 samples in [-1, 1)
function readWav(path) {
  const b = fs.readFileSync(path);
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error(`${path} is not a RIFF/WAVE file`);
  }
  let pos = 12, rate = 0, channels = 0, bits = 0, data = null;
  while (pos + 8 <= b.length) {
    const id = b.toString('ascii', pos, pos + 4), size = b.readUInt32LE(pos + 4);
    if (id === 'fmt ') {
      channels = b.readUInt16LE(pos + 10);
      rate = b.readUInt32LE(pos + 12);
      bits = b.readUInt16LE(pos + 22);
    } else if (id === 'data') {
      data = b.subarray(pos + 8, pos + 8 + size);
    }
    pos += 8 + size + (size & 1);
  }
  if (channels !== 1 || bits !== 16 || !data) throw new Error(`${path}: 16-bit mono PCM only`);
  const out = new Float32Array(data.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = data.readInt16LE(2 * i) / 32768;
  return { rate, samples: out };
}

// -- the endpointer (apps/speech/_endpoint.py Endpointer): sliding-minimum noise floor
class Endpointer {
  constructor({ margin_db, min_db, floor_frames, init_db }) {
    Object.assign(this, { margin: margin_db, minDb: min_db, floorFrames: floor_frames,
                          initDb: init_db });
    this.window = [[-1, init_db]];
    this.frames = 0;
    this.lastVoiced = -1;
  }

  update(e) {
    const k = this.frames, w = this.window;
    const voiced = e > Math.max(w[0][1] + this.margin, this.minDb);
    while (w.length && w[w.length - 1][1] >= e) w.pop();
    w.push([k, e]);
    while (w[0][0] <= k - this.floorFrames) w.shift();
    if (k < this.floorFrames - 1 && w[0][1] > this.initDb) w.unshift([-1, this.initDb]);
    if (voiced) this.lastVoiced = k;
    this.frames = k + 1;
    return voiced;
  }
}

// -- the decoder (apps/speech/_decode.py FrameDecoder)
class FrameDecoder {
  constructor(cfg) {
    Object.assign(this, cfg);
    // a file exported before decay existed: the Python decoder's default (DECODER_DEFAULTS)
    if (this.decay === undefined) this.decay = 0.8;
    this.reset();
  }

  reset() {
    this.votes = new Float64Array(10);
    this.weight = 0.0; // the sum of the votes' weights (the frame count, for decay 1)
    this.count = 0;
    this.blankRun = 0;
    this.lo = Infinity;
    this.hi = -Infinity;
  }

  update(p, framesSinceVoice, e) {
    const blank = p.length - 1;
    if (p[blank] < 0.5) {
      for (let d = 0; d < blank; d++) this.votes[d] = this.votes[d] * this.decay + p[d];
      this.weight = this.weight * this.decay + 1.0;
      this.count += 1;
      this.blankRun = 0;
    } else if (this.count) {
      this.blankRun += 1;
    }
    if (this.count === 0) return null;
    this.lo = Math.min(this.lo, e);
    this.hi = Math.max(this.hi, e);
    if (this.blankRun < this.release_frames) return null;
    let d = 0;
    for (let i = 1; i < 10; i++) if (this.votes[i] > this.votes[d]) d = i;
    const ok = this.count >= this.min_frames && this.votes[d] / this.weight >= this.threshold &&
      this.hi - this.lo >= this.min_range_db && framesSinceVoice < this.voice_frames;
    this.reset();
    return ok ? d : null;
  }
}

async function main() {
  const [modelPath, wavPath] = process.argv.slice(2);
  if (!modelPath || !wavPath) {
    console.error('usage: node listen.js MODEL.onnx FILE.wav');
    process.exit(2);
  }
  const bytes = fs.readFileSync(modelPath);
  const meta = metadata(bytes);
  const wav = readWav(wavPath);
  if (wav.rate !== meta.sample_rate) {
    throw new Error(`${wavPath}: ${wav.rate} Hz, the model wants ${meta.sample_rate} Hz`);
  }
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1,
  });

  // The state of a new stream: every part's value from the metadata, for a batch of 1.
  let state = {};
  for (const [name, shape] of Object.entries(meta.state)) {
    const dims = shape.map((d) => (d === 'B' ? 1 : d));
    const values = [meta.initial_state[name]].flat(Infinity);
    const data = meta.state_dtypes[name] === 'int64'
      ? BigInt64Array.from(values, (v) => BigInt(v)) : Float32Array.from(values);
    state[`state_${name}`] = new ort.Tensor(meta.state_dtypes[name], data, dims);
  }

  const hop = meta.hop_length, rate = meta.sample_rate, lead = meta.lead_samples;
  const endpointer = new Endpointer(meta.endpointer);
  const decoder = new FrameDecoder(meta.decoder);
  let frame = 0; // frame k ends at stream sample k * hop + win - lead (the stream's lead of silence)
  let pending = new Float32Array(0); // < hop samples of a chunk that did not fill a hop
  const found = [];

  async function push(samples) {
    const all = new Float32Array(pending.length + samples.length);
    all.set(pending);
    all.set(samples, pending.length);
    const n = all.length - (all.length % hop);
    pending = all.slice(n);
    if (n === 0) return;
    const out = await session.run({ pcm: new ort.Tensor('float32', all.subarray(0, n), [1, n]),
                                    ...state });
    const next = {};
    for (const name of Object.keys(state)) next[name] = out[`new_${name}`];
    state = next;
    const post = out.posteriors.data, energy = out.energy_db.data, classes = out.posteriors.dims[2];
    for (let t = 0; t < n / hop; t++, frame++) {
      const e = energy[t];
      endpointer.update(e);
      const last = endpointer.lastVoiced;
      const since = last < 0 ? Infinity : frame - last;
      const digit = decoder.update(post.subarray(t * classes, (t + 1) * classes), since, e);
      if (digit !== null) {
        const time = (frame * hop + meta.win_length - lead) / rate;
        found.push({ digit, time_s: Math.round(time * 1e4) / 1e4,
                     latency_ms: Math.round(((frame - last) * hop / rate) * 1e4) / 10 });
        console.log(JSON.stringify(found[found.length - 1]));
      }
    }
  }

  const chunk = Math.round(0.02 * rate); // 20 ms
  for (let i = 0; i < wav.samples.length; i += chunk) await push(wav.samples.subarray(i, i + chunk));
  const flush = Math.round(meta.decoder.flush_ms * rate / 1000); // silence, as Python's flush
  for (let i = 0; i < flush; i += chunk) await push(new Float32Array(Math.min(chunk, flush - i)));
}

main().catch((err) => {
  console.error(`listen.js: error: ${err.message}`);
  process.exit(1);
});
