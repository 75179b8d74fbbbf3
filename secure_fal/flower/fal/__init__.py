"""The FAL apps: a federated active-learning experiment over Flower, every cross-client value a secure sum.

    server_app.py  ServerApp: ``FalServer`` drives cycles (FedAvg, k-means, ownership, gamma sums, selections)
    client_app.py  ClientApp (light: flwr, numpy, the protocols): ``handle`` dispatches each message
    node.py        ``FalClient`` (torch): the client's inputs to secure sums and its selections
    candidates.py  FAL-Global's kept candidates: k-means and ownership inputs in numpy
    node_data.py   a client's data on its node: its simulated split rows (cached) or its own .npz / images
"""
