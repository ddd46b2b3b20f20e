"""One line of documentation for every config key; `ddm --help` prints them."""

DOCS = {
    "seed": "integer seed; every step draws its own key from it",
    "dtype": "float32 or float64 (float64 turns on JAX's x64 mode for the run)",
    "system.name": "target system (see `ddm systems`); its parameters sit beside it",
    "system.file": "instead of `name`: recorded trajectories (.npz t, z; .npy "
    "[t, z...]; .csv t,z0,...[,trial]) to fit; a relative path is taken from the "
    "config file's folder (from the current folder in an override); the last 20% "
    "(of the trials, or of each trial if < 5) is held out; see docs/data.md",
    "system.truth": "with `file`: the system that made it (its parameters beside); "
    "adds drift_rel_error against its drift on the held-out samples",
    "model.num_neurons": "N, the number of rate neurons (≥ the latent dimension K)",
    "model.connectivity": "low_rank (W = E Vᵀ, never formed) or dense (W free, N×N)",
    "model.nonlinearity": "φ: tanh, softplus, relu or identity",
    "model.tau": "neuron time constant τ > 0, in the target's time units",
    "model.noise": "latent (constant G) or gated (G(z) = G0 + Σ φ_i A_i)",
    "model.gain": "scale of the embedding E relative to the data's spread",
    "model.bias_spread": "half-width of the uniform jitter added to the bias b",
    "model.weight_scale": "size of the random recurrent and noise weights at init",
    "data.method": "sampling measure ρ: stationary, box or mixture",
    "data.num_points": "training points M",
    "data.held_out_points": "held-out points from an independent target run",
    "data.num_paths": "target paths in a stationary sampling run",
    "data.burn_in": "time discarded at the start of a sampling run",
    "data.spacing": "time between points kept along a sampling path",
    "data.dt": "Euler–Maruyama step of the sampling run",
    "data.box_fraction": "share of box points in a mixture",
    "train.solve": "start from the closed-form readout (SVD/QR least squares)",
    "train.solver": "svd (with cutoff rcond) or qr",
    "train.rcond": "relative singular-value cutoff of the SVD solve",
    "train.ridge": "ridge (Tikhonov) weight per sample in the solve",
    "train.data_ridge": "ridge of the solve from a trajectory file: auto (Mallows' "
    "C_p with the noise variance of Δz/Δt) or a number per sample",
    "train.correction": "finite-Δt bias correction of a fit from a file: none, ito "
    "(one Itô–Taylor step, any drift) or ou (exact for a linear drift)",
    "train.optimizer": "adam, adamw or sgd (optax) for gradient refinement",
    "train.learning_rate": "optimizer learning rate",
    "train.steps": "gradient steps after the solve (0: closed form only)",
    "train.batch_size": "points per gradient step (null: all)",
    "train.chunk_size": "steps per compiled lax.scan chunk between host visits",
    "train.diffusion_weight": "λ_D, weight of the diffusion loss",
    "train.manifold_weight": "λ_⊥, weight of the off-manifold loss (dense only)",
    "simulate.solver": "euler (Itô Euler–Maruyama) or heun (Stratonovich; additive "
    "noise only)",
    "simulate.dt": "fixed step of both the network and the target simulation",
    "simulate.t1": "duration of each stationary simulation",
    "simulate.burn_in": "initial time dropped before statistics",
    "simulate.num_paths": "independent paths of the network and of the target",
    "simulate.save_every": "keep every this many steps",
    "evaluate.lyapunov_dt": "step of the Benettin (Tsit5) runs for λ_max",
    "evaluate.lyapunov_t1": "measuring time of each λ_max run",
    "evaluate.lyapunov_transient": "time before measuring λ_max",
    "evaluate.lyapunov_paths": "starts averaged for λ_max (0 skips it)",
    "decompose.grid_cells": "cells per axis of the Fokker–Planck grid for K = 2 "
    "(`ddm decompose`)",
    "decompose.grid_cells_3d": "cells per axis of the Fokker–Planck grid for K = 3",
    "decompose.lag": "lag (time units) of the lagged-covariance asymmetry",
    "decompose.fit_points": "points where the readouts of f_rev and f_irr are fitted",
    "cues.trials_per_pattern": "cued recall trials per pattern, for targets that "
    "take inputs (cued_wells); each starts in another well",
    "cues.onset": "time the cue switches on",
    "cues.duration": "time the cue stays on",
    "cues.hold": "time after the cue's end at which persistence is scored (the "
    "trial's end)",
    "cues.amplitude": "size of the cue u = amplitude · e_μ",
}
