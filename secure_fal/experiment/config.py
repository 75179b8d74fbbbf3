"""Experiment configuration: a TOML file (read with tomllib) plus command-line overrides, checked strictly.

Layout (every key optional; defaults are the FairFAL/LoGo reference settings of SPEC.md unless noted)::

    name = "fairfal-digits"     # used in titles only
    seed = 0                    # every random draw of the run derives from it
    device = "auto"             # auto | cpu | cuda | cuda:N

    [data]
    dataset = "digits"          # digits | fmnist | mnist | cifar10 | cifar100 | npz | folder | "module:function"
    root = "..."                # folder holding the dataset files (default: $SECURE_FAL_DATA, else ./data_cache;
                                # npz: the .npz file; folder: the folder of train/ and test/; see secure_fal.data)
    download = false            # allow torchvision to download a missing dataset
    rho = 20                    # global long-tail imbalance applied before splitting (omit: none)
    split = "dirichlet-balanced"  # homogeneous | dirichlet-balanced (the FairFAL/LoGo reference's dir_balance)
                                # | dirichlet (ours: each sample drawn from its client's prior; less skewed)
                                # | kmeans
    alpha = 0.1                 # Dirichlet concentration (the two dirichlet splits)
    split_seed = 0              # seed of the split for every run (the reference always splits with seed 0);
                                # omit: derived from the experiment seed
    clients = 10
    corrupted_client = 3        # this client's images get strong shot noise (omit: none)
    photons = 3.0               # shot-noise strength (fewer photons: stronger noise)

    [training]
    model = "cnn"               # cnn | mlp | resnet18 | "module:function" (a plug-in, see secure_fal.models)
    model_options = {}          # e.g. {hidden = [128, 64]} for the MLP; a plug-in gets them as keyword arguments
    rounds = 100                # FedAvg rounds per cycle
    local_epochs = 5
    lr = 0.01
    momentum = 0.9
    weight_decay = 1e-5
    batch_size = 64
    lr_decay_at = 0.75          # lr x lr_decay after this fraction of rounds (or of alone_epochs)
    lr_decay = 0.1
    update_bound = 64.0         # public bound on |FedAvg update| per weight (BN running stats included)
    alone_epochs = 50           # (at most) epochs of non-federated training (s-al, client-alone, centralized,
                                # the local-only model of FairFAL and LoGo); omit: rounds * local_epochs
    alone_schedule = "reference"  # reference: stop at training accuracy 0.99, lr milestone counted in batches
                                # (the reference's training_local_only) | fixed: always alone_epochs epochs
    finetune_epochs = 5         # fal-local's local fine-tuning

    [active]
    strategy = "f-al"           # s-al | f-al | fal-local | fal-global | fairfal | logo | kafal | ifal
                                # | centralized | client-alone
    sampler = "margin"          # omit: the strategy's default (fairfal: "fairfal", others: "margin"); logo,
                                # kafal and ifal select by their own rule and take none
    sampler_options = {}        # e.g. {kappa = 4, quota_classes = "present"} for fairfal,
                                # {beta = 10, mode = "lloyd"} for iwkmeans
    cycles = 9                  # train+evaluate steps; a selection follows every one but the last
    initial_fraction = 0.05     # random initial labeled share of each client's pool
    query_fraction = 0.05       # global budget per cycle as a share of the train set ...
    budget = 600                # ... or as a number of samples (setting it replaces query_fraction)
    budget_rule = "reference"   # query_fraction -> budget: reference: K * int(round(N, -2) * fraction / K)
                                # (FMNIST-LT: 1020, 102 per client) | exact: round(fraction * N) (1021)
    quota = true                # fal-global: each client labels exactly its share
    beta = 10                   # fal-global: candidates per client = beta * its budget
    threshold = 0.75            # fairfal: global query model when s_k > threshold
    prior_estimate = "oversample"  # fairfal: mean softmax over a random rebalanced copy (reference, seed 42)
                                # | exact (its expectation)
    gradient_model = "reference"  # fairfal: gradient-embedding probabilities from the global model iff
                                # gamma_bar < 0.5, else the local-only one (reference) | global (the paper)

    [secure]
    protocol = "plaintext"      # plaintext | ckks | masking
    frac_bits = 24              # fixed-point precision of every secure sum
    options = {}                # protocol constructor arguments

    [privacy]                   # distributed DP on every secure sum (protocols/dp.md); off unless epsilon or
                                # noise_multiplier is set
    epsilon = 4.0               # the run's budget: the noise is calibrated to spend at most this (client level)
    noise_multiplier = 1.0      # or fix the noise (std / L2 sensitivity); with epsilon too, the run is refused
                                # before it starts when its planned releases would spend more than epsilon
    delta = 1e-5
    mechanism = "ddg"           # ddg (distributed discrete Gaussian) | skellam | central-gaussian (plaintext only)
    clip_norm = 1.0             # L2 bound of one client's FedAvg update
    bits = 20                   # modulus 2^bits of the noisy sums (bits per coordinate)
    headroom = 4.0              # standard deviations of the noisy sum the modulus covers
    min_contributors = 7        # fewest contributors the noise is calibrated for (omit: masking's threshold
                                # floor(2n/3) + 1 under masking, else every client); a sum with fewer is withheld
    noise_seed = 0              # omit: noise keys from the OS; an int: reproducible noise (experiments, tests)

Overrides are dotted keys ("training.rounds", "secure.options.threshold") with Python values; an unknown
key, a wrong type or an out-of-range value raises ``ConfigError`` naming the key. Reading a file and applying
overrides: ``loading.py`` (``load_config``); this module holds the sections, their checks and ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..plugins import is_plugin
from . import choices

SPLITS = ("homogeneous", "dirichlet-balanced", "dirichlet", "kmeans")
BUDGET_RULES = ("reference", "exact")
PROTOCOLS = ("plaintext", "ckks", "masking")


class ConfigError(UserError, ValueError):
    """The configuration is invalid; the message names the key (``section.key``) and what is expected."""


class ConfigWarning(UserWarning):
    """The configuration runs, but not as its author may expect (the message names the key and why)."""


@dataclass(frozen=True)
class DataConfig:
    """Dataset, long tail, client split and corruption (see the module docstring for each key)."""

    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    rho: float | None = None
    split: str = "homogeneous"
    alpha: float = 0.1
    split_seed: int | None = None
    clients: int = 10
    corrupted_client: int | None = None
    photons: float = 3.0

    def check(self) -> None:
        if not is_plugin(self.dataset):
            _choice("data.dataset", self.dataset, choices.DATASETS + ("module:function (a plug-in)",))
        if self.dataset in ("npz", "folder") and self.root is None:
            raise ConfigError(f"data.root: data.dataset = {self.dataset!r} reads your files at data.root; set it "
                              "(--set data.root=PATH)")
        _choice("data.split", self.split, SPLITS)
        _require("data.clients", self.clients, self.clients >= 2,
                 ">= 2 under every protocol (with one client nothing is federated, and no protocol can hide the "
                 "only input from the sum)")
        _require("data.alpha", self.alpha, self.alpha > 0, "> 0")
        _require("data.photons", self.photons, self.photons > 0, "> 0")
        if self.split_seed is not None:
            _require("data.split_seed", self.split_seed, self.split_seed >= 0, ">= 0 (or omitted)")
        if self.rho is not None:
            _require("data.rho", self.rho, self.rho >= 1, ">= 1 (or omitted: no long tail)")
        if self.corrupted_client is not None:
            _require("data.corrupted_client", self.corrupted_client, 0 <= self.corrupted_client < self.clients,
                     f"a client id in [0, {self.clients})")


@dataclass(frozen=True)
class TrainingConfig:
    """Model, FedAvg schedule, local optimiser and the non-federated training lengths."""

    model: str = "cnn"
    model_options: dict = field(default_factory=dict)
    rounds: int = 100
    local_epochs: int = 5
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-5
    batch_size: int = 64
    lr_decay_at: float = 0.75
    lr_decay: float = 0.1
    update_bound: float = 64.0   # FedAvgConfig.update_bound
    alone_epochs: int | None = None
    alone_schedule: str = "reference"
    finetune_epochs: int = 5

    def check(self) -> None:
        if not is_plugin(self.model):
            _choice("training.model", self.model, choices.MODELS + ("module:function (a plug-in)",))
        _require("training.rounds", self.rounds, self.rounds >= 1, ">= 1")
        _require("training.local_epochs", self.local_epochs, self.local_epochs >= 1, ">= 1")
        _require("training.lr", self.lr, self.lr > 0, "> 0")
        _require("training.momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)")
        _require("training.weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        _require("training.batch_size", self.batch_size, self.batch_size >= 2, ">= 2")
        _require("training.lr_decay_at", self.lr_decay_at, 0 <= self.lr_decay_at <= 1, "in [0, 1]")
        _require("training.lr_decay", self.lr_decay, 0 < self.lr_decay <= 1, "in (0, 1]")
        _require("training.update_bound", self.update_bound, self.update_bound > 0, "> 0")
        if self.alone_epochs is not None:
            _require("training.alone_epochs", self.alone_epochs, self.alone_epochs >= 1, ">= 1")
        _choice("training.alone_schedule", self.alone_schedule, choices.ALONE_SCHEDULES)
        _require("training.finetune_epochs", self.finetune_epochs, self.finetune_epochs >= 0, ">= 0")

    @property
    def effective_alone_epochs(self) -> int:
        """``alone_epochs``, or rounds * local_epochs when omitted (as many passes as FedAvg makes)."""
        return self.alone_epochs if self.alone_epochs is not None else self.rounds * self.local_epochs


@dataclass(frozen=True)
class ActiveConfig:
    """Strategy, sampler and the active-learning schedule."""

    strategy: str = "f-al"
    sampler: str | None = None
    sampler_options: dict = field(default_factory=dict)
    cycles: int = 9
    initial_fraction: float = 0.05
    query_fraction: float | None = 0.05
    budget: int | None = None
    budget_rule: str = "reference"
    quota: bool = True
    beta: int = 10
    threshold: float = 0.75
    prior_estimate: str = "oversample"
    gradient_model: str = "reference"

    def check(self) -> None:
        _choice("active.strategy", self.strategy, tuple(choices.STRATEGIES))
        if self.sampler is not None:
            _choice("active.sampler", self.sampler, choices.SAMPLERS)
        strategy = choices.STRATEGIES[self.strategy]
        if strategy.default_sampler is None and (self.sampler is not None or self.sampler_options):
            raise ConfigError(f"active.sampler: strategy {self.strategy!r} selects by its own rule and takes no "
                              f"sampler; remove active.sampler / active.sampler_options (got {self.sampler!r}, "
                              f"{self.sampler_options!r})")
        accepted = strategy.samplers
        if accepted is not None and self.sampler_name not in accepted:
            raise ConfigError(f"active.sampler: strategy {self.strategy!r} works with {sorted(accepted)}, "
                              f"got {self.sampler_name!r}")
        _require("active.cycles", self.cycles, self.cycles >= 1, ">= 1")
        _require("active.initial_fraction", self.initial_fraction, 0 < self.initial_fraction < 1, "in (0, 1)")
        if (self.query_fraction is None) == (self.budget is None):
            raise ConfigError("active: give exactly one of query_fraction (share of the train set per cycle) and "
                              f"budget (samples per cycle); got query_fraction={self.query_fraction!r}, "
                              f"budget={self.budget!r}")
        if self.query_fraction is not None:
            _require("active.query_fraction", self.query_fraction, 0 < self.query_fraction <= 1, "in (0, 1]")
        if self.budget is not None:
            _require("active.budget", self.budget, self.budget >= 1, ">= 1")
        _choice("active.budget_rule", self.budget_rule, BUDGET_RULES)
        _require("active.beta", self.beta, self.beta >= 1, ">= 1")
        _require("active.threshold", self.threshold, 0 <= self.threshold <= 1, "in [0, 1]")
        _choice("active.prior_estimate", self.prior_estimate, choices.PRIOR_ESTIMATES)
        _choice("active.gradient_model", self.gradient_model, choices.GRADIENT_MODELS)

    @property
    def sampler_name(self) -> str | None:
        """The sampler that runs: ``sampler``, or the strategy's default when omitted (None: the strategy takes
        no sampler)."""
        return self.sampler if self.sampler is not None else choices.STRATEGIES[self.strategy].default_sampler


@dataclass(frozen=True)
class SecureConfig:
    """Which secure-aggregation protocol carries every cross-client statistic, and its parameters."""

    protocol: str = "plaintext"
    frac_bits: int = 24
    options: dict = field(default_factory=dict)

    def check(self) -> None:
        _choice("secure.protocol", self.protocol, PROTOCOLS)
        _require("secure.frac_bits", self.frac_bits, 1 <= self.frac_bits <= 52, "in [1, 52]")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential privacy of every secure sum (see the module docstring); off unless ``epsilon`` or
    ``noise_multiplier`` is set."""

    epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float = 1e-5
    mechanism: str = "ddg"
    clip_norm: float = 1.0
    bits: int = 20
    headroom: float = 4.0
    min_contributors: int | None = None
    noise_seed: int | None = None

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None or self.noise_multiplier is not None

    def check(self) -> None:
        _choice("privacy.mechanism", self.mechanism, choices.DP_MECHANISMS)
        if self.epsilon is not None:
            _require("privacy.epsilon", self.epsilon, self.epsilon > 0, "> 0")
        if self.noise_multiplier is not None:
            _require("privacy.noise_multiplier", self.noise_multiplier, self.noise_multiplier > 0, "> 0")
        _require("privacy.delta", self.delta, 0 < self.delta < 1, "in (0, 1)")
        _require("privacy.clip_norm", self.clip_norm, self.clip_norm > 0, "> 0")
        _require("privacy.bits", self.bits, 8 <= self.bits <= 40, "in [8, 40]")
        _require("privacy.headroom", self.headroom, self.headroom >= 1, ">= 1")
        if self.min_contributors is not None:
            _require("privacy.min_contributors", self.min_contributors, self.min_contributors >= 1, ">= 1")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; ``to_dict`` is what results and checkpoints record (and what resume compares)."""

    name: str = "experiment"
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    secure: SecureConfig = field(default_factory=SecureConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self) -> None:
        _require("seed", self.seed, self.seed >= 0, ">= 0")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        for section in (self.data, self.training, self.active, self.secure, self.privacy):
            section.check()
        if self.privacy.enabled:
            p = self.privacy
            if p.mechanism == "central-gaussian" and self.secure.protocol != "plaintext":
                raise ConfigError(f"privacy.mechanism: central-gaussian adds noise at the server and needs "
                                  f"secure.protocol = plaintext, got {self.secure.protocol!r}")
            if self.active.strategy == "fal-global" and not self.active.quota:
                raise ConfigError("active.quota: FAL-Global without quota needs the exact ownership counts, which "
                                  "differential privacy cannot noise; use quota = true with [privacy]")
            if p.min_contributors is not None and p.min_contributors > self.data.clients:
                raise ConfigError(f"privacy.min_contributors: expected at most data.clients = {self.data.clients}, "
                                  f"got {p.min_contributors}")

    def to_dict(self) -> dict:
        """Every section; [privacy] only when enabled (a run without DP records the config it always did)."""
        out = dataclasses.asdict(self)
        if not self.privacy.enabled:
            del out["privacy"]
        return out

    def strategy_options(self) -> dict[str, Any]:
        """Constructor options of the chosen strategy class."""
        return {
            "fal-local": {"finetune_epochs": self.training.finetune_epochs},
            "fal-global": {"quota": self.active.quota, "beta": self.active.beta},
            "fairfal": {"threshold": self.active.threshold, "prior_estimate": self.active.prior_estimate,
                        "gradient_model": self.active.gradient_model},
        }.get(self.active.strategy, {})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExperimentConfig:
        """Build and check a config from nested mappings (a parsed TOML document)."""
        return _build(cls, raw, "")


# -- checking helpers -------------------------------------------------------------------------------------

def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: unknown value {value!r}; choose one of {', '.join(choices)}")


def _require(key: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _build(cls: type, raw: Any, prefix: str):
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; valid keys in {where}: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, kind)
    return cls(**kwargs)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Check ``value`` against the annotation ``kind`` (int, float, bool, str, dict, or X | None)."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key}: a value is required (it cannot be none)")
    base = next(t for t in options if t is not type(None))
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif base is str:
        ok = isinstance(value, str)
    elif base is dict:
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    else:
        raise TypeError(f"{key}: unsupported annotation {kind!r}")
    if not ok:
        raise ConfigError(f"{key}: expected {base.__name__}, got {type(value).__name__} {value!r}")
    return value
