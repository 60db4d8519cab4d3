"""classic_fill: stage 3's gap filled with classic augmentations of real images.

The classic-fill arm of the evidence protocol: the same labels and sites get the same number
of new images as the diffusion arm (stage 3's planner), but each is an albumentations
augmentation of a real image of its label and site, recorded so that it can be made again.

Modules: `config` (settings), `presets` (named pipelines, pipeline files), `replay` (seeded
apply, JSON-exact replay records, `replay_row`), `plan` (sources per image, pure), `run`
(folders and manifest); `python3 -m classic_fill` is the command line.
"""
