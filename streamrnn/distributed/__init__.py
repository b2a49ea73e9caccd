"""Scale-out on Ray: keyed streams sharded over actors, exactly once under failures.

:class:`ShardedBank` routes keys by a stable hash to Ray actors, each holding a
:class:`~streamrnn.StreamBank` of its keys; the weights are put once in Ray's object store
and shared, only states live in the shards. Each shard checkpoints its streams with every
key's input offset; the router keeps the operations since each shard's last checkpoint
and replays them into a restarted shard, so a killed shard changes no output.
:class:`ShardedLearner` learns online across shards, its weights kept identical by a
synchronous gradient all-reduce per update; every shard checkpoints its whole learner at
the same push boundary, and a dead shard has every shard restart from there and the
router replay, so it too changes no output.

Needs the ``ray`` extra: ``pip install "streamrnn[ray]"``.
"""

from .bank import ShardedBank
from .learner import ShardedLearner

__all__ = ["ShardedBank", "ShardedLearner"]
