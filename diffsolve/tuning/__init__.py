"""Step grids tuned to a model and a solver (docs/design.md §8): a teacher, DP, refinement by autograd, validation.

Objective: the solver's end-point error to a teacher, E‖x_K(grid) − x*(t_end)‖²/d over training draws of x_T (or a
trimmed mean of it); the error on held-out draws is reported beside it.
(a) The teacher (teacher.py): a high-NFE ipndm_v solve in the network's dtype, its error measured against itself at
    twice the steps, cached on disk per chunk of draws; its states and ε at M candidate times are recorded.
(b) GITS-style DP (dp.py): C[i, j] = RMSE of one DDIM step along the teacher (no extra network call), the K-step
    path minimising Σ C found exactly.
(c) Refinement (refine.py, objective.py): from the best of the DP grid and the standard grids (training objective),
    L-BFGS-B on the K λ-step logits, then on those and K − 1 decoupled evaluation times λ′_i = λ_i − δ_i (span.py),
    with the gradient of the objective by one backward pass through the solver (diffsolve.solvers.exp.weighted:
    the solver's own coefficients as functions of the λ's, autograd through the network's inputs, its weights
    frozen); finite differences where the network is not differentiable (with a notice).
(d) The start and each refinement are compared on validation draws; the teacher's error must be ≤ 0.1× the
    training error reached (else a finer teacher, automatically). Draws are cut into chunks dealt to torchrun's
    ranks and reduced in order (draws.py): the grid does not depend on the world size. Several NFEs share the
    teacher and the DP cost matrix. Progress bars per stage, the cost in sample-evaluations, max_seconds (ledger.py).
"""

from .api import learn, tune
from .dp import dp_path
from .objective import OBJECTIVES, TuningError
from .refine import OPTIMIZERS
from .result import TunedGrid
from .settings import DEFAULTS, GRADIENTS, METHODS, STANDARD_GRIDS, VALIDATION_OFFSET, TuningNotice
from .teacher import Teacher, default_cache_dir

__all__ = ["DEFAULTS", "GRADIENTS", "METHODS", "OBJECTIVES", "OPTIMIZERS", "STANDARD_GRIDS", "VALIDATION_OFFSET",
           "Teacher", "TunedGrid", "TuningError", "TuningNotice", "default_cache_dir", "dp_path", "learn", "tune"]
