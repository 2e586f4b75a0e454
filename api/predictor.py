"""The dense weights of recent runs, kept in memory between predictions.

A person drawing on the run page asks for a prediction several times a second; reading and
unpacking the weights each time would cost more than the forward pass. Entries are keyed on the
artifact's id and write time, so weights written again (a retried run) are read afresh.
"""

import threading
from collections import OrderedDict
from datetime import datetime

from sqlalchemy.orm import Session

from core.dense_net import DenseNet
from core.model_artifacts import WEIGHTS
from db import model_artifacts, repo

MAX_CACHED_BYTES = 64_000_000  # npz bytes kept in memory in all; larger weights are not kept

_lock = threading.Lock()
_nets: OrderedDict[tuple[int, int, datetime], tuple[DenseNet, int]] = OrderedDict()


def dense_net(session: Session, experiment_id: int) -> DenseNet | None:
    """The run's stored dense weights, or None when it has none."""
    version = model_artifacts.version(session, experiment_id, WEIGHTS)
    if version is None:
        return None
    key = (experiment_id, *version)
    with _lock:
        hit = _nets.get(key)
        if hit is not None:
            _nets.move_to_end(key)
            return hit[0]
    art = repo.get_artifact(session, experiment_id, WEIGHTS)
    if art is None:
        return None
    net = DenseNet.from_npz(art.data)
    size = len(art.data)
    if size <= MAX_CACHED_BYTES:
        with _lock:
            _nets[key] = (net, size)
            while sum(s for _, s in _nets.values()) > MAX_CACHED_BYTES:
                _nets.popitem(last=False)
    return net
