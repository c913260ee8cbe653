"""The settings of a run: the command's options checked and filled in (:func:`make_config`)."""

from dataclasses import dataclass

__all__ = ["BenchConfig", "make_config", "parse_batches", "parse_count"]

DEFAULT_EVAL_BATCHES = (1, 8, 32)
DEFAULT_TRAIN_BATCHES = (8, 32)
DEFAULT_LAYER_BATCH = 8
DEFAULT_REPEATS = {"eval": 5, "train": 3, "layer": 5}
DEFAULT_WARMUP = 1
QUICK = {"eval_batches": (1, 8), "train_batches": (8,), "layer_batch": 2,
         "repeats": {"eval": 3, "train": 2, "layer": 3}, "warmup": 1}
LEARNING_RATE = 0.01


def parse_batches(text):
    """``"1,8,32"`` -> ``(1, 8, 32)``: distinct positive integers; ``ValueError`` otherwise."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"expected a comma-separated list of batch sizes such as 1,8,32, got {text!r}")
    batches = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"expected a comma-separated list of positive integers such as 1,8,32, "
                             f"got {text!r}") from None
        if value < 1:
            raise ValueError(f"expected batch sizes of at least 1, got {value} in {text!r}")
        if value in batches:
            raise ValueError(f"batch size {value} is listed twice in {text!r}")
        batches.append(value)
    return tuple(batches)


def parse_count(text, minimum=1):
    """``"5"`` -> ``5``: an integer of at least ``minimum``; ``ValueError`` otherwise."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"expected an integer of at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run depends on; :func:`make_config` fills in the defaults and checks it."""

    eval_batches: tuple
    train_batches: tuple
    layer_batch: object  # an int, or None for no layer rows
    repeats: dict  # timed runs per case, by kind: "eval", "train", "layer"
    warmup: int
    threads: object  # an int, or None for torch's current count (the number of cores)
    weights: object  # a registry name or a path, or None for MobileNetV2(seed=0)
    quick: bool = False
    memory: str = "auto"  # "auto", "vmhwm" or "tracemalloc"
    learning_rate: float = LEARNING_RATE


def make_config(eval_batches=None, train_batches=None, layers=True, layer_batch=None, repeats=None,
                warmup=None, threads=None, weights=None, quick=False, memory="auto"):
    """A checked :class:`BenchConfig`; ``None`` means the default (the ``--quick`` one if ``quick``).

    ``repeats`` (one int) replaces every kind's default. Raises ``ValueError`` for a bad value.
    """
    base = QUICK if quick else {"eval_batches": DEFAULT_EVAL_BATCHES, "train_batches": DEFAULT_TRAIN_BATCHES,
                                "layer_batch": DEFAULT_LAYER_BATCH, "repeats": DEFAULT_REPEATS,
                                "warmup": DEFAULT_WARMUP}
    config = BenchConfig(
        eval_batches=tuple(base["eval_batches"] if eval_batches is None else eval_batches),
        train_batches=tuple(base["train_batches"] if train_batches is None else train_batches),
        layer_batch=(base["layer_batch"] if layer_batch is None else layer_batch) if layers else None,
        repeats=dict(base["repeats"]) if repeats is None else dict.fromkeys(DEFAULT_REPEATS, repeats),
        warmup=base["warmup"] if warmup is None else warmup,
        threads=threads, weights=weights, quick=quick, memory=memory,
    )
    _check_config(config)
    return config


def _check_config(config):
    """``ValueError`` naming the first bad value of ``config``."""
    for name in ("eval_batches", "train_batches"):
        values = getattr(config, name)
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name}: expected one or more positive integers, got {values!r}")
    if config.layer_batch is not None and config.layer_batch < 1:
        raise ValueError(f"layer_batch: expected a positive integer, got {config.layer_batch}")
    if any(count < 1 for count in config.repeats.values()):
        raise ValueError(f"repeats: expected at least 1 timed run, got {config.repeats}")
    if config.warmup < 0:
        raise ValueError(f"warmup: expected 0 or more warm-up runs, got {config.warmup}")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {config.threads}")
    if config.memory not in ("auto", "vmhwm", "tracemalloc"):
        raise ValueError(f"memory: expected 'auto', 'vmhwm' or 'tracemalloc', got {config.memory!r}")
