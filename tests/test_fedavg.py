"""FedAvg through the Aggregator: the weighted mean of deltas (BN buffers included), dropouts, bounds,
bitwise reproducibility, schedules, and protocol independence."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from secure_fal.device import seed_everything
from secure_fal.federated import (FedAvgConfig, SGDConfig, StateVector, client_seed, evaluate, train_federated,
                                  train_local)
from secure_fal.models import CNN, MLP
from secure_fal.secagg import Aggregator, Faults, InputError

SIZES = (10, 20, 35)


def make_clients(sizes=SIZES, seed=0, image=4):
    """Two classes separated by the sign of the mean pixel; (x (n, 1, image, image), y (n,)) per client."""
    g = torch.Generator().manual_seed(seed)
    clients = []
    for n in sizes:
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, 1, image, image, generator=g) * 0.5 + (2.0 * y - 1).view(-1, 1, 1, 1)
        clients.append((x, y))
    return clients


def tiny_cnn(seed=0):
    seed_everything(seed)
    return CNN(1, 2, image_size=4, width=4, blocks=2)


def tiny_mlp(seed=0):
    seed_everything(seed)
    return MLP(16, 2, hidden=(8,))


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_one_round_is_the_sample_weighted_mean_of_client_deltas():
    model, clients = tiny_cnn(), make_clients()
    init = copy.deepcopy(model)
    config = FedAvgConfig(rounds=1, local_epochs=2, sgd=SGDConfig(lr=0.05))
    train_federated(model, clients, Aggregator("plaintext", range(3), seed=0), config, seed=3)

    layout = StateVector(init)
    start = layout.get(init)
    expected = np.zeros_like(start)
    for k, (x, y) in enumerate(clients):
        local = copy.deepcopy(init)
        train_local(local, x, y, epochs=2, sgd=SGDConfig(lr=0.05), seed=client_seed(3, 0, k))
        expected += SIZES[k] * (layout.get(local) - start)
    expected = start + expected / sum(SIZES)
    got = layout.get(model)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert not np.allclose(got, start, atol=1e-3)
    # BatchNorm running statistics are averaged too; the integer counter stays the global model's
    assert any("running_var" in n for n in layout.names)
    mean_name = next(n for n in layout.names if n.endswith("running_mean"))
    assert not torch.equal(model.state_dict()[mean_name], init.state_dict()[mean_name])
    counters = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
    assert counters and all(int(model.state_dict()[k]) == 0 for k in counters)


def test_dropped_client_is_left_out_of_the_average():
    clients = make_clients()
    # one public weight total for both runs: the same grid, so the same sum over the same contributors
    config = FedAvgConfig(rounds=1, local_epochs=1, weight_total=float(2 ** 10))
    agg = Aggregator("plaintext", range(3), seed=0)
    phase = agg.protocol.CLIENT_PHASES[0]
    dropped = train_federated(tiny_mlp(), clients, agg, config, seed=1, faults=lambda r: Faults(drop={1: phase}))
    survivors = train_federated(tiny_mlp(), clients, Aggregator("plaintext", range(3), seed=0), config, seed=1,
                                participants=[0, 2])
    record = dropped.history[0]
    assert record.participants == (0, 1, 2) and record.contributors == (0, 2)
    layout = StateVector(dropped.model)
    np.testing.assert_array_equal(layout.get(dropped.model), layout.get(survivors.model))


def test_update_beyond_the_bound_names_client_round_and_entry():
    agg = Aggregator("plaintext", range(3), seed=0)
    with pytest.raises(InputError) as err:
        train_federated(tiny_mlp(), make_clients(), agg, FedAvgConfig(rounds=1, local_epochs=1, update_bound=1e-6))
    exc = err.value
    assert exc.client == 0 and exc.round_id == 1 and exc.field in StateVector(tiny_mlp()).names
    assert "update_bound" in str(exc) and "FedAvg round 1" in str(exc)


def test_cpu_training_is_bitwise_reproducible():
    # batches of 8: the seed's shuffling changes the SGD steps (one full batch per client would change only the
    # summation order inside it, by less than the FedAvg grid)
    config = FedAvgConfig(rounds=2, local_epochs=1, sgd=SGDConfig(batch_size=8))

    def run(seed):
        return train_federated(tiny_cnn(), make_clients(), Aggregator("plaintext", range(3), seed=0), config,
                               seed=seed).model

    a, b, c = run(4), run(4), run(5)
    assert states_equal(a, b)
    assert not states_equal(a, c)


def test_lr_schedule_and_history():
    config = FedAvgConfig(rounds=4, local_epochs=1, sgd=SGDConfig(lr=0.1))
    assert [config.lr_at(r) for r in range(4)] == [0.1, 0.1, 0.1, pytest.approx(0.01)]
    reference = FedAvgConfig()
    assert sum(reference.lr_at(r) == 0.01 for r in range(100)) == 75
    assert math.isclose(reference.lr_at(75), 0.001)
    seen = []
    clients = make_clients()
    result = train_federated(tiny_mlp(), clients, Aggregator("plaintext", range(3), seed=0), config,
                             test=clients[2], progress=seen.append)
    assert seen == result.history and [r.round for r in seen] == [1, 2, 3, 4]
    assert [r.lr for r in seen] == [config.lr_at(r) for r in range(4)]
    assert all(r.aggregation_bytes > 0 and 0 < r.max_abs_update < config.update_bound for r in seen)
    assert result.final_accuracy == seen[-1].test_accuracy
    assert result.final_accuracy > 0.9  # an easy task is learned


def test_participants_subset_or_per_round():
    clients = make_clients()
    agg = Aggregator("plaintext", range(3), seed=0)
    res = train_federated(tiny_mlp(), clients, agg, FedAvgConfig(rounds=3, local_epochs=1),
                          participants=lambda r: [r % 3, (r + 1) % 3])
    assert [r.participants for r in res.history] == [(0, 1), (1, 2), (0, 2)]
    assert [r.contributors for r in res.history] == [(0, 1), (1, 2), (0, 2)]


def test_bad_inputs_are_rejected():
    clients = make_clients()
    config = FedAvgConfig(rounds=1, local_epochs=1)
    with pytest.raises(ValueError, match="client 2"):
        train_federated(tiny_mlp(), clients, Aggregator("plaintext", [0, 1], seed=0), config)
    with_empty = clients + [(clients[0][0][:0], clients[0][1][:0])]
    res = train_federated(tiny_mlp(), with_empty, Aggregator("plaintext", range(4), seed=0), config)
    assert res.history[0].participants == (0, 1, 2)  # the client without data is not asked
    with pytest.raises(ValueError, match="client 3 .*no samples"):
        train_federated(tiny_mlp(), with_empty, Aggregator("plaintext", range(4), seed=0), config,
                        participants=[0, 3])
    model = tiny_cnn()
    model.features[1].momentum = None
    with pytest.raises(ValueError, match="momentum=None"):
        train_federated(model, clients, Aggregator("plaintext", range(3), seed=0), config)


def test_state_vector_round_trip():
    model = tiny_cnn()
    layout = StateVector(model)
    vec = layout.get(model)
    assert vec.dtype == np.float64 and len(vec) == layout.length
    assert len(vec) == sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    new = np.arange(len(vec), dtype=np.float64) / 4  # exact in float32
    layout.set(model, new)
    np.testing.assert_array_equal(layout.get(model), new)
    assert layout.name_at(0) == layout.names[0] and layout.name_at(len(vec) - 1) == layout.names[-1]


def test_train_local_merges_a_trailing_single_sample_and_learns():
    model = CNN(1, 2, image_size=8, width=4)  # 1x1 maps at the end: BatchNorm cannot take a batch of one
    (x, y), = make_clients(sizes=(65,), image=8)
    loss = train_local(model, x, y, epochs=40, sgd=SGDConfig(lr=0.05, batch_size=64))
    assert math.isfinite(loss)
    acc, test_loss = evaluate(model, x, y)
    assert acc > 0.9 and test_loss < 0.5
    with pytest.raises(ValueError, match="N >= 1"):
        train_local(model, x[:0], y[:0], epochs=1)


def test_train_local_stops_after_the_first_epoch_reaching_the_accuracy():
    g = torch.Generator().manual_seed(0)   # weakly separated classes: takes the tiny MLP about a dozen epochs
    y = torch.randint(0, 2, (40,), generator=g)
    x = torch.randn(40, 1, 4, 4, generator=g) + 0.3 * (2.0 * y - 1).view(-1, 1, 1, 1)
    steps = []

    def lr(step):
        steps.append(step)
        return 0.05

    model = tiny_mlp()
    train_local(model, x, y, epochs=50, sgd=SGDConfig(batch_size=16), seed=1, lr_at_step=lr, stop_accuracy=0.99)
    assert steps == list(range(len(steps))) and len(steps) % 3 == 0   # 40 samples: 3 batches per epoch
    epochs = len(steps) // 3
    assert 5 <= epochs < 50 and evaluate(model, x, y)[0] >= 0.99
    # the same run without the stop: identical after that many epochs, and one epoch fewer is not enough
    again, fewer = tiny_mlp(), tiny_mlp()
    train_local(again, x, y, epochs=epochs, sgd=SGDConfig(lr=0.05, batch_size=16), seed=1)
    assert states_equal(again, model)
    train_local(fewer, x, y, epochs=epochs - 1, sgd=SGDConfig(lr=0.05, batch_size=16), seed=1)
    assert evaluate(fewer, x, y)[0] < 0.99


def test_train_local_applies_the_lr_of_each_step():
    (x, y), = make_clients(sizes=(40,), image=4)
    model, frozen = tiny_mlp(), tiny_mlp()
    train_local(frozen, x, y, epochs=2, sgd=SGDConfig(batch_size=16, weight_decay=0.0), lr_at_step=lambda t: 0.0)
    assert states_equal(frozen, model)
    late, early = tiny_mlp(), tiny_mlp()   # lr 0 from step 3 on = one epoch at lr 0.05, then nothing moves
    train_local(late, x, y, epochs=3, sgd=SGDConfig(batch_size=16, weight_decay=0.0),
                lr_at_step=lambda t: 0.05 if t < 3 else 0.0)
    train_local(early, x, y, epochs=1, sgd=SGDConfig(lr=0.05, batch_size=16, weight_decay=0.0))
    for a, b in zip(late.parameters(), early.parameters()):
        assert torch.allclose(a, b, atol=1e-7)   # momentum keeps a step's velocity, but at lr 0 it adds nothing


def test_final_locals_are_each_clients_model_of_the_last_round():
    clients, config = make_clients(), FedAvgConfig(rounds=2, local_epochs=1, sgd=SGDConfig(lr=0.05))
    model = tiny_mlp()
    result = train_federated(model, clients, Aggregator("plaintext", range(3), seed=0), config, seed=5,
                             keep_final_locals=True)
    assert sorted(result.final_locals) == [0, 1, 2]
    first_round = tiny_mlp()
    train_federated(first_round, clients, Aggregator("plaintext", range(3), seed=0),
                    FedAvgConfig(rounds=1, local_epochs=1, sgd=SGDConfig(lr=0.05)), seed=5)
    for k, (x, y) in enumerate(clients):
        local = copy.deepcopy(first_round)
        train_local(local, x, y, epochs=1, sgd=SGDConfig(lr=config.lr_at(1)), seed=client_seed(5, 1, k))
        assert states_equal(local, result.final_locals[k])
    assert train_federated(tiny_mlp(), clients, Aggregator("plaintext", range(3)), config).final_locals == {}


def test_plaintext_and_masking_give_identical_weights():
    pytest.importorskip("secure_fal.secagg.masking")
    config = FedAvgConfig(rounds=2, local_epochs=1)
    runs = [train_federated(tiny_cnn(), make_clients(), Aggregator(name, range(3), seed=0), config, seed=2).model
            for name in ("plaintext", "masking")]
    assert states_equal(*runs)


def test_ckks_weights_within_its_error_of_plaintext():
    pytest.importorskip("secure_fal.secagg.ckks")
    config = FedAvgConfig(rounds=1, local_epochs=1)
    runs = [train_federated(tiny_mlp(), make_clients(), Aggregator(name, range(3), seed=0), config, seed=2).model
            for name in ("plaintext", "ckks")]
    layout = StateVector(runs[0])
    np.testing.assert_allclose(layout.get(runs[1]), layout.get(runs[0]), rtol=0, atol=1e-5)
