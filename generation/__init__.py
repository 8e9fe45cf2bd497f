"""Sketch -> photo-like image in one step (pix2pix-turbo on SD-Turbo). Torch-free at import."""

DEFAULT_GAMMA = 0.4  # the authors' inference default for the stochastic sketch model's r
