"""Stage 3 in feature space (LDMLR, Han et al. 2024): a class-conditional diffusion model
over a classifier's penultimate feature vectors, so that a re-trained head can see new
vectors of the rare labels without any new pixels.

    stats.py      pure numpy: standardisation, per-vector seeds, draw weights, checks
    model.py      FeatureDenoiser, the MLP denoiser (Keras)
    diffusion.py  FeatureTrainer (compiled training steps, EMA) and FeatureDiffusion
                  (batched, seeded DDIM sampling with classifier-free guidance)
    train.py      run folders: train_feature_model (train or resume), load_feature_model
    quality.py    feature_quality: per-label KID and memorisation share of generated vectors

The schedule, targets, guidance and DDIM step are `diffusion_maths/schedule.py`'s.
docs/feature_fill.md says what was measured.
"""
