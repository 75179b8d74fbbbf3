"""The config's torch-free copies of the registries' names equal the registries."""

from secure_fal.data import LOADERS
from secure_fal.experiment import choices
from secure_fal.models import MODEL_NAMES
from secure_fal.sampling import SAMPLERS
from secure_fal.strategies import STRATEGIES
from secure_fal.strategies.fairfal import GRADIENT_MODELS, PRIOR_ESTIMATES
from secure_fal.strategies.training import ALONE_SCHEDULES


def test_names_match_the_registries():
    assert choices.DATASETS == tuple(LOADERS)
    assert choices.MODELS == MODEL_NAMES
    assert choices.SAMPLERS == SAMPLERS
    assert (choices.ALONE_SCHEDULES, choices.PRIOR_ESTIMATES, choices.GRADIENT_MODELS) == (
        ALONE_SCHEDULES, PRIOR_ESTIMATES, GRADIENT_MODELS)
    assert {name: (c.default_sampler, c.samplers, c.federated) for name, c in choices.STRATEGIES.items()} == {
        name: (cls.default_sampler, cls.samplers, cls.federated) for name, cls in STRATEGIES.items()}
