// AudioWorklet: the microphone's float samples in 20 ms chunks, posted to the page.
class ChunkSender extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 50);  // 20 ms at the context's rate
    this.buf = new Float32Array(this.size);
    this.fill = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const x = input[0];  // first channel (mono)
      let i = 0;
      while (i < x.length) {
        const n = Math.min(x.length - i, this.size - this.fill);
        this.buf.set(x.subarray(i, i + n), this.fill);
        this.fill += n;
        i += n;
        if (this.fill === this.size) {
          this.port.postMessage(this.buf.slice(0));
          this.fill = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("chunk-sender", ChunkSender);
