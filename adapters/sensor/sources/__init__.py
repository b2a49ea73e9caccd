"""Record sources for the sensor adapter: CSV files, JSON lines (file or TCP), MQTT."""

from ._base import RecordIterator, iter_jsonl, iter_jsonl_socket
from ._csv import iter_csv
from ._mqtt import MQTTSource

__all__ = ["MQTTSource", "RecordIterator", "iter_csv", "iter_jsonl", "iter_jsonl_socket"]
