"""The secure-sum apps: sessions of secure sums over synthetic inputs (tests, benchmarks, protocols/flower.md).

    server_app.py  ServerApp: ``SessionSettings``, ``run_session``
    client_app.py  ClientApp: one client machine per SuperNode, synthetic inputs
    synthetic.py   deterministic inputs of (seed, client, round), so a networked run replays in-process
"""
