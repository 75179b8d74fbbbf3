"""Our secure-aggregation machines and FAL experiments over Flower (optional extra ``secure_fal[flower]``,
flwr 1.41). The server machine of each round runs in a ServerApp, each client machine in a ClientApp on a
SuperNode; our protocol messages travel unchanged inside Flower Messages (protocols/flower.md).

    carrier/          the generic carrier: envelope, server round, exchange loop, key setup, node state, configs
    secure_sum/       the secure-sum ServerApp and ClientApp (synthetic inputs)
    fal/              the FAL ServerApp and ClientApp, the client's node-side work and data
    app_bundle.py     the Flower App directory that ``flwr run`` bundles
    simulation.py     our apps in Flower's simulation engine (Ray): ``simulate_session``, ``simulate_fal``
    loopback.py       SuperLink + SuperNodes on 127.0.0.1 as child processes (tests, examples, benchmarks)
    fork_executor.py  warm SuperExec: ClientApp tasks run in forks of a preloaded process
    supernode.py      flower-supernode with a settable idle poll (Flower: a fixed 3 s)
"""
