"""Mask-based out-of-distribution test sets by inpainting (python3 -m inpainting).

Pure parts: `masks` (generate / load / fit / feather), `crops` (crop window and paste-back
maths); prompts come from `pretrained.prompts`; generators: `backends` (KerasHub Stable
Diffusion 3 through `pretrained.sd3`, our DDIM with RePaint / SDEdit); pipelines: `run`
(generate an OOD set), `compare` (classifier in-distribution vs OOD); pictures: `sheet`;
command line: `__main__`.
"""
