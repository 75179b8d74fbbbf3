"""What differential privacy costs in accuracy: FedAvg on digits (default) or a FAL experiment config (``--config``)
at several epsilons, distributed discrete Gaussian and distributed Skellam (each on ``--bits`` bits per coordinate)
beside a central Gaussian on the plaintext sum (the accuracy ceiling at that epsilon) and the noiseless run.

    python -m secure_fal.bench.dp_accuracy --out docs/dp_accuracy     # writes dp_accuracy.json / .md / .png (~25 min)
    python -m secure_fal.bench.dp_accuracy --config examples/configs/fairfal_fmnist_lt_alpha0.1_reduced.toml \
        --epsilons 1 2 4 8 inf --mechanisms ddg skellam central-gaussian --seeds 1 --out runs/dp_fmnist_lt

Setting: scikit-learn's 8x8 digits (bundled, no download), a homogeneous split over ``--clients`` clients, an MLP
with one hidden layer of ``--hidden`` units, ``--rounds`` FedAvg rounds of one local epoch; every client takes part
in every round. Client-level DP: each round releases one noised sum of the clients' L2-clipped updates; the noise
multiplier is calibrated so that the ``--rounds`` releases spend exactly the target epsilon (delta ``--delta``)
under each mechanism's own RDP curve. Sums run under the plaintext protocol: masking and CKKS give the same noised
sums bit for bit (tests/test_dp_aggregator.py), only slower. Accuracy: the global model's on the held-out test set
after the last round, the mean over ``--seeds`` seeds.

With ``--config`` every point is one ``run_experiment`` of that config (``--set KEY=VALUE`` overrides as for
``secure-fal run``) with seed = the config's seed + s, ``privacy.epsilon`` = the target (the runner calibrates the
noise multiplier to its own plan of the run's releases), ``privacy.mechanism`` and ``privacy.noise_seed`` = the seed;
central-gaussian runs under the plaintext protocol, the others under the config's. Epsilon ``inf`` is the
noiseless run. Each run writes its own directory ``OUT/runs/<mechanism>-eps<epsilon>-seed<seed>``: a finished one
(results.json) is read back, an interrupted one resumes from its checkpoint, so the sweep can be stopped and
restarted. Accuracy: the final cycle's.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..data import homogeneous_split, load_dataset
from ..device import seed_everything
from ..experiment import choices, load_config, parse_override, run_experiment
from ..experiment.checkpoint import CHECKPOINT_FILE
from ..experiment.privacy import planned_epsilon
from ..experiment.runner import RESULTS_FILE
from ..federated import FedAvgConfig, SGDConfig, StateVector, train_federated
from ..models import build_model
from ..secagg import Aggregator, DPSettings, PrivacySession, Statistic
from ..secagg.privacy.accountant import calibrate_noise

MECHANISMS = choices.DP_MECHANISMS


def run_one(args: argparse.Namespace, mechanism: str | None, eps: float, seed: int) -> dict:
    """One FedAvg training; ``mechanism`` None: no noise."""
    data = load_dataset("digits")
    parts = homogeneous_split(data.y_train.numpy(), args.clients, seed)
    clients = [(data.x_train[torch.as_tensor(p)], data.y_train[torch.as_tensor(p)]) for p in parts]
    seed_everything(seed)
    model = build_model("mlp", 1, 8, 10, hidden=(args.hidden,))
    length = StateVector(model).length
    privacy, z = None, None
    if mechanism is not None:
        plan = [(Statistic("fedavg-update"), length, args.rounds)]

        def settings(zz: float) -> DPSettings:
            return DPSettings(noise_multiplier=zz, max_contributors=args.clients, delta=args.delta,
                              mechanism=mechanism, clip_norm=args.clip, bits=args.bits, noise_seed=seed)

        z = calibrate_noise(lambda zz: planned_epsilon(settings(zz), plan), eps)
        privacy = PrivacySession(settings(z))
    config = FedAvgConfig(rounds=args.rounds, local_epochs=1, sgd=SGDConfig(args.lr, 0.0, 0.0, 16),
                          lr_decay_at=1.0, update_bound=64.0)
    agg = Aggregator("plaintext", range(args.clients), seed=seed, privacy=privacy)
    started = time.perf_counter()
    result = train_federated(model, clients, agg, config, test=(data.x_test, data.y_test), seed=seed)
    out = {"mechanism": mechanism or "none", "epsilon": eps, "seed": seed, "accuracy": result.final_accuracy,
           "seconds": time.perf_counter() - started, "noise_multiplier": z, "length": length}
    if privacy is not None:
        cal = privacy.calibration(Statistic("fedavg-update"), length)
        out.update(epsilon_spent=privacy.spent()["total"], noise_std=cal.noise_std, gamma=cal.gamma,
                   bits=cal.bits, sensitivity_inflation=(cal.delta2 * cal.gamma / cal.clip) if cal.gamma else 1.0)
    return out


def run_config_point(args: argparse.Namespace, mechanism: str | None, eps: float, s: int) -> dict:
    """One ``run_experiment`` of ``--config`` (module docstring); ``mechanism`` None: no noise. Resumable."""
    base = load_config(args.config, dict(args.set))
    seed = base.seed + s
    overrides = {**dict(args.set), "seed": seed}
    if mechanism is not None:
        overrides.update({"privacy.epsilon": eps, "privacy.mechanism": mechanism, "privacy.noise_seed": seed,
                          "privacy.bits": args.bits, "privacy.delta": args.delta})
        if mechanism == "central-gaussian":
            overrides["secure.protocol"] = "plaintext"
    config = load_config(args.config, overrides)
    out = Path(args.out) / "runs" / f"{mechanism or 'none'}-eps{eps:g}-seed{seed}"
    if (out / RESULTS_FILE).exists():
        results = json.loads((out / RESULTS_FILE).read_text())
    else:
        results = run_experiment(config, out, resume=(out / CHECKPOINT_FILE).exists(), quiet=True)
    privacy = results["privacy"]
    return {"mechanism": mechanism or "none", "epsilon": eps, "seed": seed, "accuracy": results["final_accuracy"],
            "seconds": results["wall_seconds"], "run_dir": str(out),
            "noise_multiplier": privacy.get("noise_multiplier"),
            "epsilon_spent": privacy["epsilon_spent"]["total"] if privacy["enabled"] else None}


def summarise(runs: list[dict], epsilons: list[float]) -> dict:
    """Mean accuracy (and its standard error over seeds) per (mechanism, epsilon)."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        table.setdefault(r["mechanism"], {}).setdefault(str(r["epsilon"]), []).append(r["accuracy"])
    return {m: {e: {"mean": float(np.mean(v)), "sem": float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1
                    else 0.0} for e, v in per.items()} for m, per in table.items()}


def write_outputs(out: Path, args: argparse.Namespace, runs: list[dict], epsilons: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(runs, epsilons)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "dp_accuracy.json", "w") as f:
        json.dump({"settings": vars(args), "runs": runs, "summary": summary}, f, indent=1)
    none = summary["none"][str(math.inf)]["mean"]
    lines = ["| epsilon | " + " | ".join(MECHANISMS) + " | ddg - central | skellam - central |",
             "|---:|" + "---:|" * (len(MECHANISMS) + 2)]
    for e in epsilons:
        cells = [summary[m][str(e)] for m in MECHANISMS]
        gaps = [100 * (summary[m][str(e)]["mean"] - summary["central-gaussian"][str(e)]["mean"])
                for m in ("ddg", "skellam")]
        lines.append(f"| {e:g} | " + " | ".join(f"{100 * c['mean']:.1f} ± {100 * c['sem']:.1f}" for c in cells)
                     + " | " + " | ".join(f"{g:+.1f}" for g in gaps) + " |")
    lines.append(f"| inf (no noise) | {100 * none:.1f} | {100 * none:.1f} | {100 * none:.1f} | | |")
    (out / "dp_accuracy.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m, marker in zip(MECHANISMS, "os^"):
        ys = [100 * summary[m][str(e)]["mean"] for e in epsilons]
        err = [100 * summary[m][str(e)]["sem"] for e in epsilons]
        ax.errorbar(epsilons, ys, yerr=err, marker=marker, capsize=3, label=m)
    ax.axhline(100 * none, color="gray", linestyle="--", label="no noise")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("epsilon (client level, delta %g)" % args.delta)
    ax.set_ylabel("test accuracy %")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "dp_accuracy.png", dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/dp_accuracy", help="output folder (default: runs/dp_accuracy)")
    p.add_argument("--config", help="a FAL experiment's TOML config: sweep it instead of FedAvg on digits")
    p.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE",
                   help="with --config: override a config key, as for secure-fal run (repeatable)")
    p.add_argument("--epsilons", nargs="+", default=["1", "2", "4", "8"],
                   help="target epsilons, space- or comma-separated; inf: the noiseless run (default: 1 2 4 8)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per point (default: 3)")
    p.add_argument("--clients", type=int, default=200, help="clients (default: 200)")
    p.add_argument("--rounds", type=int, default=10, help="FedAvg rounds = noised releases (default: 10)")
    p.add_argument("--hidden", type=int, default=32, help="MLP hidden units (default: 32)")
    p.add_argument("--lr", type=float, default=0.3, help="local SGD learning rate (default: 0.3)")
    p.add_argument("--clip", type=float, default=0.5, help="L2 clip norm of a client's update (default: 0.5)")
    p.add_argument("--bits", type=int, default=20, help="bits per coordinate of the noisy sum (default: 20)")
    p.add_argument("--delta", type=float, default=1e-5, help="delta (default: 1e-5)")
    p.add_argument("--mechanisms", nargs="+", default=list(MECHANISMS),
                   help="mechanisms, space- or comma-separated (default: all; the table and plot need all three)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    epsilons = [float(e) for arg in args.epsilons for e in arg.split(",") if e]
    mechanisms = [m for arg in args.mechanisms for m in arg.split(",") if m]
    unknown = sorted(set(mechanisms) - set(MECHANISMS))
    if unknown:
        p.error(f"unknown mechanism {unknown[0]!r}; choose from {', '.join(MECHANISMS)}")
    point = run_config_point if args.config else run_one
    runs = []
    for seed in range(args.seeds):
        runs.append(point(args, None, math.inf, seed))
        print(f"seed {seed} no noise: accuracy {100 * runs[-1]['accuracy']:.1f} %", flush=True)
        for eps in (e for e in epsilons if math.isfinite(e)):
            for m in mechanisms:
                runs.append(point(args, m, eps, seed))
                r = runs[-1]
                print(f"seed {seed} epsilon {eps:g} {m}: accuracy {100 * r['accuracy']:.1f} % (z {r['noise_multiplier']:.3f}, "
                      f"spent {r['epsilon_spent']:.3f}, {r['seconds']:.1f} s)", flush=True)
    finite = [e for e in epsilons if math.isfinite(e)]
    if set(mechanisms) == set(MECHANISMS):
        title = (f"{load_config(args.config, dict(args.set)).name}, {args.bits} bits" if args.config else
                 f"FedAvg on digits, {args.clients} clients, {args.rounds} rounds, {args.bits} bits")
        write_outputs(Path(args.out), args, runs, finite, title)
        print((Path(args.out) / "dp_accuracy.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
