"""The generic carrier: our secure-sum and key-setup machines over a Flower Grid, whatever the payload.

    envelope.py       our messages inside Flower Messages; the round opening; the client's step (sans-I/O)
    server_round.py   the server's side of a round, sans-I/O (``ServerExchanges``, ``ServerRound``); wire costs
    exchange.py       the exchange loop on a Grid: ``Patience``, ``exchange``, ``grid_channel``, ``run_round``,
                      ``discover_clients``
    session_keys.py   a protocol's in-band key setup (CKKS keys, session-mode masking) in Flower Messages
    machine_state.py  a client machine kept in the node's Context.state between messages
    node_config.py    a node's client id and policy from its node config
    run_config.py     settings dataclasses <-> Flower run config; result files
"""
