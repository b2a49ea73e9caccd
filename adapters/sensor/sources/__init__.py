"""Record sources for the sensor adapter: one :class:`Source` base for CSV files, JSON lines
(a text stream or a TCP server) and MQTT topics."""

from ._base import RecordIterator, Source
from ._csv import iter_csv
from ._jsonl import iter_jsonl, iter_jsonl_socket
from ._mqtt import MQTTSource

__all__ = ["MQTTSource", "RecordIterator", "Source", "iter_csv", "iter_jsonl",
           "iter_jsonl_socket"]
