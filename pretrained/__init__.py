"""Pretrained text-to-image generators (KerasHub Stable Diffusion 3) and their prompts.

Models: `sd3` (load a preset or a local preset folder, failing in one line when it cannot;
image-to-image edits with a per-image seed and DIAGen's noise on the encoded prompt).
Pure: `prompts` (read, cycle and write class;prompt files; DIAGen-style template variation).
Command line: `python3 -m pretrained prompts` writes a prompt file to edit.
Used by stage 3 (`--generator sd_img2img`) and by the inpainting tool.
"""
