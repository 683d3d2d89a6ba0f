"""The three BADSEG stages (§5): surrogate (1), Gumbel-Softmax trigger search (2), pair ranking (3).

Example:
    >>> from badseg.stages import build_search_set, RelaxedTrigger, SurrogateObjective, optimize_trigger
    >>> data = build_search_set(surrogate_set, attack, search_space(attack), (192, 256))
    >>> result = optimize_trigger(data, RelaxedTrigger(search_space(attack)), SurrogateObjective(model))
    >>> result.trigger(), result.placement
"""

from badseg.stages.learnable import LearnabilityObjective, augment_batch, split_search_set
from badseg.stages.objective import SurrogateObjective, psnr, ssim
from badseg.stages.pair_ranking import (
    ClassCentres,
    Pair,
    PairChoice,
    batch_centres,
    choose_pair,
    class_centres,
    distance_matrix,
    rank_agreement,
    rank_pairs,
    suitable_vectors,
)
from badseg.stages.relaxed import (
    ATTRIBUTES,
    POSITION_PLACEMENTS,
    RelaxedTrigger,
    SearchSet,
    build_search_set,
    one_hot_weights,
    search_space,
)
from badseg.stages.surrogate import SurrogateData, holdout_indices, surrogate_data, train_surrogate
from badseg.stages.trigger_search import (
    SearchResult,
    SearchSettings,
    gumbel_softmax_sample,
    optimize_trigger,
    sweep_options,
    temperature,
)

__all__ = [
    "ATTRIBUTES",
    "POSITION_PLACEMENTS",
    "ClassCentres",
    "LearnabilityObjective",
    "Pair",
    "PairChoice",
    "RelaxedTrigger",
    "SearchResult",
    "SearchSet",
    "SearchSettings",
    "SurrogateData",
    "SurrogateObjective",
    "augment_batch",
    "batch_centres",
    "build_search_set",
    "choose_pair",
    "class_centres",
    "distance_matrix",
    "gumbel_softmax_sample",
    "holdout_indices",
    "one_hot_weights",
    "optimize_trigger",
    "psnr",
    "rank_agreement",
    "rank_pairs",
    "search_space",
    "split_search_set",
    "ssim",
    "suitable_vectors",
    "surrogate_data",
    "sweep_options",
    "temperature",
    "train_surrogate",
]
