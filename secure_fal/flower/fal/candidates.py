"""FAL-Global's candidates on a node, in numpy alone: the inputs to k-means and ownership sums.

After the ``candidates`` step (``node``, with torch) a client keeps its stage-1 candidates in its node state
(record ``secure_fal.candidates``: positions, L2-normalised embeddings, uncertainty weights). Every later k-means and
ownership round only needs those arrays and the round's public centres, so its opening is answered here without
importing torch (``kmeans_stats``: the same floats as the in-process strategy). Also the message-field parsers that
both this module and ``node`` use.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from ...federated.kmeans_stats import DISTANCE_BOUND, centre_distances, cluster_stats
from ...federated.ownership import ownership_keys, under_threshold
from ...secagg.errors import MessageError
from ...secagg.machine import RoundSpec

CANDIDATES_RECORD = "secure_fal.candidates"


def array_field(raw: object, dtype: type, shape: tuple[int, ...], *, cid: int, field: str,
                round_id: int | None = None) -> np.ndarray:
    """A numpy array of ``dtype`` and ``shape`` from message bytes; MessageError naming the field if the size
    does not match."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if not isinstance(raw, bytes) or len(raw) != size:
        got = len(raw) if isinstance(raw, bytes) else type(raw).__name__
        raise MessageError(f"expected {size} bytes of {np.dtype(dtype).name} {shape}, got {got}", client=cid,
                           round_id=round_id, field=field)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def int_field(record: Mapping[str, object], key: str, *, cid: int, round_id: int | None = None, low: int = 0) -> int:
    """An int >= ``low`` under ``key``; MessageError naming the field otherwise."""
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise MessageError(f"expected an int >= {low}, got {value!r}", client=cid, round_id=round_id, field=key)
    return value


def keep_candidates(state: RecordDict, cycle: int, positions: np.ndarray, points: np.ndarray,
                    weights: np.ndarray) -> None:
    """Store a cycle's candidates: positions int64 (n,), points (n, d) and weights (n,) of one float dtype."""
    state.config_records[CANDIDATES_RECORD] = ConfigRecord({
        "cycle": cycle, "positions": positions.astype(np.int64).tobytes(), "points": points.tobytes(),
        "weights": weights.astype(points.dtype).tobytes(), "shape": list(points.shape), "dtype": points.dtype.name})


def kept_candidates(state: RecordDict, record: Mapping[str, object], cid: int,
                    round_id: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions int64 (n,), points (n, d), weights (n,)) kept for the record's ``cycle``; MessageError if this
    client keeps none for it."""
    cycle = int_field(record, "cycle", cid=cid, round_id=round_id)
    kept = state.config_records.get(CANDIDATES_RECORD)
    if kept is None or kept["cycle"] != cycle:
        raise MessageError(f"no candidates kept for cycle {cycle} (step 'candidates' missed?)", client=cid,
                           round_id=round_id, field=CANDIDATES_RECORD)
    n, d = kept["shape"]
    dtype = np.dtype(kept["dtype"])
    return (np.frombuffer(kept["positions"], dtype=np.int64).copy(),
            np.frombuffer(kept["points"], dtype=dtype).reshape(n, d).copy(),
            np.frombuffer(kept["weights"], dtype=dtype).copy())


def centres_field(record: Mapping[str, object], key: str, d: int, *, cid: int, field: str,
                  round_id: int | None = None) -> np.ndarray:
    """The (m, d) float64 centres under ``key`` (m from the record's ``m``)."""
    m = int_field(record, "m", cid=cid, round_id=round_id, low=1)
    return array_field(record.get(key), np.float64, (m, d), cid=cid, field=field, round_id=round_id)


def ownership_keys_of(points: np.ndarray, centroids: np.ndarray, record: Mapping[str, object], cid: int,
                      round_id: int | None = None) -> np.ndarray:
    """This client's ownership keys over the centroids (distance to its closest candidate), ranked among the
    record's ``owners-members`` (MessageError if it is not one of them)."""
    members = record.get("owners-members")
    if not isinstance(members, list) or members != sorted(set(members)) or cid not in members:
        raise MessageError(f"'owners-members' must be a sorted list of distinct ids holding {cid}, got {members!r}",
                           client=cid, round_id=round_id, field="owners-members")
    dist = centre_distances(centroids, points)
    closest = dist.min(axis=1) if dist.shape[1] else np.full(len(centroids), np.inf)
    return ownership_keys(closest, members.index(cid), len(members), DISTANCE_BOUND)


def kmeans_input(state: RecordDict, cid: int, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
    """FAL-Global: ``cluster_stats`` of the kept candidates for the broadcast centres, (m + 2 m d,)."""
    _, points, weights = kept_candidates(state, workload, cid, spec.round_id)
    centres = centres_field(workload, "centres", points.shape[1], cid=cid, field="workload.centres",
                            round_id=spec.round_id)
    return cluster_stats(points, weights, centres)


def owners_input(state: RecordDict, cid: int, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
    """FAL-Global without quota: 1 per centroid where this client's ownership key is under the threshold, (m,)."""
    _, points, _ = kept_candidates(state, workload, cid, spec.round_id)
    centroids = centres_field(workload, "centroids", points.shape[1], cid=cid, field="centroids",
                              round_id=spec.round_id)
    keys = ownership_keys_of(points, centroids, workload, cid, spec.round_id)
    thresholds = array_field(workload.get("thresholds"), np.int64, keys.shape, cid=cid, field="workload.thresholds",
                             round_id=spec.round_id)
    active = array_field(workload.get("active"), np.uint8, keys.shape, cid=cid, field="workload.active",
                         round_id=spec.round_id).astype(bool)
    return under_threshold(keys, thresholds, active)


LIGHT_INPUTS = {"kmeans": kmeans_input, "owners": owners_input}
"""Kinds of secure-sum input a node computes without its data or model: kind -> (state, cid, spec, workload) ->
vector."""
