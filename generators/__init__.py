"""Generators: one object per way of making an image from a model (DDIM or GAN sampling,
SDEdit, RePaint, Stable Diffusion 3 edits), shared by stage 3 and the inpainting tool.

`generators.registry` maps each generator's name to its class; `generators.base` holds the
interface they share.
"""
