"""streamrnn.adapters: the edge that turns the outside world into tensors.

Installed under the import name ``streamrnn.adapters`` (the repository keeps it in the
root folder ``adapters/``). Each adapter streams exactly: pushing data in any chunking
gives the same tensors as one offline pass over the whole signal.

- :mod:`streamrnn.adapters.tokens` — bytes / characters / tokenizer ids, incremental
  encoding and decoding that never splits a character.
- :mod:`streamrnn.adapters.audio` — PCM chunks to log-mel / MFCC frames.
- :mod:`streamrnn.adapters.sensor` — timestamped records to fixed-rate tensors, and
  their sources (:mod:`streamrnn.adapters.sensor.sources`: CSV, JSON lines, TCP, MQTT).

Adapters use only streamrnn's public names; the applications built on them live in
:mod:`streamrnn.apps`.

Submodules are imported on demand, so a missing optional dependency of one adapter
never breaks another.
"""

__all__: list[str] = []
