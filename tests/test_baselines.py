"""The FairFAL paper's baselines (LoGo, KAFAL, IFAL): each piece of their selection rules on hand-built inputs
with hand-computed results, the distillation schedule, and the rules wired as strategies."""

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch

from secure_fal.federated import SGDConfig, train_distilled, train_local
from secure_fal.models import MLP
from secure_fal.sampling import get_sampler
from secure_fal.strategies import IFAL, KAFAL, LoGo, OwnRuleStrategy
from secure_fal.strategies.ifal import (cluster_representatives, ifal_choice, otsu_threshold, reverse_knn_votes,
                                        value_wasserstein)
from secure_fal.strategies.kafal import specialized_discrepancy
from secure_fal.strategies.logo import logo_choice, predicted_class_gradients

# -- LoGo -------------------------------------------------------------------------------------------------------


def test_logo_clusters_on_the_predicted_class_gradient_block():
    e = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]])
    # e * (1 - max p): (1, 2) * 0.3 and (3, -1) * 0.5
    assert torch.allclose(predicted_class_gradients(e, p), torch.tensor([[0.3, 0.6], [1.5, -0.5]]))


def test_logo_takes_the_most_uncertain_member_of_each_cluster():
    clusters = np.array([0, 1, 0, 1, 2, 2])
    uncertainty = np.array([0.1, 0.5, 0.9, 0.4, 0.2, 0.3])
    assert logo_choice(clusters, uncertainty, 3).tolist() == [2, 1, 5]


def test_logo_fills_up_round_robin_when_a_cluster_is_empty():
    # cluster 2 is empty: first the best of clusters 0 and 1, then the second best of cluster 0, then of 1
    clusters = np.array([0, 0, 0, 1, 1, 1, 1])
    uncertainty = np.array([0.3, 0.9, 0.5, 0.2, 0.8, 0.1, 0.6])
    assert logo_choice(clusters, uncertainty, 3).tolist() == [1, 4, 2]
    assert logo_choice(clusters, uncertainty, 4).tolist() == [1, 4, 2, 6]


# -- KAFAL ------------------------------------------------------------------------------------------------------

def test_kafal_discrepancy_hand_computed():
    # Counts (2, 0, 2): class 1 drops out; the equal shifts cancel. Local softmax over classes 0, 2 of (0, ln 3):
    # (1/4, 3/4); global of (ln 3, 0): (3/4, 1/4). Each KL is (3/4) ln 3 + (1/4) ln(1/3) = (1/2) ln 3; their mean too.
    local = torch.tensor([[0.0, 5.0, math.log(3.0)]])
    glob = torch.tensor([[math.log(3.0), -5.0, 0.0]])
    assert specialized_discrepancy(local, glob, torch.tensor([2, 0, 2])).item() == pytest.approx(0.5 * math.log(3))
    # Counts (1, 0, 3) shift the logits by (0, ln 3): local (0, 0) -> (1/4, 3/4); global (ln 3, 0) -> (1/2, 1/2)
    local, glob = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0, 0.0]])
    kl_gl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_lg = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    got = specialized_discrepancy(local, glob, torch.tensor([1, 0, 3])).item()
    assert got == pytest.approx((kl_gl + kl_lg) / 2)
    # one labeled class only: both distributions are (1,), no disagreement
    assert specialized_discrepancy(local, glob, torch.tensor([0, 4, 0])).item() == 0.0


# -- IFAL -------------------------------------------------------------------------------------------------------

def test_reverse_knn_votes_hand_computed():
    # one labeled sample L0 (label 0) and unlabeled U0, U1, U2 predicted 0, 1, 1; one neighbour each (k = 1):
    # L0 -> U0; U0 -> U2 (itself excluded); U1 -> U2; U2 -> U1.
    # Votes + 1: U0 (2, 1); U1 (1, 2); U2 one of each -> (2, 2).
    labeled = torch.tensor([[1.0, 0.0]])
    unlabeled = torch.tensor([[1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    votes = reverse_knn_votes(labeled, unlabeled, torch.tensor([0, 0, 1, 1]), 2, neighbours=1)
    assert torch.allclose(votes, torch.tensor([[2 / 3, 1 / 3], [1 / 3, 2 / 3], [0.5, 0.5]], dtype=torch.float64))
    # more neighbours than unlabeled samples: every row votes for all three (its own entry last, at -1)
    everyone = reverse_knn_votes(labeled, unlabeled, torch.tensor([0, 0, 1, 1]), 2, neighbours=250)
    assert torch.allclose(everyone, torch.full((3, 2), 0.5, dtype=torch.float64))


def test_value_wasserstein_is_scipys_as_the_reference_calls_it():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 7, generator=g), torch.rand(5, 7, generator=g)
    expected = [scipy.stats.wasserstein_distance(a[i].numpy(), b[i].numpy()) for i in range(5)]
    assert value_wasserstein(a, b).numpy() == pytest.approx(expected, abs=1e-7)
    # a permutation of the same values is at distance 0: the classes' order plays no part
    assert value_wasserstein(torch.tensor([[0.1, 0.9]]), torch.tensor([[0.9, 0.1]])).item() == 0.0


def test_otsu_threshold_is_the_centre_of_the_last_bin_of_the_lower_class():
    # 0s and 1s: every cut between bin 0 and bin 255 separates them equally well; the first wins, centre 1/512
    assert otsu_threshold(np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])) == pytest.approx(0.5 / 256)
    # (1, 2, 3) vs (10, 11, 12) on 256 bins of width 11/256 over [1, 12]: the lower class ends in bin
    # floor((3 - 1) / (11/256)) = 46, whose centre 1 + 46.5 * 11/256 = 2.998 lies below 3 itself
    values = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0])
    threshold = otsu_threshold(values)
    assert threshold == pytest.approx(1 + 46.5 * 11 / 256)
    assert (values > threshold).tolist() == [False, False, True, True, True, True]
    assert otsu_threshold(np.array([0.3, 0.3])) == 0.3


def two_clusters():
    """Two groups of three points on a line; the middle point of each is closest to its group's mean."""
    return np.array([[0.0, 0.0], [1.0, 0.0], [2.2, 0.0], [10.0, 0.0], [11.0, 0.0], [12.2, 0.0]])


def test_cluster_representatives_are_the_members_closest_to_their_centre():
    picks = cluster_representatives(two_clusters(), 2, seed=0)
    assert sorted(picks.tolist()) == [1, 4]


def test_ifal_choice_clusters_the_otsu_candidates():
    features = np.vstack([two_clusters(), [[50.0, 0.0], [60.0, 0.0]]])
    u1 = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.1, 0.2])
    u2 = np.ones(8)
    assert sorted(ifal_choice(u1, u2, features, 2, seed=0).tolist()) == [1, 4]


def test_ifal_choice_falls_back_to_u1_then_to_the_largest_u():
    features = np.vstack([two_clusters(), [[50.0, 0.0], [60.0, 0.0]]])
    u1 = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.1, 0.2])
    # U = U1 * U2 singles out sample 0 (one candidate for a budget of 2); U1 alone gives the two clusters
    u2 = np.array([10.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert sorted(ifal_choice(u1, u2, features, 2, seed=0).tolist()) == [1, 4]
    # U1 and U both single out one sample: the two largest U are taken (sample 0, then sample 7)
    u1 = np.array([5.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2])
    assert sorted(ifal_choice(u1, np.ones(8), features, 2, seed=0).tolist()) == [0, 7]


def test_distillation_stops_after_patience_epochs_without_a_lower_loss():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 4, generator=g), torch.randint(0, 3, (12,), generator=g)
    teacher = MLP(4, 3, hidden=(5,))
    # lr 0, one batch: the same loss every epoch, so epoch 1 is the best and 3 more end it
    epochs = train_distilled(MLP(4, 3, hidden=(5,)), teacher, x, y, max_epochs=50, sgd=SGDConfig(lr=0.0, batch_size=64),
                             temperature=4.0, ce_weight=0.1, patience=3)
    assert epochs == 4
    assert train_distilled(MLP(4, 3, hidden=(5,)), teacher, x, y, max_epochs=2, sgd=SGDConfig(batch_size=64),
                           temperature=4.0, ce_weight=0.1, patience=3) == 2


def test_distillation_with_ce_weight_one_is_plain_training():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 4, generator=g), torch.randint(0, 3, (20,), generator=g)
    torch.manual_seed(0)
    a = MLP(4, 3, hidden=(5,))
    b = MLP(4, 3, hidden=(5,))
    b.load_state_dict(a.state_dict())
    sgd = SGDConfig(lr=0.1, batch_size=8)
    train_distilled(a, MLP(4, 3, hidden=(5,)), x, y, max_epochs=3, sgd=sgd, temperature=4.0, ce_weight=1.0,
                    patience=10, seed=7)
    train_local(b, x, y, epochs=3, sgd=sgd, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


# -- as strategies ----------------------------------------------------------------------------------------------

def test_baselines_select_by_their_own_rule_and_refuse_a_sampler():
    for cls in (LoGo, KAFAL, IFAL):
        assert issubclass(cls, OwnRuleStrategy) and cls.default_sampler is None
        with pytest.raises(ValueError, match=f"strategy '{cls.name}' selects by its own rule"):
            cls(None, None, get_sampler("margin"))


# -- from the CLI under every protocol ---------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["logo", "kafal", "ifal"])
def test_baselines_run_from_the_cli_and_select_alike_under_every_protocol(strategy, tmp_path):
    # only FedAvg's secure sums cross the client boundary for these three; masking and threshold CKKS release the
    # plaintext sum bit for bit, so the labeled sets and accuracies equal plaintext's exactly
    from secure_fal.cli import main
    from secure_fal.experiment.runner import CHECKPOINT_FILE, RESULTS_FILE

    runs = {}
    for protocol in ("plaintext", "masking", "ckks"):
        out = tmp_path / protocol
        assert main(["run", "examples/configs/fairfal_digits.toml", "--strategy", strategy, "--protocol", protocol,
                     "--out", str(out), "--quiet", "--rounds", "2", "--cycles", "2", "--clients", "3",
                     "--device", "cpu", "--set", "training.model=mlp", "--set", "training.local_epochs=1",
                     "--set", "training.alone_epochs=2"]) == 0
        results = json.loads((out / RESULTS_FILE).read_text())
        assert results["config"]["active"]["strategy"] == strategy
        assert results["config"]["secure"]["protocol"] == protocol
        labeled = json.loads((out / CHECKPOINT_FILE).read_text())["labeled"]
        runs[protocol] = ([c["accuracy"] for c in results["cycles"]], labeled,
                          results["cycles"][0]["selected_per_client"])
    # the reference's budget rule: round(545, -2) * 10 % = 50 per query, 50 // 3 = 16 per client
    assert runs["plaintext"][2] == [16, 16, 16]
    assert runs["masking"] == runs["plaintext"] == runs["ckks"]
