"""FAL strategies (secure_fal.strategies): every strategy and sampler end to end on digits, the pieces of
FAL-Global and FairFAL, and secure protocols choosing exactly what plaintext chooses."""

import itertools
import json

import numpy as np
import pytest
import torch

from secure_fal.experiment import load_config, run_experiment
from secure_fal.experiment.runner import CHECKPOINT_FILE
from secure_fal.experiment.setup import build_aggregator, build_pools, build_strategy, build_trainer, initial_labeled
from secure_fal.sampling import SAMPLERS, get_sampler
from secure_fal.secagg import Aggregator, Faults
from secure_fal.federated import FedAvgConfig, SGDConfig
from secure_fal.strategies import (STRATEGIES, ClientPools, Cycle, FairFAL, Trainer, derive_seed, get_strategy,
                                   least_cost_pairs)
from secure_fal.strategies.fairfal import (balanced_mean_probs, imbalance_ratio, oversampled_positions,
                                           prior_divergence, secure_mean_gamma)

from .conftest import protocol_or_skip
from .test_sampling_fairfal import reference_picks

# A tiny experiment: 3 clients on digits, an MLP, 2 FedAvg rounds of 1 epoch, 2 cycles, 30 labels per query.
TINY = {
    "device": "cpu", "data.clients": 3, "training.model": "mlp", "training.model_options": {"hidden": [32]},
    "training.rounds": 2, "training.local_epochs": 1, "training.lr": 0.1, "training.alone_epochs": 2,
    "training.finetune_epochs": 1, "active.cycles": 2, "active.budget": 30,
}


def tiny(**overrides):
    """The TINY config with dotted-key overrides given as keyword arguments (dots written as '__')."""
    return load_config(None, {**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}})


def labeled_sets(out_dir):
    with open(out_dir / CHECKPOINT_FILE) as f:
        return [np.asarray(lab) for lab in json.load(f)["labeled"]]


def check_run(results, config):
    """Invariants of any finished run: counts add up, the budget is spent, costs are where they should be."""
    cycles = results["cycles"]
    assert len(cycles) == config.active.cycles
    first, last = cycles[0], cycles[-1]
    assert "selected_per_client" in first and "selected_per_client" not in last
    assert sum(first["selected_per_client"]) == config.active.budget
    assert last["labeled"] == first["labeled"] + config.active.budget
    assert sum(last["class_histogram"]) == last["labeled"]
    assert all(0.0 <= c["accuracy"] <= 1.0 for c in cycles)
    rounds = results["secure_aggregation"].get("rounds", 0)
    if STRATEGIES[results["strategy"]].federated:
        assert rounds >= config.training.rounds * config.active.cycles
    else:
        assert rounds == 0


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_runs_a_tiny_experiment(name, tmp_path):
    config = tiny(active__strategy=name)
    results = run_experiment(config, tmp_path, quiet=True)
    check_run(results, config)
    labeled = labeled_sets(tmp_path)
    pools = build_pools(config)
    for k, lab in enumerate(labeled):
        assert len(np.unique(lab)) == len(lab) and np.isin(lab, pools.pools[k]).all()
    if name == "client-alone":
        accs = results["cycles"][-1]["client_accuracies"]
        assert len(accs) == 3 and results["final_accuracy"] == pytest.approx(np.mean(accs))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_works_with_f_al(sampler, tmp_path):
    config = tiny(active__strategy="f-al", active__sampler=sampler)
    results = run_experiment(config, tmp_path, quiet=True)
    check_run(results, config)
    assert results["sampler"] == sampler
    # per-client quota: budget 30 over 3 clients
    assert results["cycles"][0]["selected_per_client"] == [10, 10, 10]


def test_strategies_select_differently(tmp_path):
    # Same data, seeds and first model: the strategies' choices must still differ (each does its own thing).
    picks = {}
    for name in ("f-al", "fal-local", "fal-global", "fairfal", "s-al"):
        run_experiment(tiny(active__strategy=name), tmp_path / name, quiet=True)
        picks[name] = tuple(np.sort(np.concatenate(labeled_sets(tmp_path / name))))
    assert len(set(picks.values())) == len(picks)


# -- FAL-Global ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_least_cost_pairs_is_the_cheapest_set_of_distinct_pairs(seed):
    rng = np.random.default_rng(seed)
    r, m = rng.integers(1, 5), rng.integers(1, 6)
    cost = rng.random((r, m))
    n = int(rng.integers(0, min(r, m) + 1))
    rows, cols = least_cost_pairs(cost, n)
    assert len(rows) == n and len(set(rows)) == n and len(set(cols)) == n
    best = min((sum(cost[i, j] for i, j in zip(rs, cs))
                for rs in itertools.combinations(range(r), n) for cs in itertools.permutations(range(m), n)),
               default=0.0)
    assert cost[rows, cols].sum() == pytest.approx(best)


def test_least_cost_pairs_rejects_too_many_pairs():
    with pytest.raises(ValueError, match="cannot pick 3 distinct pairs from a 2 x 5"):
        least_cost_pairs(np.zeros((2, 5)), 3)


def test_fal_global_quota_and_no_quota(tmp_path):
    with_quota = tiny(active__strategy="fal-global", active__budget=31)
    res = run_experiment(with_quota, tmp_path / "quota", quiet=True)
    assert res["cycles"][0]["selected_per_client"] == res["cycles"][0]["budgets"] == [11, 10, 10]
    free = tiny(active__strategy="fal-global", active__budget=31, active__quota=False)
    res_free = run_experiment(free, tmp_path / "free", quiet=True)
    chosen = res_free["cycles"][0]["selected_per_client"]
    # one sample per centroid (31 centroids), wherever the closest candidates are
    assert sum(chosen) == 31
    # ownership is decided through extra secure sums (bisection rounds) on top of k-means
    assert res_free["cycles"][0]["secure_aggregation"]["rounds"] > res["cycles"][0]["secure_aggregation"]["rounds"]


def test_fal_global_accepts_only_uncertainty_samplers():
    config = tiny()
    pools = build_pools(config)
    from secure_fal.sampling import get_sampler
    with pytest.raises(ValueError, match="strategy 'fal-global' cannot use sampler 'badge'"):
        get_strategy("fal-global")(pools, build_trainer(config, pools), get_sampler("badge"))


# -- FairFAL ------------------------------------------------------------------------------------------------

class _FixedProbs(torch.nn.Module):
    """A 'model' whose softmax output is a fixed function of the input's first pixel (tests only)."""

    def __init__(self, table):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.as_tensor(table, dtype=torch.float64)))

    def forward(self, x):
        return self.logits[x[:, 0].long()]


def test_balanced_mean_probs_equals_mean_over_the_oversampled_copy():
    table = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    model = _FixedProbs(table)
    # class 0: 4 samples (2 of kind 0, 2 of kind 2); class 1: 2 samples (kind 1) -> oversample class 1 to 4
    x = torch.tensor([[0.0], [0.0], [2.0], [2.0], [1.0], [1.0]])
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    copy = np.concatenate([table[[0, 0, 2, 2]], table[[1, 1, 1, 1]]])
    got = balanced_mean_probs(model, x, y, 3)
    assert got == pytest.approx(copy.mean(axis=0))


def reference_balanced_indices(y, seed=42):
    """The reference's make_balanced_indices (chenchenzong/FairFAL strategy.py), transcribed: per class in
    increasing order, the largest class drawn without replacement, the others topped up with replacement."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    target, out = counts.max(), []
    for c, n in zip(classes, counts):
        idx = np.where(y == c)[0]
        if target - n <= 0:
            out.append(rng.choice(idx, size=target, replace=False))
        else:
            out.append(np.concatenate([idx, rng.choice(idx, size=target - n, replace=True)]))
    return np.concatenate(out)


def test_oversampled_prior_is_the_mean_over_the_reference_draw():
    table = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    model = _FixedProbs(table)
    kinds = np.array([0, 2, 0, 1, 3, 3, 2])
    x, y = torch.tensor(kinds, dtype=torch.float64)[:, None], torch.tensor([0, 0, 0, 1, 2, 2, 1])
    positions = reference_balanced_indices(y.numpy())
    assert sorted(positions.tolist()) == sorted(oversampled_positions(y.numpy()).tolist())
    got = balanced_mean_probs(model, x, y, 3, estimate="oversample")
    assert got == pytest.approx(table[kinds[positions]].mean(axis=0))
    assert not got == pytest.approx(balanced_mean_probs(model, x, y, 3, estimate="exact"))


def test_gamma_divergence_and_score():
    assert imbalance_ratio(np.array([0.5, 0.3, 0.2]), [0, 1]) == pytest.approx(0.6)
    assert imbalance_ratio(np.array([0.5, 0.3, 0.2]), [0, 1, 2]) == pytest.approx(0.4)
    assert prior_divergence(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.5, 0.0])) == 0.0
    # |0.6-0.2|/0.8 = 0.5, |0.4-0.8|/1.2 = 1/3, class 2 absent from both: 0
    assert prior_divergence(np.array([0.6, 0.4, 0.0]), np.array([0.2, 0.8, 0.0])) == pytest.approx((0.5 + 1 / 3) / 3)


@pytest.mark.parametrize("protocol", ["plaintext", "masking"])
def test_gamma_bar_is_the_mean_over_contributors(protocol):
    protocol_or_skip(protocol)
    gammas = {0: 0.2, 1: 0.5, 2: 0.9, 3: 0.4}
    agg = Aggregator(protocol, list(gammas), seed=0)
    mean, contributors = secure_mean_gamma(gammas, agg)
    assert mean == pytest.approx(0.5, abs=1e-6) and contributors == (0, 1, 2, 3)
    if protocol == "masking":
        mean, contributors = secure_mean_gamma(gammas, agg, faults=Faults(drop={2: "masked_input"}))
        assert contributors == (0, 1, 3) and mean == pytest.approx((0.2 + 0.5 + 0.4) / 3, abs=1e-6)


def test_secure_mean_gamma_rejects_out_of_range():
    with pytest.raises(ValueError, match="client 1: gamma_k = 1.5"):
        secure_mean_gamma({0: 0.5, 1: 1.5}, Aggregator("plaintext", [0, 1]))


@pytest.mark.parametrize("threshold, choice", [(0.0, "global"), (1.0, "local")])
def test_fairfal_model_choice_follows_threshold(threshold, choice, tmp_path):
    config = tiny(active__strategy="fairfal", active__threshold=threshold, active__cycles=3)
    results = run_experiment(config, tmp_path, quiet=True)
    details = [c["details"] for c in results["cycles"][:-1]]
    assert all(d["model_choice"] == [choice] * 3 for d in details)
    for d in details:
        assert all(s == pytest.approx(1 - (dk + d["gamma_bar"]) / 2) for s, dk in zip(d["s"], d["d"]))
    # gamma_bar is computed once, at the first query (one extra secure sum), then kept
    assert details[0]["gamma_bar"] == details[1]["gamma_bar"] == results["strategy_state"]["gamma_bar"]
    rounds = [c["secure_aggregation"]["rounds"] for c in results["cycles"]]
    assert rounds == [config.training.rounds + 1, config.training.rounds, config.training.rounds]


class _Linear(torch.nn.Module):
    """A fixed linear classifier on flattened inputs, with the embed / head interface (tests only)."""

    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))

    def embed(self, x):
        return x.flatten(1)

    def head(self, z):
        return z @ self.weight.T

    def forward(self, x):
        return self.head(self.embed(x))


@pytest.mark.parametrize("gamma_bar, threshold, query, gradient", [
    (0.3, 0.0, "global", "global"), (0.7, 0.0, "global", "local"), (0.7, 1.0, "local", "local"),
    (0.3, 1.0, "local", "global")])
def test_fairfal_second_switch_picks_the_gradient_model(gamma_bar, threshold, query, gradient, monkeypatch):
    # features always global; entropy from the query model (s_k > threshold); gradient probabilities from the
    # global model iff gamma_bar < 0.5 (chenchenzong/FairFAL fairfal_sampling.py, choose_net2)
    g = torch.Generator().manual_seed(3)
    n, classes = 80, 3
    y = torch.randint(0, classes, (n,), generator=g)
    x = (torch.nn.functional.one_hot(y, 4).float() * 2 + torch.randn(n, 4, generator=g))[:, None, None, :]
    pools = ClientPools(x, y, (np.arange(n),), x[:5], y[:5], classes)
    trainer = Trainer(lambda: None, FedAvgConfig(), alone_epochs=1, device=torch.device("cpu"))
    models = {"global": _Linear(torch.randn(classes, 4, generator=g)),
              "local": _Linear(torch.randn(classes, 4, generator=g))}
    strategy = FairFAL(pools, trainer, get_sampler("fairfal"), threshold=threshold)
    monkeypatch.setattr(strategy, "_alone_model", lambda cycle, labeled, client: models["local"])
    cycle = Cycle(0, 0, None)
    strategy.use_global_model(cycle, models["global"])
    labeled = np.arange(0, n, 8)
    picked, facts = strategy.select_on_client(cycle, 0, labeled, 9, gamma_bar)
    assert (facts["model_choice"], facts["gradient_choice"]) == (query, gradient)
    with torch.no_grad():
        probs = {k: torch.softmax(m(x), dim=1).double() for k, m in models.items()}
    mask = torch.zeros(n, dtype=torch.bool)
    mask[labeled] = True
    expected = reference_picks(probs[query], probs[gradient], x.flatten(1).double(), mask, y, 9, classes)
    assert set(picked.tolist()) == expected


def test_local_only_training_follows_the_reference_schedule(monkeypatch):
    calls = []
    monkeypatch.setattr("secure_fal.strategies.training.train_local", lambda model, x, y, **kw: calls.append(kw))
    sgd = SGDConfig(lr=0.01)
    reference = Trainer(lambda: torch.nn.Linear(2, 2), FedAvgConfig(sgd=sgd), alone_epochs=50,
                        device=torch.device("cpu"))
    reference.alone(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), init_seed=0, seed=1)
    (kw,) = calls
    # one run of at most 50 epochs, stopping at training accuracy 0.99; the lr milestone int(50 * 3/4) = 37 counts
    # optimiser steps (MultiStepLR stepped per batch): steps 0..36 at 0.01, from step 37 on at 0.001
    assert kw["epochs"] == 50 and kw["stop_accuracy"] == 0.99
    assert [kw["lr_at_step"](t) for t in (0, 36, 37, 1000)] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    calls.clear()
    fixed = Trainer(lambda: torch.nn.Linear(2, 2), FedAvgConfig(sgd=sgd), alone_epochs=50,
                    device=torch.device("cpu"), alone_schedule="fixed")
    fixed.alone(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), init_seed=0, seed=1)
    assert [(kw["epochs"], kw["sgd"].lr) for kw in calls] == [(38, 0.01), (12, pytest.approx(0.001))]
    assert all("stop_accuracy" not in kw for kw in calls)


def test_fairfal_state_round_trips():
    config = tiny(active__strategy="fairfal")
    pools = build_pools(config)
    strategy = build_strategy(config, pools, build_trainer(config, pools))
    strategy.load_state_dict({"gamma_bar": 0.25})
    assert strategy.state_dict() == {"gamma_bar": 0.25}
    with pytest.raises(ValueError, match="unknown keys"):
        strategy.load_state_dict({"gamma": 0.25})


def test_select_before_train_is_refused():
    config = tiny()
    pools = build_pools(config)
    strategy = build_strategy(config, pools, build_trainer(config, pools))
    labeled = initial_labeled(pools, 0.05, 0)
    cycle = Cycle(0, 0, build_aggregator(config, 3, 0))
    with pytest.raises(RuntimeError, match="select\\(\\) of cycle 0 called before train"):
        strategy.select(cycle, labeled, [1, 1, 1])


def test_derive_seed_is_stable_and_separates_paths():
    assert derive_seed(0, "select", 1, 2) == derive_seed(0, "select", 1, 2)
    seeds = {derive_seed(0, "select", 1, 2), derive_seed(0, "select", 2, 1), derive_seed(1, "select", 1, 2),
             derive_seed(0, "init", 1, 2)}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)


# -- secure protocols choose what plaintext chooses ---------------------------------------------------------

SECURE_CASES = [("fal-global", {"active__quota": False}), ("fairfal", {}), ("f-al", {}), ("kafal", {})]


@pytest.mark.parametrize("strategy, extra", SECURE_CASES, ids=[c[0] for c in SECURE_CASES])
def test_masking_selects_and_scores_exactly_like_plaintext(strategy, extra, tmp_path):
    protocol_or_skip("masking")
    runs = {}
    for protocol in ("plaintext", "masking"):
        out = tmp_path / protocol
        results = run_experiment(tiny(active__strategy=strategy, secure__protocol=protocol, **extra), out, quiet=True)
        runs[protocol] = ([c["accuracy"] for c in results["cycles"]], labeled_sets(out), results)
    assert runs["masking"][0] == runs["plaintext"][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs["masking"][1], runs["plaintext"][1]))
    details = [[c.get("details") for c in r[2]["cycles"]] for r in runs.values()]
    assert details[0] == details[1]


@pytest.mark.parametrize("strategy, extra", SECURE_CASES[:2], ids=[c[0] for c in SECURE_CASES[:2]])
def test_ckks_selects_like_plaintext(strategy, extra, tmp_path):
    protocol_or_skip("ckks")
    runs = {}
    for protocol in ("plaintext", "ckks"):
        out = tmp_path / protocol
        results = run_experiment(tiny(active__strategy=strategy, secure__protocol=protocol, **extra), out, quiet=True)
        runs[protocol] = ([c["accuracy"] for c in results["cycles"]], labeled_sets(out))
    assert all(np.array_equal(a, b) for a, b in zip(runs["ckks"][1], runs["plaintext"][1]))
    # 450 test samples: within one prediction of plaintext
    assert np.allclose(runs["ckks"][0], runs["plaintext"][0], atol=1.5 / 450)
