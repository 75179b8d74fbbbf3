"""The config's torch-free copies of the registries' names equal the registries."""

from secure_fal.data import LOADERS
from secure_fal.experiment import choices
from secure_fal.models import MODEL_NAMES
from secure_fal.sampling import SAMPLERS
from secure_fal.secagg.privacy import MECHANISMS
from secure_fal.strategies import STRATEGIES
from secure_fal.strategies.fairfal import GRADIENT_MODELS, PRIOR_ESTIMATES
from secure_fal.strategies.training import ALONE_SCHEDULES


def test_names_match_the_registries():
    assert choices.DATASETS == tuple(LOADERS)
    assert choices.MODELS == MODEL_NAMES
    assert choices.SAMPLERS == SAMPLERS
    assert (choices.ALONE_SCHEDULES, choices.PRIOR_ESTIMATES, choices.GRADIENT_MODELS, choices.DP_MECHANISMS) == (
        ALONE_SCHEDULES, PRIOR_ESTIMATES, GRADIENT_MODELS, MECHANISMS)
    assert {name: (c.default_sampler, c.samplers, c.federated) for name, c in choices.STRATEGIES.items()} == {
        name: (cls.default_sampler, cls.samplers, cls.federated) for name, cls in STRATEGIES.items()}


LOAD_PROBE = """
import sys
from secure_fal.experiment.loading import load_config
config = load_config(None, {"privacy.epsilon": 4.0, "privacy.mechanism": "skellam"})
print(config.privacy.enabled, sorted(m for m in sys.modules if m.startswith("secure_fal.secagg") or m == "torch"))
"""


def test_loading_a_config_with_privacy_imports_neither_the_dp_layer_nor_torch():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOAD_PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["True", "[]"], done.stdout + done.stderr[-2000:]
