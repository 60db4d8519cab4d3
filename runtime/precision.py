"""Chooses the dtype policy and the device, before any layer is built.

A Keras dtype policy only affects layers created after it is set (the original pipeline set it after
building the model, so it had no effect); call `set_precision` first thing.

"auto" picks `mixed_float16` on a GPU (with loss scaling), `mixed_bfloat16` on a CPU with
bf16 units and `float32` elsewhere. On 2 cores with AMX (benchmarks/bench_diffusion.py,
2026-12-01): training steps 1.32x faster than float32 at 32 px and 1.45x at 64 px, sampling
1.44x and 1.7x; an earlier 2-core machine without AMX gave 1.0x and 1.37x for training.

Example:
    >>> policy = set_precision("auto")      # before building the model
    >>> select_devices(gpu_index=0)
"""
from __future__ import annotations

import contextlib
from pathlib import Path

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def cpu_has_bf16() -> bool:
    """True when /proc/cpuinfo lists AVX512-BF16 or AMX-BF16 (Linux; False elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def has_gpu() -> bool:
    """True when TensorFlow sees at least one GPU."""
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(mode: str = "auto", use_gpu: bool | None = None) -> str:
    """The policy name that `mode` means on this machine.

    Args:
        mode: one of PRECISIONS.
        use_gpu: whether training runs on a GPU (default: whether one is visible).
    """
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {mode!r}")
    if mode != "auto":
        return mode
    if use_gpu is None:
        use_gpu = has_gpu()
    if use_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def set_precision(mode: str = "auto", use_gpu: bool | None = None) -> str:
    """Sets the global Keras dtype policy and returns its name. Call before building layers."""
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    name = resolve_precision(mode, use_gpu)
    keras.config.set_dtype_policy(name)
    return name


@contextlib.contextmanager
def dtype_policy(name: str):
    """Builds the layers made inside the block under the dtype policy `name`, then restores
    the caller's policy: a model loaded for evaluation leaves no global state behind.

    Example:
        >>> with dtype_policy("float32"):
        ...     model = build_classifier("small_cnn", 2, 32)
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def select_devices(gpu_index: int | None = None, cpu_devices: int = 1) -> list[str]:
    """Makes only GPU `gpu_index` visible (memory growth on), or splits the CPU for tests.

    Must run before TensorFlow touches a device; afterwards it warns and changes nothing.

    Args:
        gpu_index: the GPU to use; None keeps every GPU (for MirroredStrategy); ignored
            when the machine has none.
        cpu_devices: on a machine without GPUs, split the CPU into this many logical
            devices so that data-parallel code can be tested.

    Returns:
        The logical device names TensorFlow will use.
    """
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    try:
        if gpus:
            if gpu_index is not None:
                if not 0 <= gpu_index < len(gpus):
                    raise ValueError(f"--gpu_index {gpu_index} but only {len(gpus)} GPU(s) "
                                     f"are visible")
                gpus = [gpus[gpu_index]]
            if tf.config.get_visible_devices("GPU") != gpus:
                tf.config.set_visible_devices(gpus, "GPU")
            for gpu in gpus:
                if not tf.config.experimental.get_memory_growth(gpu):
                    tf.config.experimental.set_memory_growth(gpu, True)
        elif cpu_devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            have = tf.config.get_logical_device_configuration(cpu) or []
            if len(have) != cpu_devices:
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
    except RuntimeError as err:  # devices already initialised differently in this process
        print(f"note: device settings unchanged ({err})")
    kind = "GPU" if gpus else "CPU"
    return [d.name for d in tf.config.list_logical_devices(kind)]
