"""Pure maths of the diffusion models (numpy-testable; no files, no Keras state), the layer
below `u_net_backbone.py` and `diffusion_model.py`:

    schedule.py    cosine noise schedule, DDIM step with eta, RePaint and SDEdit time paths,
                   guidance, clipping of the clean-image estimate, prediction targets, min-SNR
    unet_rules.py  which U-Net shapes are valid, and where attention fits
    label_balance.py  how often a shared model sees each label's images (repeat factors)
"""
