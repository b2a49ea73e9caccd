"""Live spoken digits: stream a recording (or a microphone) 20 ms at a time, print digits.

By default it plays the shipped demo recording (five FSDD clips of five speakers joined
by silence and a little noise) at real-time pace, as a microphone would deliver it, and
prints every digit the moment it is recognised, then the cost per 20 ms chunk. For the
demo it also checks the digits against the FSDD file names the recording was made from
and gives the latency from the end of each word (the clip's energy endpoint).

Usage (from the repository root)::

    python examples/live_speech.py                 # the demo, paced in real time
    python examples/live_speech.py --fast          # the demo, as fast as possible
    python examples/live_speech.py some.wav        # any WAV (any rate: it is resampled)
    python examples/live_speech.py --mic           # a microphone (pip install sounddevice)
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import numpy as np
import torch

from streamrnn.adapters.audio import MicrophoneSource, WavSource
from streamrnn.apps.speech import DigitRecognizer, demo_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", nargs="?", default=None, help="a WAV file (default: the demo)")
    parser.add_argument("--fast", action="store_true", help="do not pace in real time")
    parser.add_argument("--mic", action="store_true", help="listen to the default microphone")
    args = parser.parse_args()
    torch.set_num_threads(1)  # 2-frame pushes: threads only add synchronisation

    if args.mic:
        source = MicrophoneSource(16000, chunk_ms=20)
        print("listening to the microphone (16 kHz); say digits 0-9, Ctrl-C to stop")
    else:
        path = args.wav or demo_path()
        source = WavSource(path, chunk_ms=20, realtime=not args.fast)
        print(f"playing {path} ({source.n_frames / source.sample_rate:.2f} s, "
              f"{source.sample_rate} Hz){'' if args.fast else ' in real time'}")  # fmt: skip
    rec = DigitRecognizer.load(input_rate=source.sample_rate, channels="mean")

    found, costs, start = [], [], time.perf_counter()
    try:
        for chunk in source:
            t0 = time.perf_counter()
            new = rec.push(chunk, sample_rate=source.sample_rate)
            costs.append(time.perf_counter() - t0)
            for d in new:
                wall = time.perf_counter() - start
                print(f"  heard {d.digit}   stream {d.time_s:6.3f} s   wall {wall:6.3f} s   "
                      f"endpointer latency {d.latency_ms:4.0f} ms")  # fmt: skip
            found += new
    except KeyboardInterrupt:
        pass
    found += rec.flush()
    print("digits:", " ".join(str(d.digit) for d in found) or "(none)")
    costs_us = np.array(costs) * 1e6
    print(f"per 20 ms chunk: median {np.median(costs_us):.0f} us, "
          f"99th percentile {np.percentile(costs_us, 99):.0f} us "
          f"(real-time factor {np.median(costs_us) / 20000:.4f})")  # fmt: skip

    if not args.mic and args.wav is None:  # the demo: compare with its source clips
        meta = resources.files("streamrnn.adapters").joinpath("data", "digits_demo.json")
        clips = json.loads(meta.read_text())["clips"]
        want = [int(c["file"].split("_")[0]) for c in clips]
        print(
            f"expected (from the FSDD file names): {' '.join(map(str, want))} -> "
            f"{'all correct' if [d.digit for d in found] == want else 'MISMATCH'}"
        )
        for d, c in zip(found, clips, strict=False):  # shorter if digits were missed
            print(
                f"  {c['file']:18s} word ends {c['word_end_s']:6.3f} s, digit {d.digit} "
                f"emitted {1000 * (d.time_s - c['word_end_s']):4.0f} ms later"
            )


if __name__ == "__main__":
    main()
