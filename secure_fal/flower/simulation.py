"""Our secure-sum apps in Flower's simulation engine (ClientApps in Ray workers, all in one process tree).

The simulation engine gives each of ``clients`` virtual SuperNodes the node config ``partition-id`` =
0..clients-1, which the ClientApp uses as its client id; nodes cannot be killed there, so dropouts are a
deployment-engine matter (``loopback``). Ray is started on 127.0.0.1 with one CPU per ClientApp worker.
"""

from __future__ import annotations

from .client_app import make_client_app
from .server_app import SessionSettings, make_server_app

SIMULATION_BACKEND = {"init_args": {"_node_ip_address": "127.0.0.1"}, "client_resources": {"num_cpus": 1}}


def simulate_session(settings: SessionSettings, clients: int) -> dict:
    """Run a session among ``clients`` simulated nodes (which accept ``settings.protocol``).

    Returns the session's record (``make_server_app``): {"settings", "rounds": [...], "error"?}.
    Needs ``flwr[simulation]`` (Ray). Ray changes this process's environment (PYTHONPATH), so tests call
    this in a child process.
    """
    from flwr.simulation import run_simulation

    record: dict = {}
    run_simulation(make_server_app(settings, record), make_client_app(protocols=settings.protocol),
                   num_supernodes=clients, backend_config=SIMULATION_BACKEND)
    if not record.get("rounds") and "error" not in record:
        raise RuntimeError("the simulated session produced no result (see Flower's log)")
    return record
