"""Our secure-aggregation machines and FAL experiments over Flower (optional extra ``secure_fal[flower]``,
flwr 1.41).

The server machine of each round runs in a Flower ServerApp, each client machine in a ClientApp on a
SuperNode; our protocol messages travel unchanged inside Flower Messages (protocols/flower.md).

Modules (all but ``synthetic`` and ``app_bundle`` import flwr):
    transport.py          the envelope, ``ServerRound`` / ``client_step`` (sans-I/O), ``run_round`` (Grid)
    machine_state.py      keeping a client machine in the node's Context.state between messages
    session_keys.py       the CKKS key distribution in band: ``ServerSetup`` / ``client_setup_step``, ``run_setup``
    server_app.py         ServerApp: ``SessionSettings``, client discovery, ``run_session``
    client_app.py         ClientApp: node config (client id, allowed protocols), input source
    fal_server.py         FAL ServerApp: ``FalServer`` drives cycles, FedAvg, k-means, ownership, gamma sums
    fal_client.py         FAL ClientApp (light: flwr, numpy, the protocols): ``handle`` dispatches each message
    fal_node.py           ``FalClient`` (torch): the client's data, inputs to secure sums, selections
    node_data.py          a client's data on its node: simulated split rows (cached) or its own .npz / images
    fork_executor.py      warm SuperExec: ClientApp tasks run in forks of a preloaded process
    supernode.py          flower-supernode with a settable idle poll (Flower: a fixed 3 s)
    fal_candidates.py     FAL-Global's kept candidates: k-means and ownership inputs in numpy (no torch)
    run_config.py         settings dataclasses <-> Flower run config
    synthetic.py          deterministic synthetic inputs (seed, client, round) of this phase
    app_bundle.py         the Flower App directory that ``flwr run`` bundles
    loopback.py           SuperLink + SuperNodes on 127.0.0.1 as child processes (tests, benchmarks)
    simulation.py         our apps in Flower's simulation engine (Ray): ``simulate_session``, ``simulate_fal``
    secaggplus_anchor.py  Flower's own SecAgg+ timed on the same workload (benchmark anchor)
"""
