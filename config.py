"""Defaults of every stage. Edit the values here; flags on the command line override them.

Each stage reads one dataclass below; its command-line flags are generated from the fields
(`python3 site_id_balancer.py --help` lists them with these defaults and ranges), a JSON file
given with `--config` overrides the defaults, and the resolved settings are written as
`config.json` next to every output.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from cli.flags import ConfigError, check_number, check_path_component, opt
from diffusion_maths.unet_rules import UNetConfigError, validate_unet_args
from setting_rules.arm_names import ArmError, normalise_arm, parse_fill_dirs, starts_from
from setting_rules.mask_regions import REGIONS, region_share


# Field groups shared by several stages, declared once.
@dataclass
class ExecutorConfig:
    """Where a command's independent jobs run: here, on a process pool, or as Ray tasks
    (docs/cluster.md)."""

    executor: str = opt("local", "Where the independent jobs go: here, one after another; "
                        "'pool': in parallel on this machine's cores, in worker processes "
                        "that each import TensorFlow and decode the data once; or as Ray "
                        "tasks on this machine or a cluster (docs/cluster.md).",
                        choices=("local", "pool", "ray"))
    ray_address: str = opt("", "--executor ray: '' starts a local Ray for this command; "
                           "'auto' or 'ray://HOST:10001' joins a running cluster.")
    task_cpus: float = opt(1.0, "--executor ray or pool: CPU cores each job asks for "
                           "(also its thread budget; the pool runs cores / task_cpus jobs "
                           "at once).", min=0.1, max=1024)
    task_gpus: float | None = opt(None, "--executor ray: GPUs each job asks for (default: "
                                  "1 when the cluster has GPUs, else 0; 0.5 shares one GPU "
                                  "between two jobs).", min=0.0, max=64)


# Where a command's jobs run, not what they compute: left out of every resume fingerprint.
EXECUTOR_FIELDS = tuple(f.name for f in fields(ExecutorConfig))


@dataclass
class SiteRuleConfig:
    """How each image's site_id is read (stages 1 and 3, classic_fill)."""

    site_regex: str | None = opt(None, "Regex searched in each file name; its group 'site' "
                                 "(or group 1) is the site_id. Default: the prefix before "
                                 "the first '_'.")
    site_csv: str | None = opt(None, "CSV with columns path,site_id (path relative to "
                               "in_dir); overrides the file-name rule.")

    def validate(self) -> None:
        if self.site_regex and self.site_csv:
            raise ConfigError("give either --site_regex or --site_csv, not both")


@dataclass
class StableDiffusionConfig:
    """Which pretrained Stable Diffusion 3 to load (stage 3's sd_img2img, the OOD sets)."""

    sd_preset: str = opt("stable_diffusion_3_medium", "Stable Diffusion 3: a KerasHub preset "
                         "name (downloaded: gated, several GB) or a local preset folder.")
    sd_image_size: int | None = opt(None, "Stable Diffusion 3: square size the model works "
                                    "at, a multiple of 16 (default: the preset's, 1024 for "
                                    "SD3).", min=64, max=2048)
    sd_dtype: str | None = opt(None, "Stable Diffusion 3: dtype of the weights (float16 or "
                               "bfloat16 halve the memory on a GPU; default: the preset's).",
                               choices=("float32", "float16", "bfloat16"))

    def validate(self) -> None:
        # the VAE halves the size three times and the transformer's patches are 2x2
        if self.sd_image_size is not None and self.sd_image_size % 16:
            raise ConfigError(f"--sd_image_size must be a multiple of 16, got "
                              f"{self.sd_image_size}")


def parse_label_models(specs: list[str] | None, flag: str = "--label_models"
                       ) -> list[tuple[str, str]]:
    """LABEL=MODEL_DIR specs parsed into (label, model folder) pairs.

    Example:
        >>> parse_label_models(["4=models/run4"])
        [('4', 'models/run4')]
    """
    pairs = []
    for spec in specs or []:
        label, sep, path = spec.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise ConfigError(f"{flag} expects LABEL=MODEL_DIR, got {spec!r}")
        pairs.append((label.strip(), path.strip()))
    return pairs


@dataclass
class BalancerConfig(SiteRuleConfig):
    """Stage 1 (site_id_balancer.py): equalise the sites of every label with rotations + flips."""

    in_dir: str = opt("", "Dataset folder with one sub-folder per label.", required=True)
    out_dir: str = opt("diffusion_data", "Output folder (created; never overwritten).")
    labels: list[str] | None = opt(None, "Label folders to balance (default: all of them).",
                                   path_component=True)
    theta: float = opt(5.0, "Rotation step in degrees: augmentations rotate by theta, "
                       "2*theta, ... multiplier*theta.", min=0.1, max=45.0)
    multiplier: int = opt(6, "Number of rotation steps; each is used plain and flipped, so "
                          "one image yields up to 2*multiplier augmentations.", min=1, max=90)
    fact: float | None = opt(None, "Zoom after rotation. Default: computed per image from the "
                             "angle and aspect ratio, the least zoom that leaves no black "
                             "corner (the original pipeline fixed it at 1.3).", min=1.0, max=10.0)
    seed: int = opt(42, "Seed of the plan (which images of a site are augmented first).",
                    min=0)
    min_size: int = opt(16, "Images whose shorter side is smaller are skipped (listed).",
                        min=2)
    workers: int | None = opt(None, "Worker threads (default: all cores).", min=1)
    jpeg_quality: int = opt(95, "JPEG quality of augmented images from JPEG sources "
                            "(other sources are written as lossless PNG).", min=50, max=100)
    link_originals: bool = opt(False, "Hard-link the originals into out_dir instead of "
                               "copying them (saves disk, but editing a linked file in "
                               "out_dir then edits your original).")

    def validate(self) -> None:
        if self.theta * self.multiplier > 45.0 + 1e-9:
            raise ConfigError(f"theta*multiplier must be <= 45 degrees (got "
                              f"{self.theta:g}*{self.multiplier} = "
                              f"{self.theta * self.multiplier:g}): larger rotations crop "
                              f"away most of the image")


# Settings of the U-Net, its noise schedule and the shape of its optimizer's state (a
# constant learning rate is a saved variable, a schedule is not): a model folder restores
# these, whatever the flags of a later run say.
ARCHITECTURE_FIELDS = ("image_size", "widths", "block_depth", "embedding_dims",
                       "attention_in_bottleneck", "attention_in_up_down_sample", "groups",
                       "min_signal_rate", "max_signal_rate", "conditional", "channels",
                       "block_conditioning", "site_conditioning", "augment_conditioning",
                       "prediction", "residual_block", "model", "gan_latent_dim", "lr_decay")
# What a model folder's config.json meant when it was written before a field existed (the
# architecture of that time), so old folders keep loading.
LEGACY_ARCHITECTURE = {"channels": "3", "block_conditioning": False, "site_conditioning": False,
                       "augment_conditioning": False, "prediction": "eps",
                       "residual_block": "postnorm", "model": "ddim", "lr_decay": "constant"}


# Settings only the diffusion U-Net, its noise schedule and its AdamW read: --model gan trains
# without them (it has its own widths-only networks, Adam and DiffAugment).
DDIM_ONLY_FIELDS = ("prediction", "loss_weighting", "min_snr_gamma", "lr_decay",
                    "learning_rate", "weight_decay", "unet_dropout", "residual_block",
                    "block_conditioning", "site_conditioning", "site_dropout",
                    "augment_conditioning", "augment_p", "label_dropout", "block_depth",
                    "embedding_dims", "attention_in_bottleneck", "attention_in_up_down_sample",
                    "groups", "min_signal_rate", "max_signal_rate")


@dataclass
class DiffusionConfig(ExecutorConfig):
    """Stage 2 (run_diffusion.py): train a DDIM diffusion model, generate or inpaint with it."""

    # What to do and where
    runtime: str = opt("training", "What to run: train a model, generate images with one, or "
                       "inpaint masked images with one.",
                       choices=("training", "inference", "inpainting"))
    in_dir: str = opt("", "Training images: a folder of images, or of one sub-folder of images "
                      "(diffusion_data/L2/2/); with --conditional, one sub-folder per label.")
    out_dir: str = opt("results", "Training: a new run folder is made inside it. Inference and "
                       "inpainting: the images and manifest.csv are written here.")
    model_dir: str = opt("", "A run folder (config.json + weights) to generate or inpaint "
                         "with, or to resume with --load_and_train.")
    load_and_train: bool = opt(False, "Resume the training in --model_dir: continues the "
                               "epoch count, weights and optimizer state.")
    seed: int = opt(42, "Seed of the data split, the training noise and the generated "
                    "images (image k of a run uses seed (seed, k)).", min=0)

    # Data
    image_size: tuple[int, int] = opt((64, 64), "Image height and width; each must divide by "
                                      "2^(len(widths)-1). Images are centre-cropped to this "
                                      "aspect ratio, then resized.", min=8, max=4096)
    validation_split: float = opt(0.15, "Share of the images held out for validation loss "
                                  "and KID (of each label's, for a conditional model).",
                                  min=0.0, max=0.9)
    channels: str = opt("auto", "Image channels: 1 (grey), 3 (colour), or auto (grey when "
                        "every sampled training image is grey). Grey data trained as 3 "
                        "channels invents colour.", choices=("auto", "1", "3"))
    flip_augment: bool = opt(True, "Random horizontal flips while training.")
    cache_images: bool | None = opt(None, "Keep decoded images in memory (default: when "
                                    "they take less than 2 GB).")

    # U-Net
    widths: list[int] = opt([32, 64, 96, 128], "Channels per U-Net level; multiples of "
                            "--groups.", min=1, min_len=2)
    block_depth: int = opt(2, "Residual blocks per level.", min=1, max=8)
    embedding_dims: int = opt(32, "Size of the noise-level (and label) embedding; even.",
                              min=2, max=2048)
    attention_in_bottleneck: bool = opt(True, "Self-attention in the bottleneck.")
    attention_in_up_down_sample: bool = opt(False, "Self-attention in the down/up blocks, "
                                            "only at feature maps of at most 32x32.")
    groups: int = opt(8, "GroupNorm groups; must divide every width.", min=1)
    conditional: bool = opt(False, "One class-conditional model for all label folders of "
                            "--in_dir (classifier-free guidance) instead of one per label.")
    label_dropout: float = opt(0.1, "Conditional: share of training steps without the label "
                               "(makes guidance possible).", min=0.0, max=1.0)
    label_balance: float = opt(0.0, "Conditional: how much more often rarer labels' images "
                               "are drawn while training: each label's share of the batches "
                               "goes as its image count to the power 1 - this (0 = as they "
                               "come, 1 = every label equally often), by repeating images. "
                               "Measured: the rare labels come out more recognisable and more "
                               "often near-copies (the memorisation gate moves those aside).",
                               min=0.0, max=1.0)
    block_conditioning: bool = opt(True, "Feed the noise level and every condition into each "
                                   "residual block (scale and shift of its normalisation, as "
                                   "ADM/EDM); off = the legacy network that sees them once at "
                                   "its input and can ignore the label.")
    site_conditioning: bool = opt(False, "Also condition on the site id (from the stage-1 "
                                  "manifest, else the file-name prefix before '_'), so images "
                                  "can be generated for a (label, site) cell.")
    site_dropout: float = opt(0.1, "Share of training steps without the site (guidance on the "
                              "site).", min=0.0, max=1.0)
    augment_conditioning: bool = opt(True, "Tell the network which flip / stage-1 rotation "
                                     "each training image went through (EDM's augmentation "
                                     "conditioning); sampling asks for none, so they do not "
                                     "leak into the samples.")
    augment_p: float = opt(0.0, "ddim with --augment_conditioning: probability of each "
                           "online augmentation of a training image (whole-pixel shift up "
                           "to 1/8, scale, brightness, contrast), told to the network so it "
                           "does not leak into samples: more distinct images from few photos.",
                           min=0.0, max=1.0)
    residual_block: str = opt("prenorm", "U-Net block: prenorm = one GroupNorm (conditioning "
                              "folded in) before two 3x3 convolutions (1.3-1.4x faster "
                              "training steps on CPU than postnorm); lean = the same with a "
                              "1x1 second convolution, the width changed first (about half "
                              "the multiply-adds); postnorm = the original two-GroupNorm "
                              "block.", choices=("prenorm", "lean", "postnorm"))
    unet_dropout: float = opt(0.0, "ddim: dropout between the two convolutions of every "
                              "residual block while training (as ADM); against memorising "
                              "a few hundred images.", min=0.0, max=0.9)
    prediction: str = opt("eps", "What the network predicts: the noise (eps) or v.",
                          choices=("eps", "v"))
    loss_weighting: str = opt("none", "Loss weight per noise level: none, or min_snr "
                              "(min-SNR-gamma).", choices=("none", "min_snr"))
    min_snr_gamma: float = opt(5.0, "Gamma of --loss_weighting min_snr.", min=0.1, max=100.0)
    model: str = opt("ddim", "Generator family: ddim (the diffusion U-Net) or gan (a small "
                     "class-conditional GAN with DiffAugment and R1, gan_model.py; uses "
                     "--widths, --image_size, --channels, --conditional, --ema; stage 3 "
                     "samples it like a DDIM model, SDEdit excepted).",
                     choices=("ddim", "gan"))
    gan_latent_dim: int = opt(64, "gan: size of the noise vector.", min=2, max=1024)
    gan_r1_gamma: float = opt(0.1, "gan: weight of the R1 penalty on real images.", min=0.0,
                              max=100.0)
    gan_learning_rate: float = opt(2e-4, "gan: Adam learning rate of both networks.",
                                   min=1e-7, max=1.0)

    # Training
    num_epochs: int = opt(300, "Epochs (early stopping may end sooner); ignored when "
                          "--train_steps is given.", min=1)
    train_steps: int = opt(0, "Training budget in optimizer steps (0 = use --num_epochs). "
                           "Small datasets need thousands of steps, far more than their "
                           "epochs suggest.", min=0)
    batch_size: int = opt(16, "Images per training step.", min=1, max=4096)
    learning_rate: float = opt(1e-3, "AdamW learning rate.", min=1e-7, max=1.0)
    lr_decay: str = opt("constant", "Learning rate over the budget: constant, or cosine "
                        "(from --learning_rate to 0 at the last planned step).",
                        choices=("constant", "cosine"))
    weight_decay: float = opt(1e-4, "AdamW weight decay.", min=0.0, max=1.0)
    ema: float = opt(0.999, "EMA decay of the weights used for sampling.", min=0.0, max=1.0)
    min_signal_rate: float = opt(0.02, "Signal rate at diffusion time 1 (pure noise end).",
                                 min=1e-4, max=0.5)
    max_signal_rate: float = opt(0.95, "Signal rate at diffusion time 0 (clean end).",
                                 min=0.5, max=0.9999)
    use_mix_precision: bool | None = opt(None, "Mixed precision: mixed_float16 on a GPU, "
                                         "mixed_bfloat16 on a CPU. Default (auto): on for "
                                         "GPUs and for CPUs with bf16 units.")
    gpu_index: int | None = opt(0, "The GPU to use ('auto': all, for --distribute "
                                "mirrored); ignored without GPUs.", min=0)
    distribute: str = opt("none", "Data-parallel training: 'mirrored' over the GPUs of this "
                          "machine, 'multiworker' over several processes or machines "
                          "(TF_CONFIG; docs/cluster.md).",
                          choices=("none", "mirrored", "multiworker"))
    cpu_devices: int = opt(1, "Without GPUs: split the CPU into this many devices (to test "
                           "--distribute mirrored).", min=1, max=64)
    num_workers: int = opt(2, "--distribute multiworker --executor ray: the worker processes "
                           "Ray starts (each with --task_cpus and --task_gpus) and gives "
                           "their TF_CONFIG.", min=1, max=1024)
    checkpoint_monitor: str = opt("val_n_loss", "Metric that picks best.weights.h5 and drives "
                                  "early stopping (val_kid computes KID every epoch).",
                                  choices=("val_n_loss", "val_kid"))
    early_stop_patience: int = opt(30, "Epochs without improvement before stopping "
                                   "(0 = never stop early).", min=0)
    early_stop_start_epoch: int = opt(50, "Early stopping watches only from this epoch on.",
                                      min=0)
    early_stop_min_delta: float = opt(1e-4, "Smallest change that counts as improvement.",
                                      min=0.0)
    kid_every: int = opt(10, "Compute KID on the validation images every N epochs "
                         "(0 = never).", min=0)
    kid_images: int = opt(64, "Images generated for each KID estimate.", min=2)
    kid_diffusion_steps: int = opt(20, "DDIM steps of the KID images.", min=1, max=1000)
    kid_features: str = opt("auto", "KID features: InceptionV3 with ImageNet weights, or "
                            "'random' (a fixed-seed conv net, offline; KID values then compare "
                            "runs with each other only). auto = inception, else random.",
                            choices=("auto", "inception", "random"))
    sample_every: int = opt(10, "Save a grid of samples every N epochs (0 = only at the "
                            "end).", min=0)
    tensorboard: bool = opt(True, "Also log the losses, KID and sample grids for TensorBoard "
                            "in <run folder>/logs/ (tensorboard --logdir <run folder>/logs).")

    # Generation and inpainting
    images_to_generate: int = opt(5, "Images to generate (per label for conditional "
                                  "models).", min=1)
    generate_diffusion_steps: int = opt(50, "DDIM steps per generated image.", min=1,
                                        max=1000)
    eta: float = opt(1.0, "Sampling noise: 0 = deterministic DDIM, 1 = DDPM-like (the "
                     "default, measured in docs/benchmarks.md).", min=0.0, max=1.0)
    generate_batch_size: int = opt(32, "Images generated per network call.", min=1)
    generate_labels: list[str] | None = opt(None, "Conditional models: labels to generate "
                                            "(default: all).", path_component=True)
    guidance_scale: float = opt(3.0, "Conditional models: classifier-free guidance "
                                "(1 = none, 2-4 = closer to the label; 3 measured best for "
                                "recognisable images).", min=0.0, max=20.0)
    label_noise_std: float = opt(0.0, "Conditional models: Gaussian noise on the label "
                                 "embedding while sampling, for diversity.", min=0.0,
                                 max=10.0)
    inpainting_dir: str = opt("inpainting_data", "Inpainting input: images/ and masks/ with "
                              "the same file names; white mask pixels are regenerated.")
    jump_length: int = opt(10, "RePaint: levels of each jump back in time.", min=1)
    jump_n_sample: int = opt(10, "RePaint: resamplings per jump (1 = no jumps).", min=1)

    def ignored_by_gan(self) -> list[str]:
        """The DDIM-only settings (`DDIM_ONLY_FIELDS`) this config sets away from their
        defaults, as flags: what `--model gan` would silently go without.

        Example: `DiffusionConfig(model="gan", prediction="v").ignored_by_gan()` ->
        `["--prediction"]`.
        """
        defaults = {f.name: f.default for f in fields(self)}
        return [f"--{name}" for name in DDIM_ONLY_FIELDS
                if getattr(self, name) != defaults[name]]

    def validate(self) -> None:
        try:
            validate_unet_args(self.image_size, self.widths, self.block_depth,
                               self.embedding_dims, self.groups, self.attention_in_bottleneck)
        except UNetConfigError as err:
            raise ConfigError(str(err)) from None
        if self.min_signal_rate >= self.max_signal_rate:
            raise ConfigError("--min_signal_rate must be below --max_signal_rate")
        if self.runtime == "training" and not self.load_and_train and not self.in_dir:
            raise ConfigError("--in_dir is required for training")
        if (self.runtime != "training" or self.load_and_train) and not self.model_dir:
            what = "--load_and_train" if self.runtime == "training" else f"--runtime {self.runtime}"
            raise ConfigError(f"{what} needs --model_dir (a run folder with config.json)")


@dataclass
class ManyRunsConfig(ExecutorConfig):
    """Settings of every command that runs many independent trainings (train_all.py, the
    classifier's grid search and comparison)."""

    keep_going: bool = opt(False, "Carry on after a failed run (default: stop at the first "
                           "failure).")


@dataclass
class TrainAllConfig(ManyRunsConfig, DiffusionConfig):
    """Stage 2 for every label (train_all.py): one model per label folder, or one conditional."""

    in_dir: str = opt("diffusion_data", "Folder with one sub-folder of images per label.")
    out_dir: str = opt("models", "A run folder per label (or one conditional run) is made "
                       "inside it.")
    labels: list[str] | None = opt(None, "Label folders to train (default: all).",
                                   path_component=True)

    def validate(self) -> None:
        if self.runtime != "training":
            raise ConfigError("train_all.py only trains; use run_diffusion.py --runtime "
                              f"{self.runtime}")
        if self.load_and_train:
            raise ConfigError("train_all.py starts new runs; resume one label with "
                              "run_diffusion.py --load_and_train --model_dir RUN")


@dataclass
class GapPlanConfig(SiteRuleConfig):
    """The gap stage 3 and classic_fill close: which labels, to what counts, at which sites.
    Both fill the same plan from the same fields, so their arms compare at equal counts."""

    in_dir: str = opt("", "The original dataset (one sub-folder per label).", required=True)
    out_dir: str = opt("balanced_data", "Output folder: originals + synthetic images.")
    categories: list[str] = opt(["1,2,3", "4,5,6"], "Groups of labels, each written as "
                                "comma-separated labels; every category is filled up to the "
                                "largest one.")
    balance: str = opt("categories", "What to equalise: category totals, or every label.",
                       choices=("categories", "labels"))
    split_sites: bool = opt(True, "Give a label's new images to its rarest sites first "
                            "(the site is recorded in the name and manifest).")
    seed: int = opt(42, "Seed: image k of a label always gets the same seed, so it can be "
                    "made alone.", min=0)
    min_size: int = opt(16, "Originals whose shorter side is smaller are skipped (listed).",
                        min=2)
    link_originals: bool = opt(False, "Hard-link originals instead of copying them.")

    def category_labels(self) -> list[list[str]]:
        """`categories` parsed into lists of label names."""
        return [[lab.strip() for lab in cat.split(",") if lab.strip()] for cat in self.categories]

    def validate(self) -> None:
        cats = self.category_labels()
        for label in (lab for c in cats for lab in c):
            check_path_component("--categories", label)   # each label is a folder name
        if self.balance == "categories":
            if len(cats) < 2 or any(not c for c in cats):
                raise ConfigError("--categories needs at least two non-empty groups, e.g. "
                                  "--categories 1,2,3 4,5,6")
            flat = [lab for c in cats for lab in c]
            if len(flat) != len(set(flat)):
                raise ConfigError("a label appears in two --categories")


@dataclass
class AugmentationConfig(GapPlanConfig, StableDiffusionConfig):
    """Stage 3 (diffusion_augmentation.py): close the category gap with synthetic images."""

    weight_paths: list[str] | None = opt(None, "Trained model folders (run folders of "
                                         "train_all.py / run_diffusion.py); each one's "
                                         "config.json says which label(s) it generates.")
    label_models: list[str] | None = opt(None, "Explicit LABEL=MODEL_DIR pairs (several labels "
                                         "may share a model); wins over --weight_paths.")
    generator: str = opt("ddim", "How a synthetic image is made: ddim samples from noise; "
                         "sdedit varies a real image of its label (and site) at --strength "
                         "with your model; sd_img2img edits it with Stable Diffusion 3 and a "
                         "class prompt (DA-Fusion; needs --sd_preset). The source is recorded "
                         "in the manifest.", choices=("ddim", "sdedit", "sd_img2img"))
    strength: float = opt(0.6, "sdedit, sd_img2img: how far each real image is noised before "
                          "it is denoised again (0 = unchanged, 1 = a fresh sample).", min=0.0,
                          max=1.0)
    generate_diffusion_steps: int = opt(50, "Diffusion steps per image (sdedit and sd_img2img "
                                        "take --strength of them).", min=1, max=1000)
    prompt_template: str = opt("a photo of a {label}", "sd_img2img: the prompt of every image "
                               "of a class ({label}, {site}), unless --prompt_file is given.")
    prompt_file: str = opt("", "sd_img2img: a class;prompt CSV ('*' = every class; written by "
                           "python3 -m pretrained prompts): image k of a class takes prompt "
                           "k mod n of its lines.")
    prompt_noise_std: float = opt(0.0, "sd_img2img: Gaussian noise on the encoded prompt, "
                                  "relative to its size (DIAGen; 0 = off).", min=0.0, max=2.0)
    eta: float = opt(1.0, "Sampling noise: 0 = deterministic DDIM, 1 = DDPM-like (fewer "
                     "over-exposed pixels and lower KID on 3 of 3 sampling seeds; "
                     "docs/benchmarks.md).", min=0.0, max=1.0)
    guidance_scale: float = opt(3.0, "Classifier-free guidance for conditional models "
                                "(1 = plain conditional); on the label and, for "
                                "site-conditioned models, the site. 3 measured best for "
                                "recognisable images (benchmarks/bench_generator.py); "
                                "Stable Diffusion is usually run at 5-7.5.",
                                min=0.0, max=20.0)
    guidance_rescale: float = opt(0.0, "Pull each guided prediction back to the spread of "
                                  "the conditional one (0 = off, 0.7 as in Lin et al.): "
                                  "against over-exposed images at large guidance.",
                                  min=0.0, max=1.0)
    guidance_max_noise: float = opt(0.0, "Guide only the sampling steps whose noise-to-signal "
                                    "ratio is at most this (guidance in a limited interval, "
                                    "Kynkaanniemi et al. 2024: at the noisiest levels it pulls "
                                    "every image of a label to one layout); 0 = every step.",
                                    min=0.0)
    batch_size: int = opt(32, "Images generated per network call.", min=1)
    sample_weights: str = opt("best", "Which weights of a model folder to sample: best "
                              "(best.weights.h5, the best validation metric) or last "
                              "(last.weights.h5; on custom_coco better in three trainings of "
                              "four, far worse in the fourth, docs/benchmarks.md). A weights file "
                              "given instead of a folder is sampled as it is.",
                              choices=("best", "last"))
    sheet_size: int = opt(8, "Images per row of each label's contact sheet (real vs "
                          "generated).", min=1, max=32)
    audit_features: str = opt("pixels", "Memorisation audit features: pixels (32 px, each "
                              "image's brightness and contrast taken out: catches copies, "
                              "blurred or flipped ones too, with no weights), or the KID "
                              "extractor: inception (ImageNet weights), random (a fixed-seed "
                              "conv net), auto (inception, else random). The random net "
                              "flags look-alikes, not copies (docs/benchmarks.md).",
                              choices=("pixels", "auto", "inception", "random"))
    audit_scope: str = opt("label", "Memorisation audit threshold: one per label, from that "
                           "label's real images (a car is judged by how close real cars come "
                           "to each other), or one global threshold for every label.",
                           choices=("label", "global"))
    audit_percentile: float = opt(5.0, "Memorisation audit: a generated image closer to a "
                                  "training image than this percentile of the real images' "
                                  "own nearest-neighbour distances is flagged.", min=0.0,
                                  max=100.0)
    memorisation_gate: bool = opt(True, "Move flagged (memorised-looking) images to "
                                  "rejected/, list them and make fresh ones in their place "
                                  "(--gate_rounds); --no-memorisation_gate: flag and record "
                                  "only.")
    gate_rounds: int = opt(3, "--memorisation_gate: rounds in which fresh samples replace "
                           "the flagged images (each audited in turn); 0 = leave the labels "
                           "short.", min=0, max=20)

    def label_model_pairs(self) -> list[tuple[str, str]]:
        """`label_models` parsed into (label, model folder) pairs."""
        return parse_label_models(self.label_models)

    def validate(self) -> None:
        self.label_model_pairs()


# Stage 3 in feature space (feature_diffusion/, LDMLR): a small class-conditional diffusion
# model over a classifier's penultimate feature vectors instead of pixels.
@dataclass
class FeatureDiffusionConfig:
    """Feature-space generation: train an MLP denoiser on (N, D) feature vectors with
    labels, then sample new feature vectors per label (feature_diffusion/)."""

    # Denoiser (an MLP of residual blocks; the noise level and the label condition every block)
    hidden_dim: int = opt(256, "Width of the denoiser's residual MLP blocks.", min=8,
                          max=8192)
    blocks: int = opt(2, "Residual MLP blocks.", min=1, max=32)
    embedding_dims: int = opt(128, "Size of the noise-level and label embeddings; even.",
                              min=2, max=2048)
    dropout: float = opt(0.0, "Dropout inside every block while training.", min=0.0, max=0.9)
    prediction: str = opt("eps", "What the denoiser predicts: the noise (eps) or v.",
                          choices=("eps", "v"))
    min_signal_rate: float = opt(0.02, "Signal rate at diffusion time 1 (pure noise end).",
                                 min=1e-4, max=0.5)
    max_signal_rate: float = opt(0.95, "Signal rate at diffusion time 0 (clean end).",
                                 min=0.5, max=0.9999)

    # Training
    train_steps: int = opt(3000, "Training budget in optimizer steps.", min=1)
    batch_size: int = opt(256, "Feature vectors per training step (drawn with replacement).",
                          min=2, max=65536)
    learning_rate: float = opt(1e-3, "AdamW learning rate.", min=1e-7, max=1.0)
    weight_decay: float = opt(1e-4, "AdamW weight decay.", min=0.0, max=1.0)
    ema: float = opt(0.999, "EMA decay of the weights used for sampling.", min=0.0, max=1.0)
    label_dropout: float = opt(0.1, "Share of training vectors without their label "
                               "(makes classifier-free guidance possible).", min=0.0, max=1.0)
    label_balance: float = opt(0.0, "How much more often rarer labels' vectors are drawn "
                               "while training: each label's share goes as its count to the "
                               "power 1 - this (0 = as they come, 1 = every label equally).",
                               min=0.0, max=1.0)
    loss_every: int = opt(100, "Write the mean loss of every this many steps to loss.csv.",
                          min=1)

    # Generation
    generate_steps: int = opt(50, "DDIM steps per generated feature vector.", min=1,
                              max=1000)
    eta: float = opt(1.0, "Sampling noise: 0 = deterministic DDIM, 1 = DDPM-like.", min=0.0,
                     max=1.0)
    guidance_scale: float = opt(1.0, "Classifier-free guidance (1 = plain conditional; "
                                "larger = more recognisable, further from the real spread: "
                                "on Fashion-MNIST-LT features 1.5 raised KID 4x; "
                                "docs/feature_fill.md).", min=0.0, max=20.0)
    clip_features: str = opt("final", "Keep generated vectors inside the per-dimension "
                             "range of the real training vectors: none (as LDMLR), final "
                             "(the finished vectors clipped; ReLU features stay >= 0) or "
                             "every_step (each step's predicted clean vector clipped). "
                             "Measured in docs/feature_fill.md.",
                             choices=("none", "final", "every_step"))
    seed: int = opt(42, "Seed of the training noise and of the generated vectors (vector k "
                    "of a label has its own seed).", min=0)

    def validate(self) -> None:
        if self.embedding_dims % 2:
            raise ConfigError(f"--embedding_dims must be even, got {self.embedding_dims}")
        if self.min_signal_rate >= self.max_signal_rate:
            raise ConfigError("--min_signal_rate must be below --max_signal_rate")


# Stage 4 (classifier/). The original pipeline's key names are kept (mean, std, input_shape,
# grayscale, number_epochs, batch_size, learning_rate, augm_type, augm_probability,
# evaluation_type, train_dir, val_dir, test_dir).
@dataclass
class ClassifierConfig:
    """Stage 4 (python3 -m classifier.train): train and evaluate an image classifier."""

    # Data
    train_dir: str = opt("", "Training images, one sub-folder per label (or use --manifest).")
    manifest: str = opt("", "A stage-3 manifest.csv (or its folder, e.g. balanced_data): "
                        "real and synthetic training images; instead of --train_dir.")
    val_dir: str = opt("", "Validation images, one sub-folder per label. Default: a "
                       "stratified, seeded --validation_split of the real training images.")
    test_dir: str = opt("", "Test images, one sub-folder per label (evaluated with the best "
                        "weights after training; optional).")
    ood_test_dirs: list[str] | None = opt(None, "More test folders (e.g. out-of-distribution "
                                          "sites), each evaluated and reported by its name.")
    validation_split: float = opt(0.2, "Share of each label's real training images held out "
                                  "when no --val_dir is given.", min=0.05, max=0.5)
    real_generators: list[str] = opt(["original", "rotate_flip"], "Manifest generators that "
                                     "count as real images; every other generator is "
                                     "synthetic.")
    synthetic_ratio: float | None = opt(None, "Synthetic images kept per real training image "
                                        "(0 = real only, 0.5 = one per two real). Default: "
                                        "all of them.", min=0.0, max=100.0)
    class_balanced: bool = opt(False, "Draw training batches class-balanced (each label "
                                "equally likely) instead of shuffling all images.")
    steps_per_epoch: int | None = opt(None, "Training steps per epoch. Default: one pass over "
                                      "the training images (classifier.compare gives every "
                                      "arm the same: one pass over its largest arm's).",
                                      min=1)
    sample_weighting: str = opt("none", "Per-image loss weights: 'diagen' scores each "
                                "synthetic image with a temperature-calibrated classifier "
                                "trained on real images only (weight 1 from "
                                "--diagen_threshold t on, else p / t: 2p at t = 0.5).",
                                choices=("none", "diagen"))
    diagen_threshold: float = opt(0.5, "DIAGen: calibrated confidence from which a "
                                  "synthetic image counts fully; below it the weight is "
                                  "p / threshold.", min=0.0, max=1.0)
    diagen_views: int = opt(4, "DIAGen: augmented views averaged per synthetic image.",
                            min=1, max=64)
    filter_model: str = opt("", "DIAGen and --synthetic_filter: a finished real-only run "
                            "folder to score with. Default: train one inside the run folder.")
    # Long tail: the loss, and how synthetic images are used (docs/classifier.md)
    logit_adjusted: bool = opt(False, "Logit-adjusted loss (Menon et al. 2021): cross-entropy "
                               "of logits + la_tau * log(prior), the prior being the label "
                               "distribution the loss sees; plain logits at test time.")
    la_tau: float = opt(1.0, "Logit adjustment's temperature tau.", min=0.0, max=10.0)
    synthetic_weight: float = opt(1.0, "Loss weight of a synthetic image (0 = leave synthetic "
                                  "images out: real-only training).", min=0.0, max=10.0)
    synthetic_label_smoothing: float = opt(0.0, "Label smoothing of synthetic images only "
                                           "(target (1 - s) * one-hot + s / classes).",
                                           min=0.0, max=0.99)
    synthetic_replace_prob: float | None = opt(None, "DA-Fusion: each real training image is "
                                               "swapped for a synthetic image of its label "
                                               "with this probability, the epoch keeping the "
                                               "size of the real data. Default: synthetic "
                                               "images are added to the real ones.",
                                               min=0.0, max=1.0)
    synthetic_bn: str = opt("shared", "separate: in every BatchNorm layer the synthetic "
                            "images of a batch are normalised by their own batch statistics "
                            "and only the real images update the moving averages used at "
                            "test time; shared: one statistic for the whole batch.",
                            choices=("shared", "separate"))
    synthetic_filter: str = opt("none", "in_distribution: keep a synthetic image only when a "
                                "classifier trained on the real images (--filter_model, or "
                                "one trained in the run folder) predicts its label and its "
                                "feature distance to the label's real images is within the "
                                "real images' own --filter_percentile spread.",
                                choices=("none", "in_distribution"))
    filter_percentile: float = opt(95.0, "--synthetic_filter: percentile of the real images' "
                                   "nearest-neighbour distances (per label) a synthetic image "
                                   "must stay within.", min=50.0, max=100.0)
    finetune_head_epochs: int = opt(0, "After training, re-train only the output layer for "
                                    "this many epochs on the real images' features (encoder "
                                    "frozen) in class-balanced batches, as cRT does (Kang et "
                                    "al. 2020); with --feature_fill on real + generated "
                                    "features. 0 = off.", min=0, max=10000)
    from_run: str = opt("", "A finished classifier run folder to start from (same data and "
                        "seed): its network is loaded instead of trained, and only the head "
                        "is re-trained (--finetune_head_epochs).")
    feature_fill: bool = opt(False, "LDMLR: train a class-conditional diffusion model on the "
                             "real training images' penultimate features, generate features "
                             "until every label has as many as the largest, and re-train the "
                             "head on real + generated features (needs "
                             "--finetune_head_epochs).")
    feature_fill_steps: int = opt(3000, "--feature_fill: training steps of the feature "
                                  "diffusion model.", min=1, max=1000000)
    # Images
    input_shape: int = opt(96, "Square input side in pixels (shorter side resized, centre "
                           "crop). The original pipeline used 224; 96-128 suits a CPU.", min=16,
                           max=1024)
    grayscale: bool = opt(False, "Convert images to grey (kept as 3 channels).")
    mean: list[float] = opt([0.485, 0.456, 0.406], "Per-channel mean (fraction of 255) the "
                            "small CNN subtracts; application backbones use their own "
                            "ImageNet preprocessing.", min=0.0, max=1.0)
    std: list[float] = opt([0.229, 0.224, 0.225], "Per-channel std (fraction of 255) of the "
                           "small CNN's normalisation.", min=1e-6, max=1.0)
    augm_type: str = opt("base", "Online augmentation: base = none (resize + normalise), flip "
                         "= classic flips/rotation/zoom/contrast, autoaugment/randaugment = "
                         "Keras RandAugment, augmix = Keras AugMix, albumentations = the "
                         "--albumentations_preset.",
                         choices=("base", "flip", "autoaugment", "randaugment", "augmix",
                                  "albumentations"))
    augm_probability: float = opt(0.5, "Share of training images augmented (per image, per "
                                  "epoch).", min=0.0, max=1.0)
    augm_strength: float = opt(1.0, "Magnitude of flip/randaugment/augmix augmentation: "
                               "1 = rotation 0.05 turn, zoom 15%, contrast 0.2 (flip), "
                               "factor 0.5 (randaugment), factor 0.3 (augmix); scaled "
                               "linearly (0 = flips only).", min=0.0, max=4.0)
    augm_flip: str = opt("horizontal", "Flips of the flip augmentation: horizontal suits "
                         "upright objects and scenes; add vertical only for top-down or "
                         "microscope images.",
                         choices=("none", "horizontal", "vertical", "horizontal_and_vertical"))
    albumentations_preset: str = opt("reference", "albumentations policy: 'reference' (flip, "
                                     "brightness/contrast, rotate, blur, hue, perspective) or "
                                     "'light' (flip, brightness/contrast).",
                                     choices=("reference", "light"))
    # Model and training
    backbone: str = opt("mobilenetv3small", "Network: mobilenetv3small (CPU default), "
                        "efficientnetb0 (the original pipeline's), small_cnn (trains in minutes).",
                        choices=("efficientnetb0", "mobilenetv3small", "small_cnn"))
    weights: str = opt("imagenet", "Backbone initialisation: ImageNet weights when they can "
                       "be loaded (offline: a one-line note, then none), or none.",
                       choices=("imagenet", "none"))
    dropout: float = opt(0.2, "Dropout before the output layer.", min=0.0, max=0.9)
    number_epochs: int = opt(30, "Maximum epochs (early stopping may end sooner).", min=1,
                             max=10000)
    batch_size: int = opt(32, "Images per training step.", min=1, max=4096)
    learning_rate: float = opt(1e-3, "Adam learning rate (the original pipeline used 1e-4 for "
                               "fine-tuning ImageNet weights).", min=1e-7, max=1.0)
    evaluation_type: str = opt("f1", "Validation metric that picks the best epoch and drives "
                               "early stopping: f1 = macro-F1, accuracy, balanced_accuracy, "
                               "loss.", choices=("f1", "accuracy", "balanced_accuracy", "loss"))
    early_stop_patience: int = opt(8, "Epochs without improvement before stopping (0 = never "
                                   "stop early).", min=0)
    early_stop_min_delta: float = opt(0.0, "Smallest change of the validation metric that "
                                      "counts as improvement.", min=0.0)
    precision: str = opt("float32", "Dtype policy: float32, or mixed_bfloat16 (faster on "
                         "CPUs with bf16 units; output layer stays float32); auto picks.",
                         choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"))
    tensorboard: bool = opt(True, "Also log the loss and validation metrics per epoch for "
                            "TensorBoard in <run folder>/logs/.")
    # Runs
    out_dir: str = opt("classifier_runs", "Each run gets its own folder inside it.")
    run_name: str = opt("", "Run folder name. Default: <backbone>_<date>-<time>_<id>.",
                        path_component=True)
    seed: int = opt(42, "Seed of the split, the batch order, augmentation and weights.",
                    min=0)
    workers: int | None = opt(None, "Processes decoding images (default: all cores).", min=1)

    def validate(self) -> None:
        if bool(self.train_dir) == bool(self.manifest):
            raise ConfigError("give exactly one of --train_dir or --manifest")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("--mean and --std take 3 values (R G B)")
        if self.backbone != "small_cnn" and self.input_shape < 32:
            raise ConfigError(f"--backbone {self.backbone} needs --input_shape >= 32")
        if self.sample_weighting == "diagen" and not self._reads_synthetic_images():
            raise ConfigError("--sample_weighting diagen weights synthetic images: it needs "
                              "--manifest")
        # Weight and soft labels apply to generated features too; the others only to images.
        feature_ok = {"--synthetic_weight", "--synthetic_label_smoothing"}
        synthetic_options = [name for name, on in (
            ("--synthetic_weight", self.synthetic_weight != 1.0),
            ("--synthetic_label_smoothing", self.synthetic_label_smoothing > 0),
            ("--synthetic_replace_prob", self.synthetic_replace_prob is not None),
            ("--synthetic_bn", self.synthetic_bn != "shared"),
            ("--synthetic_filter", self.synthetic_filter != "none")) if on]
        if self.feature_fill and not self._reads_synthetic_images():
            synthetic_options = [n for n in synthetic_options if n not in feature_ok]
        if synthetic_options and not self._reads_synthetic_images():
            raise ConfigError(f"{', '.join(synthetic_options)} change(s) how synthetic images "
                              f"train: it needs --manifest (a stage-3 folder)")
        if self.feature_fill and not self.finetune_head_epochs:
            raise ConfigError("--feature_fill re-trains the head on generated features: give "
                              "--finetune_head_epochs N (N > 0)")
        if self.from_run and not self.finetune_head_epochs:
            raise ConfigError("--from_run loads a trained network and only re-trains its "
                              "head: give --finetune_head_epochs N (N > 0)")

    def _reads_synthetic_images(self) -> bool:
        # One training reads synthetic images only through a manifest.
        return bool(self.manifest)


@dataclass
class EvaluateConfig:
    """Stage 4 (python3 -m classifier.evaluate): evaluate a saved classifier on a test folder."""

    model: str = opt("", "A run folder (config.json + best.weights.h5), a .weights.h5 file "
                     "inside one, or a .keras file with a config.json beside it.",
                     required=True)
    test_dir: str = opt("", "Test images, one sub-folder per label known to the model.",
                        required=True)
    out_dir: str = opt("", "Where metrics.json and confusion.png go. Default: a new folder "
                       "<model>/evaluations/<test folder name>[_N].")
    batch_size: int = opt(64, "Images per prediction step.", min=1, max=4096)
    workers: int | None = opt(None, "Processes decoding images (default: all cores).", min=1)


@dataclass
class GridSearchConfig(ManyRunsConfig, ClassifierConfig):
    """Stage 4 (python3 -m classifier.grid_search): a parameter grid x seeds x repeats."""

    out_dir: str = opt("grid_search", "Run folders, runs.csv, summary.csv and best/ go here; "
                       "re-running skips finished runs.")
    grid: list[str] | None = opt(None, "Settings to vary, each NAME=V1,V2 (e.g. "
                                 "learning_rate=1e-3,1e-4 batch_size=16,32).")
    seeds: list[int] | None = opt(None, "Base seeds. Default: just --seed.", min=0)
    repeats: int = opt(1, "Runs per combination and seed (seed + 1000*r).", min=1, max=100)


# What classifier.compare's --recipe_grid may choose per generative arm: how the arm uses its
# synthetic data, never what the data or the classifier is.
RECIPE_FIELDS = ("synthetic_weight", "synthetic_label_smoothing", "synthetic_replace_prob",
                 "synthetic_bn", "synthetic_filter", "filter_percentile", "synthetic_ratio",
                 "sample_weighting", "diagen_threshold", "finetune_head_epochs", "la_tau",
                 "feature_fill_steps")


# The ClassifierConfig values of a run on real images alone, trained from scratch with the
# plain loss: the non-generative arms and the judge of synthetic images start from these.
REAL_ONLY_SETTINGS = dict(synthetic_weight=1.0, synthetic_label_smoothing=0.0,
                          synthetic_replace_prob=None, synthetic_bn="shared",
                          synthetic_filter="none", finetune_head_epochs=0, feature_fill=False,
                          from_run="", logit_adjusted=False)


@dataclass
class CompareConfig(ManyRunsConfig, ClassifierConfig):
    """Stage 4 (python3 -m classifier.compare): do generated images beat what real images,
    rebalancing and classic augmentation give? The same classifier, seeds and step budget in
    every arm; bootstrap CIs and Holm-corrected paired tests against the strongest
    non-generative arm."""

    train_dir: str = opt("", "The original training data (one sub-folder per label).",
                         required=True)
    balanced_dir: str = opt("", "Stage-3 output with manifest.csv (originals + generated "
                            "images): the 'diffusion_fill' arm.")
    classic_fill_dir: str = opt("", "The same gap filled with classic augmentations of real "
                                "images, in stage 3's layout (images + manifest.csv whose "
                                "generator column marks the added rows): the "
                                "'classic_fill' arm.")
    fill_dirs: list[str] | None = opt(None, "More generated fills in stage 3's layout, each "
                                      "NAME=DIR (e.g. sdedit_fill=runs/sdedit); each NAME "
                                      "is a generative arm.")
    test_dir: str = opt("", "Real test images, one sub-folder per label.", required=True)
    out_dir: str = opt("compare", "Run folders and the comparison tables go here; re-running "
                       "skips finished runs.")
    variants: list[str] | None = opt(None, "Arms: original, rebalanced (class-balanced "
                                     "batches), classic (online augmentation), "
                                     "logit_adjusted, crt (original's encoder, head re-"
                                     "trained class-balanced), classic_fill, diffusion_fill "
                                     "(old name: synthetic), feature_fill (LDMLR), the "
                                     "--fill_dirs names; a fill arm may add +classic, "
                                     "+diagen and/or +la (e.g. diffusion_fill+la). Default: "
                                     "original rebalanced classic logit_adjusted crt and "
                                     "each fill whose folder is given.")
    classic_augm_type: str = opt("flip", "Online augmentation of 'classic' and the +classic "
                                 "arms.", choices=("flip", "autoaugment", "randaugment",
                                                   "augmix", "albumentations"))
    classic_strengths: list[float] = opt([0.25, 0.5, 1.0], "--augm_strength values tried for "
                                         "the classic augmentation on the first seed; the "
                                         "best by validation --evaluation_type is used by "
                                         "'classic' and every +classic arm.", min=0.0,
                                         max=4.0, min_len=1)
    seeds: list[int] = opt([0, 1, 2], "Seeds; every arm runs each (paired comparison).",
                           min=0, min_len=1)
    bootstrap: int = opt(2000, "Bootstrap resamples of seeds and test images for the "
                         "confidence intervals (0 = none).", min=0, max=100000)
    tail_fraction: float = opt(0.33, "Share of the labels, those with the fewest real "
                               "training images, whose mean test recall is the tail recall.",
                               min=0.01, max=1.0)
    crt_epochs: int = opt(10, "Epochs of the head re-training of 'crt' and 'feature_fill' "
                          "(their encoder is the 'original' run's of the same seed).", min=1,
                          max=10000)
    recipe_grid: list[str] | None = opt(None, "Synthetic-aware settings to choose per "
                                        "generative arm on validation, each NAME=V1,V2 (e.g. "
                                        "synthetic_weight=0.5,1 synthetic_replace_prob=0.5): "
                                        "every combination trains once on --recipe_seed, the "
                                        "best by validation --evaluation_type is used on "
                                        "every seed. Never chosen on test.")
    recipe_seed: int = opt(1000, "Seed of the recipe search, apart from --seeds.", min=0)

    def arms(self) -> list[str]:
        """The arms to run, canonically named (the default list when --variants is unset).

        Raises:
            ConfigError: an unknown or repeated arm.
        """
        try:
            fills = parse_fill_dirs(self.fill_dirs)
            if self.variants is None:
                names = ["original", "rebalanced", "classic", "logit_adjusted", "crt"]
                names += ["classic_fill"] if self.classic_fill_dir else []
                names += ["diffusion_fill"] if self.balanced_dir else []
                return names + list(fills)
            names = [normalise_arm(v, list(fills)) for v in self.variants]
        except ArmError as err:
            raise ConfigError(str(err)) from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"--variants names {', '.join(repeated)} twice")
        return names

    def validate(self) -> None:
        if self.manifest:
            raise ConfigError("compare reads the fill arms from --balanced_dir, "
                              "--classic_fill_dir and --fill_dirs; leave --manifest empty")
        if self.augm_type != "base":
            raise ConfigError("compare sets the augmentation per arm: use "
                              "--classic_augm_type and the classic / +classic arms, and "
                              "leave --augm_type base")
        arms = self.arms()
        bases = {a.split("+")[0] for a in arms}
        outside = sorted({spec.partition("=")[0].strip() for spec in self.recipe_grid or []}
                         - set(RECIPE_FIELDS))
        if outside:
            raise ConfigError(f"--recipe_grid over {', '.join(outside)}: a recipe chooses only "
                              f"{', '.join(RECIPE_FIELDS)}")
        if self.recipe_grid and self.recipe_seed in self.seeds:
            raise ConfigError(f"--recipe_seed {self.recipe_seed} is one of --seeds: the recipe "
                              f"is chosen on runs apart from the reported ones")
        for arm in arms:
            if starts_from(arm) and starts_from(arm) not in arms:
                raise ConfigError(f"the '{arm}' arm starts from the '{starts_from(arm)}' "
                                  f"arm's runs: add {starts_from(arm)} to --variants")
        if "diffusion_fill" in bases and not self.balanced_dir:
            raise ConfigError("the 'diffusion_fill' (synthetic) arm needs --balanced_dir "
                              "(stage 3's output); or leave it out of --variants")
        if "classic_fill" in bases and not self.classic_fill_dir:
            raise ConfigError("the 'classic_fill' arm needs --classic_fill_dir; or leave it "
                              "out of --variants")
        if (self.classic_augm_type == "albumentations" and len(self.classic_strengths) > 1
                and any(a == "classic" or "+classic" in a for a in arms)):
            raise ConfigError("albumentations presets have fixed strengths: give one "
                              "--classic_strengths value with --classic_augm_type "
                              "albumentations")

    def _reads_synthetic_images(self) -> bool:
        # The fill arms' folders hold the synthetic images (and their manifests).
        return True


# classic_fill sits between augment and classify: the comparison always gets the same gap
# filled with classic augmentations at stage 3's counts (the fair baseline of the images).
# sdedit and sd (stage 3 again, --generator sdedit / sd_img2img) run only with --sdedit_fill
# / --sd_fill.
PIPELINE_STAGES = ("balance", "diffusion", "augment", "sdedit", "sd", "classic_fill",
                   "classify", "report")


@dataclass
class PipelineConfig(ExecutorConfig):
    """The whole pipeline (run_pipeline.py): stage 1 -> 2 -> 3 -> classic fill -> 4 -> report.

    Settings of each stage come from the `--config` JSON's sections "balancer",
    "diffusion", "augmentation", "sdedit", "sd", "classic_fill" and "compare" (any field of
    BalancerConfig, TrainAllConfig, AugmentationConfig (both), classic_fill's
    ClassicFillConfig, CompareConfig); the folders between the stages are set by the runner.
    The executor flags reach stage 2 and 4 (train_all.py, classifier.compare) unless their
    section sets its own.
    """

    in_dir: str = opt("", "The original dataset: one sub-folder per label, site ids in the "
                      "file names.", required=True)
    test_dir: str = opt("", "Real test images (one sub-folder per label) for the classifier "
                        "comparison; needed by the 'classify' stage.")
    out_dir: str = opt("pipeline_run", "Every stage's output folder, the logs and report.html "
                       "go here; re-running skips the stages already done.")
    categories: list[str] = opt(["1,2,3", "4,5,6"], "Groups of labels (as for "
                                "diffusion_augmentation.py); the smaller groups are filled "
                                "with synthetic images.")
    stages: list[str] = opt(list(PIPELINE_STAGES), "Stages to run, in pipeline order "
                            "(sdedit only with --sdedit_fill, sd with --sd_fill).",
                            choices=PIPELINE_STAGES, min_len=1)
    diffusion_labels: list[str] | None = opt(None, "Labels to train diffusion models on. "
                                             "Default: every label (one shared conditional "
                                             "model, the pipeline's default; with "
                                             "\"conditional\": false in the diffusion section, "
                                             "one model per label that stage 3 fills).",
                                             path_component=True)
    sdedit_fill: bool = opt(False, "Also fill the gap with SDEdit variations of real images "
                            "(stage 3 again with --generator sdedit, same plan and counts; "
                            "the 'sdedit' section overrides the 'augmentation' one) and "
                            "compare them as the sdedit_fill arm.")
    sd_fill: bool = opt(False, "Also fill the gap with Stable Diffusion 3 edits of real images "
                        "and class prompts (stage 3 again with --generator sd_img2img; needs "
                        "the weights: the 'sd' section sets sd_preset, prompt_file, ...) and "
                        "compare them as the sd_fill arm.")
    redo: str | None = opt(None, "Run this stage and the ones after it again (their old "
                           "output folders are kept, renamed *_old_<time>).",
                           choices=PIPELINE_STAGES)
    seed: int = opt(42, "Seed handed to every stage that has none in its section.", min=0)





@dataclass
class PromptsConfig:
    """Prompt file (python3 -m pretrained prompts): class;prompt lines for Stable Diffusion."""

    labels: list[str] = opt([], "Class names (as the label folders are named).", required=True)
    out: str = opt("prompts.csv", "The CSV to write (never overwritten).")
    per_class: int = opt(8, "Prompts per class.", min=1, max=1000)
    template: str = opt("a photo of a {label}", "What every prompt starts with ({label}).")
    seed: int = opt(0, "Which variations (background, viewpoint, weather, time of day) are "
                    "drawn.", min=0)
    lm_preset: str = opt("", "A KerasHub causal language model preset (name or local folder) "
                         "that writes the variations instead of the fixed lists.")
    max_length: int = opt(48, "--lm_preset: tokens per generated prompt.", min=8, max=512)


@dataclass
class InpaintingConfig(StableDiffusionConfig):
    """OOD test sets (python3 -m inpainting generate): inpaint new content into test images."""

    test_dir: str = opt("", "Test images, one sub-folder per class (never modified).",
                        required=True)
    out_dir: str = opt("ood_test", "Output: <augm_type>/<class>/ (a complete test set), "
                       "masks/, manifest.csv, samples.png, config.json; a re-run with the "
                       "same settings resumes.")
    mode: str = opt("inpaint", "inpaint = regenerate the masked region to fit a prompt; "
                    "img2img = re-render the image (or only the masked region, when a mask "
                    "is given) from a noised copy (SDEdit).", choices=("inpaint", "img2img"))
    backend: str = opt("keras_hub", "keras_hub = KerasHub Stable Diffusion 3 (pretrained, "
                       "prompts; needs --sd_preset); ddim = your own DDIM runs (RePaint / "
                       "SDEdit; works offline).", choices=("keras_hub", "ddim"))
    model_dir: list[str] | None = opt(None, "ddim: trained run folders (run_diffusion.py / "
                                      "train_all.py); each one's config.json says which "
                                      "class(es) it serves.")
    label_models: list[str] | None = opt(None, "ddim: explicit CLASS=MODEL_DIR pairs (e.g. "
                                         "one model for every class); win over --model_dir.")
    mask_path: str = opt("", "One mask for every image (white = regenerate).")
    mask_dir: str = opt("", "One mask per image, matched by file stem in mask_dir/<class>/ "
                        "or mask_dir/.")
    mask_mode: str | None = opt(None, "Generated masks, a new one per image (seeded): box, "
                                "blob, or region (the whole --mask_region). Default: box for "
                                "inpaint when no mask file is given; none for img2img.",
                                choices=("box", "blob", "region"))
    mask_area: float = opt(0.15, "box/blob: share of the image a generated mask covers.",
                           min=0.001, max=1.0)
    mask_region: str = opt("all", "Where generated masks lie: all, top, bottom, left, right, "
                           "upper_third, middle_third, lower_third, left_third, right_third, "
                           "center.", choices=tuple(REGIONS))
    mask_blur: float = opt(0.0, "Feather the mask edge with a Gaussian of this sigma (pixels "
                           "of the image); the band blends, pixels of weight 0 stay exactly "
                           "as they were.", min=0.0, max=256.0)
    prompt_dir: str = opt("", "keras_hub: prompts, a JSON list (or {\"prompts\": [...]}, as "
                          "the original pipeline) or a CSV of class;prompt lines ('*' = every "
                          "class); each class's images take them in turn.")
    augm_type: str = opt("", "Name of the OOD set folder. Default from mode and mask: "
                         "inpaint_box, inpaint_lower_third, inpaint_mask, img2img, ...")
    augm_probability: float = opt(1.0, "Share of each class's images transformed (round(p*n) "
                                  "of them, chosen by --seed); the rest are copied unchanged.",
                                  min=0.0, max=1.0)
    num_steps: int = opt(50, "Diffusion steps.", min=1, max=1000)
    guidance_scale: float | None = opt(None, "Classifier-free guidance. Default: 7 for "
                                       "keras_hub (>= 1 there), 1 (none) for conditional DDIM "
                                       "models.", min=0.0, max=30.0)
    strength: float | None = opt(None, "How far the masked region (inpaint) or the image "
                                 "(img2img) is noised before denoising; 1 = fully new. "
                                 "Default: 1 for inpaint, 0.5 for img2img (RePaint ignores "
                                 "it).", min=0.01, max=1.0)
    eta: float | None = opt(None, "ddim: sampling noise (0 = deterministic DDIM). Default: 1 "
                            "for RePaint, 0 for SDEdit.", min=0.0, max=1.0)
    jump_length: int = opt(10, "ddim RePaint: levels of each jump back in time.", min=1)
    jump_n_sample: int = opt(10, "ddim RePaint: resamplings per jump (1 = no jumps).", min=1)
    batch_size: int = opt(8, "Images per model call (the ddim backend batches; SD3 runs one "
                          "image per call so that each has its own seed).", min=1, max=1024)
    seed: int = opt(42, "One seed drives the choice of images, the masks and the noise; image "
                    "k's seed comes from it and its path, so it can be regenerated alone.",
                    min=0)
    min_size: int = opt(16, "Test images whose shorter side is smaller are skipped (listed).",
                        min=2)
    samples: int = opt(8, "Rows of samples.png (original | mask | result).", min=0, max=64)

    def mask_kind(self) -> str:
        """file, dir, box, blob, region, or none (img2img of the whole image)."""
        if self.mask_path:
            return "file"
        if self.mask_dir:
            return "dir"
        if self.mask_mode:
            return self.mask_mode
        return "box" if self.mode == "inpaint" else "none"

    def label_model_pairs(self) -> list[tuple[str, str]]:
        """`label_models` parsed into (class, model folder) pairs."""
        return parse_label_models(self.label_models)

    def resolved(self) -> "InpaintingConfig":
        """A copy with every automatic value (None) replaced by the value it stands for."""
        kind = self.mask_kind()
        region = f"_{self.mask_region}" if self.mask_region != "all" else ""
        name = {"file": "mask", "dir": "masks", "none": ""}.get(kind, kind + region)
        if kind == "region":
            name = self.mask_region
        augm = self.augm_type or "_".join(p for p in (self.mode, name) if p)
        return replace(
            self, augm_type=augm,
            guidance_scale=(self.guidance_scale if self.guidance_scale is not None else
                            7.0 if self.backend == "keras_hub" else 1.0),
            strength=(self.strength if self.strength is not None else
                      1.0 if self.mode == "inpaint" else 0.5),
            eta=(self.eta if self.eta is not None else 1.0 if self.mode == "inpaint" else 0.0))

    def validate(self) -> None:
        given = [f for f in ("mask_path", "mask_dir", "mask_mode") if getattr(self, f)]
        if len(given) > 1:
            raise ConfigError(f"give one mask source, not {' and '.join('--' + g for g in given)}")
        kind = self.mask_kind()
        share = region_share(self.mask_region)
        if kind in ("box", "blob") and self.mask_area > share + 1e-9:
            raise ConfigError(f"--mask_area {self.mask_area} is larger than --mask_region "
                              f"{self.mask_region} ({share:.2f} of the image)")
        if self.backend == "ddim":
            if not self.model_dir and not self.label_models:
                raise ConfigError("--backend ddim needs --model_dir (trained DDIM run "
                                  "folders) or --label_models CLASS=MODEL_DIR")
            self.label_model_pairs()
        else:
            if self.model_dir or self.label_models:
                raise ConfigError("--model_dir/--label_models are for --backend ddim; "
                                  "keras_hub loads --sd_preset")
            if not self.prompt_dir:
                raise ConfigError("--backend keras_hub needs --prompt_dir (a JSON list or a "
                                  "class;prompt CSV of what to paint in)")
            if self.guidance_scale is not None and self.guidance_scale < 1.0:
                raise ConfigError("--backend keras_hub needs --guidance_scale >= 1")
        if self.augm_type and (self.augm_type in (".", "..", "masks")
                               or any(c in self.augm_type for c in "/\\")):
            raise ConfigError(f"--augm_type {self.augm_type!r} must be a plain folder name "
                              f"(not 'masks')")


@dataclass
class InpaintingCompareConfig:
    """OOD comparison (python3 -m inpainting compare): a classifier on the test set vs the
    inpainted OOD set, per class."""

    model: str = opt("", "A stage-4 classifier run folder (python3 -m classifier.train).",
                     required=True)
    test_dir: str = opt("", "The original test images, one sub-folder per class.",
                        required=True)
    ood_dir: str = opt("", "The OOD set: OUT/<augm_type> written by python3 -m inpainting "
                       "generate.", required=True)
    out_dir: str = opt("ood_compare", "compare.csv, compare.md, samples.png and the two "
                       "evaluations go here; finished evaluations are reused.")
    batch_size: int = opt(64, "Images per prediction step.", min=1, max=4096)
    samples: int = opt(8, "Rows of samples.png (original | mask | inpainted).", min=0,
                       max=64)
    workers: int | None = opt(None, "Processes decoding images (default: all cores).", min=1)


# Robustness analysis (python3 -m robustness). One dataclass per subcommand; synthesize and
# report run the (cached) search first, so they take the search's settings too.
@dataclass
class RobustnessSearchConfig(ExecutorConfig):
    """Robustness (python3 -m robustness search): where does the model's output change?

    Each corruption's intensity is raised step by step; the search records where the model's
    output starts to change and where it fails."""

    model: str = opt("", "The model: a .keras file, or a stage-4 classifier run folder "
                     "(config.json + best.weights.h5).", required=True)
    images: str = opt("", "Images to probe: one sub-folder per label, or a folder of "
                      "unlabelled images.", required=True)
    out_dir: str = opt("robustness_search", "search.json, curves.csv and the probe cache go "
                       "here (a re-run resumes from the cache).")
    ops: list[str] | None = opt(None, "Corruptions to use (default: all; python3 -m "
                                "robustness ops lists them).")
    exclude_ops: list[str] | None = opt(None, "Corruptions to leave out.")
    step: float = opt(0.05, "Intensity step of the search (intensities run from 0 to 1).",
                      min=0.01, max=0.5)
    noticeable_error: float = opt(0.02, "Mean error above which a step counts as noticed by "
                                  "the model.", min=0.0, max=1.0)
    critical_error: float = opt(0.5, "Mean error from which a step counts as a failure.",
                                min=0.0, max=1.0)
    error: str = opt("confidence", "Error of a probe against the model's clean prediction: "
                     "confidence = 1 if the label changes, else the change of its "
                     "probability; label = 1 if the label changes; tv = total variation of "
                     "the probabilities.", choices=("confidence", "label", "tv"))
    full_curve: bool = opt(True, "Probe every step up to intensity 1 (--no-full_curve: stop "
                           "each op at its first critical step).")
    max_images: int | None = opt(None, "Use at most this many images (seeded, in proportion "
                                 "to the labels). Default: all.", min=1)
    image_size: int | None = opt(None, "Working size (square). Default: the model's input "
                                 "size.", min=8, max=4096)
    input_scale: float = opt(255.0, "Pixel range the model takes: 255 = [0, 255] (this "
                             "project's classifiers), 1 = [0, 1].", choices=(1.0, 255.0))
    output: str = opt("auto", "What the model outputs; auto = probabilities when its last "
                      "layer is a softmax/sigmoid, else logits.",
                      choices=("auto", "logits", "probabilities"))
    batch_size: int = opt(64, "Images per prediction call.", min=1, max=4096)
    seed: int = opt(42, "Seed of the corruptions' random numbers (and of the image subset).",
                    min=0)
    cache_dir: str = opt("", "Probe cache folder. Default: <out_dir>/cache.")

    def validate(self) -> None:
        if self.noticeable_error >= self.critical_error:
            raise ConfigError("--noticeable_error must be below --critical_error")


@dataclass
class RobustnessReportConfig(RobustnessSearchConfig):
    """Robustness (python3 -m robustness report): the search as a self-contained HTML page.

    Curves, examples at the boundary and the ImageNet-C style severity table."""

    reference_model: str = opt("", "A reference model (same kinds as --model): the severity "
                               "table then shows errors normalised to it (CE, mCE).")


@dataclass
class RobustnessSynthesizeConfig(RobustnessSearchConfig):
    """Robustness (python3 -m robustness synthesize): new images within the model's limits.

    Random chains of corruptions, bounded by where the model breaks (--realism)."""

    out_dir: str = opt("robustness_synthetic", "Synthetic images (<label>/), manifest.csv "
                       "and preview.html; a re-run with the same settings resumes.")
    search_dir: str = opt("robustness_search", "The search's out_dir (its cache is reused; "
                          "missing probes are made there).")
    count: int = opt(100, "Synthetic images to make.", min=1)
    realism: float = opt(0.5, "1 = only changes the model does not notice, 0 = up to the "
                         "edge of failure, < 0 = beyond it (-1: up to intensity 1).",
                         min=-1.0, max=1.0)
    min_augs: int = opt(3, "Fewest corruptions per image.", min=1, max=20)
    max_augs: int = opt(6, "Most corruptions per image.", min=1, max=20)
    op_realism: list[str] | None = opt(None, "Per-op realism, each OP=VALUE (e.g. "
                                       "rotation=1 fog=-0.5).")
    op_weights: list[str] | None = opt(None, "Per-op relative chance of being picked, each "
                                       "OP=WEIGHT (0 = never).")
    min_error: float = opt(0.0, "Keep an image only when the model's error on it is at "
                           "least this.", min=0.0, max=1.0)
    max_error: float = opt(1.0, "Keep an image only when the model's error on it is at most "
                           "this.", min=0.0, max=1.0)
    max_attempts: int | None = opt(None, "Candidates tried at most (default: 10 x --count); "
                                   "the run then reports how many it could make.", min=1)
    preview: int = opt(24, "Original/synthetic pairs shown in preview.html.", min=0, max=500)

    def pairs(self, name: str) -> dict[str, float]:
        """--op_realism / --op_weights parsed into {op: value}."""
        out = {}
        for spec in getattr(self, name) or []:
            op, sep, value = spec.partition("=")
            try:
                out[op.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep or not op.strip():
                raise ConfigError(f"--{name} expects OP=NUMBER, got {spec!r}")
            check_number(f"--{name} {op.strip()}", out[op.strip()])
        return out

    def validate(self) -> None:
        if self.min_augs > self.max_augs:
            raise ConfigError("--min_augs must not exceed --max_augs")
        if self.min_error > self.max_error:
            raise ConfigError("--min_error must not exceed --max_error")
        if any(v < 0 for v in self.pairs("op_weights").values()):
            raise ConfigError("--op_weights must be >= 0")
        self.pairs("op_realism")


@dataclass
class RobustnessEvaluateConfig:
    """Robustness (python3 -m robustness evaluate): models on a synthetic set.

    The model (and the model before retraining) overall and per corruption family."""

    model: str = opt("", "The model to evaluate (.keras file or classifier run folder).",
                     required=True)
    images: str = opt("", "A synthetic set: the out_dir of python3 -m robustness synthesize.",
                      required=True)
    before_model: str = opt("", "The model before retraining, evaluated beside --model.")
    out_dir: str = opt("robustness_evaluation", "metrics.json and evaluation.html go here.")
    error: str = opt("confidence", "Error against the model's prediction on the origin image "
                     "(as for search).", choices=("confidence", "label", "tv"))
    input_scale: float = opt(255.0, "Pixel range the models take (255 or 1).",
                             choices=(1.0, 255.0))
    output: str = opt("auto", "What the models output.",
                      choices=("auto", "logits", "probabilities"))
    batch_size: int = opt(64, "Images per prediction call.", min=1, max=4096)
