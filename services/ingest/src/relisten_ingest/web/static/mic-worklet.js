// AudioWorklet processor of the live mode: the microphone's first channel, at whatever rate the
// AudioContext runs (48 kHz or 44.1 kHz usually), resampled to 24 kHz and converted to pcm16 in
// chunks of 100 ms, posted to the page as transferable ArrayBuffers. Runs on the audio thread, so it
// only does arithmetic; the page base64-encodes and sends.
//
// Resampling is linear interpolation with the fractional read position carried from one 128-frame
// block to the next (no clicks at block edges). Speech at 24 kHz has nothing above 12 kHz worth
// keeping, and a short averaging filter before decimating keeps the aliasing of what is there low.

const TARGET_RATE = 24000;
const CHUNK_SAMPLES = 2400; // 100 ms at 24 kHz

class Pcm16Resampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.position = 0; // read position in the input, relative to the current block
    this.previous = 0; // the last (smoothed) input sample of the previous block, for interpolation
    this.lastRaw = 0; // the last raw input sample of the previous block, for smoothing
    this.chunk = new Int16Array(CHUNK_SAMPLES);
    this.filled = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post(); // what is left, shorter than a chunk
        this.port.postMessage({ type: "flushed" });
      } else if (event.data === "stop") {
        this.stopped = true;
      }
    };
  }

  post() {
    if (this.filled === 0) return;
    const out = this.chunk.slice(0, this.filled);
    this.port.postMessage({ type: "pcm", buffer: out.buffer }, [out.buffer]);
    this.filled = 0;
  }

  push(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.chunk[this.filled] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.filled += 1;
    if (this.filled === CHUNK_SAMPLES) this.post();
  }

  process(inputs) {
    if (this.stopped) return false;
    const channel = inputs[0] && inputs[0][0];
    if (!channel || channel.length === 0) return true;
    // Smooth by averaging neighbours when decimating (step > 1): a cheap low-pass.
    const input = this.step > 1.5 ? smooth(channel, this.lastRaw) : channel;
    let position = this.position;
    while (position < input.length) {
      const index = Math.floor(position);
      const fraction = position - index;
      const left = index - 1 < 0 ? this.previous : input[index - 1];
      const right = input[index];
      // position p refers to input[p - 1] .. input[p]: the previous block's last sample is index -1.
      this.push(left + (right - left) * fraction);
      position += this.step;
    }
    this.position = position - input.length;
    this.previous = input[input.length - 1];
    this.lastRaw = channel[channel.length - 1];
    return true;
  }
}

function smooth(channel, previous) {
  const out = new Float32Array(channel.length);
  let last = previous;
  for (let i = 0; i < channel.length; i += 1) {
    out[i] = (channel[i] + last) / 2;
    last = channel[i];
  }
  return out;
}

registerProcessor("pcm16-resampler", Pcm16Resampler);
