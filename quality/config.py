"""Settings of `python3 -m quality audit` and `python3 -m quality recognisability`.

Kept beside the package for now (the project's other settings live in the top-level
config.py); the CLI flags are generated from these dataclasses by `cli.flags`.

Example:
    >>> from cli.flags import parse_config
    >>> cfg, _ = parse_config(AuditConfig, ["--balanced_dir", "b", "--test_dir", "t",
    ...                                     "--out_dir", "o"])
    >>> cfg.percentile
    5.0
"""
from __future__ import annotations

from dataclasses import dataclass

from cli.flags import ConfigError, opt


@dataclass
class _QualityInputs:
    balanced_dir: str = opt("", "A folder with manifest.csv (stage 3's balanced_data, or any "
                            "folder + manifest): rows whose generator is not in "
                            "--real_generators are the synthetic images judged.",
                            required=True)
    train_dir: str = opt("", "Real training images, one sub-folder per label. Default: the "
                         "manifest's real rows.")
    test_dir: str = opt("", "Real test images, one sub-folder per label (never trained on).",
                        required=True)
    out_dir: str = opt("", "New folder for the results (never inside an input folder).",
                       required=True)
    classifier_run: str = opt("", "A finished real-only classifier run folder "
                              "(python3 -m classifier.train).")
    real_generators: list[str] = opt(["original"], "Manifest generators that are real "
                                     "images; every other row is synthetic (add rotate_flip "
                                     "to count stage-1 rotations as real).")


@dataclass
class AuditConfig(_QualityInputs):
    """python3 -m quality audit: flag synthetic images that copy a real training image.

    Each synthetic image's nearest real training image in a feature space, flagged when
    closer than real test images come (memorisation)."""

    pixels: bool = opt(True, "Audit in pixel space (32 px, brightness and contrast taken "
                       "out): the copy detector, flipped copies included.")
    kid_features: str = opt("auto", "KID feature space too: InceptionV3 (auto: when its "
                            "weights can be had, else a fixed random conv net, which flags "
                            "look-alikes rather than copies), random, inception, or none.",
                            choices=("auto", "inception", "random", "none"))
    percentile: float = opt(5.0, "Percentile of the test-to-train nearest distances below "
                            "which a synthetic image is flagged.", min=0.0, max=100.0)
    min_reference: int = opt(5, "With fewer test images than this the threshold is the "
                             "smallest test-to-train distance instead of the percentile.",
                             min=1)
    metric: str = opt("cosine", "Distance between L2-normalised features.",
                      choices=("cosine", "l2"))
    scope: str = opt("label", "One threshold per label from its own test images (labels "
                     "with too few take the global one), or one global threshold for all.",
                     choices=("label", "global"))
    sheet_pairs: int = opt(16, "Closest (synthetic | nearest real) pairs drawn in "
                           "closest_pairs.png.", min=1, max=256)

    def validate(self) -> None:
        if not self.pixels and self.kid_features == "none" and not self.classifier_run:
            raise ConfigError("--no-pixels with --kid_features none needs --classifier_run "
                              "(no feature space left)")


@dataclass
class RecognisabilityConfig(_QualityInputs):
    """python3 -m quality recognisability: GAN-test and GAN-train accuracy per label.

    GAN-test: a real-only classifier on the generated images; GAN-train: a classifier
    trained on synthetic images only, tested on real ones."""

    gan_train: bool = opt(True, "Train the synthetic-only classifier (GAN-train).")
    real_baseline: bool = opt(True, "Train the same recipe on the real images of the same "
                              "labels, to read GAN-train against.")
    classifier_config: str = opt("", "JSON of classifier settings (ClassifierConfig keys) for "
                                 "the classifiers trained here, applied over --classifier_run's "
                                 "settings (or the classifier defaults).")
    backbone: str | None = opt(None, "Classifier network (overrides the recipe).",
                               choices=("efficientnetb0", "mobilenetv3small", "small_cnn"))
    weights: str | None = opt(None, "Backbone initialisation (overrides the recipe).",
                              choices=("imagenet", "none"))
    input_shape: int | None = opt(None, "Square input side (overrides the recipe).", min=16,
                                  max=1024)
    number_epochs: int | None = opt(None, "Maximum epochs (overrides the recipe).", min=1)
    batch_size: int | None = opt(None, "Images per training step (overrides the recipe).",
                                 min=1)
    seed: int | None = opt(None, "Seed of the classifiers (overrides the recipe).", min=0)
    verbose: int = opt(0, "Keras fit verbosity of the classifiers (0 silent, 2 one line per "
                       "epoch).", min=0, max=2)
