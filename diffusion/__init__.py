"""Stage 2: DDIM diffusion models trained on a user's own images.

Layers, from pure to impure:
    schedule.py   noise schedule, DDIM step with eta, RePaint jump schedule (numpy-testable)
    kid.py        Kernel Inception Distance and its feature extractors
    data.py       image folders -> tf.data pipelines
    training.py   run folders: fit, checkpoints, resume, curves, sample grids
    inference.py  generation and RePaint inpainting into folders with manifest rows

The network lives in `u_net_backbone.py` and the model in `diffusion_model.py` (top level,
where users look for them).
"""
