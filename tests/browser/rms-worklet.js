// AudioWorklet: RMS of consecutive frames of `frameSamples` samples (10 ms) of channel 0.
// Posts [[startContextSampleFrame, rms], ...] for every frame completed in a render quantum.
class RmsMeter extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frameSamples = options.processorOptions.frameSamples;
    this.sum = 0;
    this.n = 0;
    this.frameStart = null;
    this.expected = null; // currentFrame the next quantum should start at
  }

  process(inputs) {
    const input = inputs[0];
    const ch = input && input.length ? input[0] : null;
    const len = ch ? ch.length : 128;
    const done = [];
    // The context skipped render quanta (it happens while it starts): drop the partial frame so
    // every frame covers contiguous samples; the page leaves the gap as nulls.
    if (this.expected !== null && currentFrame !== this.expected) {
      this.sum = 0;
      this.n = 0;
    }
    this.expected = currentFrame + len;
    for (let i = 0; i < len; i++) {
      if (this.n === 0) this.frameStart = currentFrame + i;
      const x = ch ? ch[i] : 0;
      this.sum += x * x;
      this.n++;
      if (this.n === this.frameSamples) {
        done.push([this.frameStart, Math.sqrt(this.sum / this.n)]);
        this.sum = 0;
        this.n = 0;
      }
    }
    if (done.length) this.port.postMessage(done);
    return true;
  }
}

registerProcessor('rms-meter', RmsMeter);
