"""Stage 2: DDIM diffusion models trained on a user's own images.

The pipelines above the model (the pure maths below it is `diffusion_maths/`):
    kid.py        Kernel Inception Distance and its feature extractors
    data.py       image folders -> tf.data pipelines
    training.py   run folders: fit, checkpoints, resume, curves, sample grids
    inference.py  generation and RePaint inpainting into folders with manifest rows
    model_folder.py  model.json: a run folder's own description of its network

The network lives in `u_net_backbone.py` and the model in `diffusion_model.py` (top level,
where users look for them).
"""
