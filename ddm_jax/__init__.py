"""ddm_jax: drift–diffusion matching of stochastic differential equations in rate RNNs.

The public names of DESIGN §2; see the README for a first example.
"""

from . import decompose, fokker_planck, systems
from .data import sample_points
from .io import export_npz, load_model, load_run, save_model
from .losses import matching_loss, relative_errors
from .metrics import evaluate, lyapunov_max
from .parallel import data_sharding
from .rnn import LatentRNN
from .simulate import simulate_rnn, simulate_sde
from .solve import solve_readout
from .train import DivergenceError, fit, make_train_step

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "LatentRNN",
    "data_sharding",
    "evaluate",
    "decompose",
    "export_npz",
    "fit",
    "fokker_planck",
    "load_model",
    "load_run",
    "lyapunov_max",
    "make_train_step",
    "matching_loss",
    "relative_errors",
    "sample_points",
    "save_model",
    "simulate_rnn",
    "simulate_sde",
    "solve_readout",
    "systems",
]
