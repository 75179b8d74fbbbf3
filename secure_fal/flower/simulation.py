"""Our apps (secure-sum sessions, FAL experiments) in Flower's simulation engine (ClientApps in Ray workers, all in one process tree).

The simulation engine gives each of ``clients`` virtual SuperNodes the node config ``partition-id`` =
0..clients-1, which the ClientApp uses as its client id; nodes cannot be killed there, so dropouts are a
deployment-engine matter (``loopback``). Ray is started on 127.0.0.1 with one CPU per ClientApp worker.
"""

from __future__ import annotations

import json

from ..experiment.config import ExperimentConfig
from ..secagg.privacy import DPSettings
from ..secagg.privacy.release import NodePrivacy
from .fal.client_app import make_fal_client_app
from .fal.server_app import FalSettings, make_fal_server_app
from .secure_sum.client_app import make_client_app
from .secure_sum.server_app import SessionSettings, make_server_app

SIMULATION_BACKEND = {"init_args": {"_node_ip_address": "127.0.0.1"}, "client_resources": {"num_cpus": 1}}


def simulate_session(settings: SessionSettings, clients: int) -> dict:
    """Run a session among ``clients`` simulated nodes (which accept ``settings.protocol``).

    Returns the session's record (``make_server_app``): {"settings", "setup" (CKKS: the key distribution),
    "rounds": [...], "privacy_ledger", "privacy"?, "error"?}. With ``settings.privacy`` every node requires what
    those settings give (``NodePrivacy.of``), with their noise seed.
    Needs ``flwr[simulation]`` (Ray). Ray changes this process's environment (PYTHONPATH), so tests call
    this in a child process.
    """
    from flwr.simulation import run_simulation

    record: dict = {}
    privacy = (NodePrivacy.of(DPSettings(**{"max_contributors": clients, **settings.privacy}))
               if settings.privacy else None)
    run_simulation(make_server_app(settings, record), make_client_app(protocols=settings.protocol, privacy=privacy),
                   num_supernodes=clients, backend_config=SIMULATION_BACKEND)
    if not record.get("rounds") and "error" not in record:
        raise RuntimeError("the simulated session produced no result (see Flower's log)")
    return record


def simulate_fal(config: ExperimentConfig, clients: int, *, timeout: float = 60.0) -> dict:
    """Run the FAL experiment ``config`` among ``clients`` simulated nodes (which accept its protocol).

    Returns the run's record (``make_fal_server_app``): {"settings", "clients", "cycles": [...], "wire",
    "seconds", "error"?}. Needs ``flwr[simulation]`` (Ray); call it in a child process (see ``simulate_session``).
    """
    from flwr.simulation import run_simulation

    experiment = json.dumps(config.to_dict())
    settings = FalSettings(experiment=experiment, timeout=timeout, min_nodes=clients)
    record: dict = {}
    run_simulation(make_fal_server_app(settings, record),
                   make_fal_client_app(experiment, protocols=config.secure.protocol),
                   num_supernodes=clients, backend_config=SIMULATION_BACKEND)
    if not record.get("cycles") and "error" not in record:
        raise RuntimeError("the simulated FAL run produced no result (see Flower's log)")
    return record
