// AudioWorklet processor "pcm-capture": microphone Float32 -> Int16 PCM chunks.
//
// Runs on the audio rendering thread at the AudioContext's rate (usually 48 kHz;
// the gateway resamples). It mixes the input down to mono, converts to signed
// 16-bit, and posts one message per chunk to the main thread:
//
//   {pcm: Int16Array, peak: number, rms: number}   (peak and rms of the chunk, 0..1)
//
// processorOptions:
//   chunkMs     length of a chunk, 10..200 ms (default 40)
//   targetRate  rate to deliver; when it differs from the context's rate the
//               processor falls back to linear interpolation (normally the page
//               creates the context at the declared rate, so this is not used)
//
// Port messages from the main thread: {type: "flush"} posts what is buffered now;
// {type: "stop"} posts it and ends the processor.

/* global sampleRate, registerProcessor, AudioWorkletProcessor */

class PcmCaptureProcessor extends AudioWorkletProcessor {
  /** @param {{processorOptions?: {chunkMs?: number, targetRate?: number}}} options */
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    const chunkMs = Math.min(200, Math.max(10, Number(opts.chunkMs) || 40));
    this.outRate = Number(opts.targetRate) || sampleRate;
    this.step = sampleRate / this.outRate; // input samples per output sample
    this.pos = 0; // fractional read position into the pending input, for resampling
    this.prev = 0; // last input sample of the previous block, for interpolation
    this.chunk = new Int16Array(Math.max(1, Math.round((this.outRate * chunkMs) / 1000)));
    this.fill = 0;
    this.peak = 0;
    this.sumSquares = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      const type = event.data && event.data.type;
      if (type === "flush" || type === "stop") this.post();
      if (type === "stop") this.stopped = true;
    };
  }

  post() {
    if (this.fill === 0) return;
    const pcm = this.chunk.slice(0, this.fill);
    const rms = Math.sqrt(this.sumSquares / this.fill);
    this.port.postMessage({ pcm, peak: this.peak, rms }, [pcm.buffer]);
    this.fill = 0;
    this.peak = 0;
    this.sumSquares = 0;
  }

  /** @param {number} x a sample in -1..1 */
  push(x) {
    const clamped = x > 1 ? 1 : x < -1 ? -1 : x;
    const a = Math.abs(clamped);
    if (a > this.peak) this.peak = a;
    this.sumSquares += clamped * clamped;
    this.chunk[this.fill++] = clamped < 0 ? Math.round(clamped * 0x8000) : Math.round(clamped * 0x7fff);
    if (this.fill === this.chunk.length) this.post();
  }

  /** @param {Float32Array[][]} inputs */
  process(inputs) {
    if (this.stopped) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // not connected yet, or the track ended
    const n = channels[0].length;
    let mono = channels[0];
    if (channels.length > 1) {
      mono = new Float32Array(n);
      for (const ch of channels) for (let i = 0; i < n; i++) mono[i] += ch[i] / channels.length;
    }
    if (this.step === 1) {
      for (let i = 0; i < n; i++) this.push(mono[i]);
      return true;
    }
    // Fallback resampler: linear interpolation between input samples.
    // Position -1 refers to the previous block's last sample.
    while (this.pos < n - 1) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i < 0 ? this.prev : mono[i];
      const b = mono[i + 1];
      this.push(a + (b - a) * frac);
      this.pos += this.step;
    }
    this.pos -= n;
    this.prev = mono[n - 1];
    return true;
  }
}

registerProcessor("pcm-capture", PcmCaptureProcessor);
