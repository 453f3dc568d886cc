"""Typed configuration: dataclasses, TOML recipes and `key=value` overrides.

Precedence: command-line overrides > recipe > code defaults. Unknown keys and wrong types are
errors (`ConfigError`), never silently ignored. Method options are validated against the options
dataclass that the method registered, so `method.eps=2` is checked like any other key.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .augment import AugmentConfig, validate_augment
from .classical import CLASSICAL
from .data.arrays import notice
from .errors import ConfigError
from .methods import METHODS
from .models import MODELS, canonical_name
from .systems import SYSTEMS  # late import: systems and methods register themselves on import
from .version import CONFIG_VERSION


@dataclass
class DataConfig:
    dataset: str = "digits"  # mnist | digits | cifar10 | cifar10-jpeg | npz:PATH | folder:PATH | csv:PATH
    protocol: str = "standard"  # standard (official test set) | holdout (seed 001: test held out of train)
    n_labeled: int = 100  # -1: every labelled training sample (minus validation and held-out test)
    n_unlabeled: int = -1  # -1: every remaining training image
    n_val: int = 0  # validation images taken from the training pool
    n_test: int = 10000  # holdout (or data without a test set): images held out as the test set, 0: none; standard:
    # a fixed subset of this many official test images when fewer than all (cheaper evaluations), 0: all
    balanced: bool = False  # class-balanced labelled draw (n_labeled must be a multiple of classes)
    split_seed: int = -1  # -1: use train.seed
    data_dir: str = ""  # '' = $SEMIREG_DATA, then the user cache directory
    download: bool = False  # MNIST only: fetch from the canonical mirrors when missing
    unlabeled: str = ""  # a folder (or .tar.gz, or .npz) of inputs without labels, added to the unlabelled set
    label_column: str = ""  # csv: the label column ('' = the first of label, target, class, y)
    drop_columns: list[str] = field(default_factory=list)  # csv: columns that are not features (ids, text)
    standardize: bool = True  # csv: each feature to mean 0, std 1 over the file's rows (kept for predict)
    # folder: the side images are brought to (shorter side scaled, centre cropped); 0: their own size
    # when they all have one, else the median shorter side
    image_size: int = 0
    skip_unreadable: bool = False  # folder: leave out (and count) files that cannot be decoded instead of stopping


@dataclass
class ModelConfig:
    name: str = "mlp"
    dropout: float = 0.0
    hidden: list[int] = field(default_factory=list)  # mlp only; [] = the model's default
    drop_path: float = 0.0  # stochastic depth for models with residual blocks: the last block's drop rate
    # (earlier blocks linearly less, Huang et al. 2016; Noisy Student's student noise)
    norm: str = ""  # mlp only: batch | layer | none after each hidden Linear; "": batch on images, layer on vectors
    logit_bn: bool = False  # mlp only: BatchNorm on the logits too (the VAT authors' semi-supervised MNIST MLP)
    plain_norm: bool = False  # mlp only: norm layers without a learned scale and shift (the VAT authors' MLP)
    noise: float = 0.0  # mlp only: std of Gaussian noise on every hidden layer's output while training
    input_noise: float = 0.0  # mlp only: std of Gaussian noise on the input while training
    noise_bank: int = 0  # mlp only: > 0, the noise layers add windows of that many values drawn once (faster on CPU)

    def builder_options(self) -> dict[str, Any]:
        """The options a registered model builder is given (see models.build_model)."""
        return {
            "dropout": self.dropout,
            "hidden": self.hidden,
            "drop_path": self.drop_path,
            "norm": self.norm,
            "logit_bn": self.logit_bn,
            "plain_norm": self.plain_norm,
            "noise": self.noise,
            "input_noise": self.input_noise,
            "noise_bank": self.noise_bank,
        }


@dataclass
class TrainConfig:
    steps: int = 1000
    epochs: float = 0.0  # > 0: steps = ceil(epochs * n_labeled / batch_size) (epochs are a view of steps)
    batch_size: int = 64
    unlabeled_batch_size: int = 0  # 0: mu * batch_size
    mu: int = 0  # unlabelled-to-labelled batch ratio; 0: the method's paper value (FixMatch family 7, others 1)
    optimizer: str = "adam"  # adam | adamw | sgd | adadelta
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"  # constant | cosine | linear | step
    warmup_steps: int = 0
    step_gamma: float = 0.1  # schedule=step: multiply lr by this at each milestone
    step_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of steps
    ema_decay: float = 0.0  # > 0: keep an EMA of the weights and evaluate it
    ema_warmup: bool = True  # decay min(ema_decay, (1 + t) / (10 + t)) at update t (see optim.EMA)
    eval_every: int = 0  # 0: evaluate only at the end
    log_every: int = 50
    checkpoint_every: int = 0  # 0: only at the end (and at each evaluation)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    # "auto": bf16-mixed where the device computes bf16 natively (CUDA with bf16, a CPU with AMX or
    # AVX-512 BF16), else 32-true; or any Lightning Fabric precision: 32-true, bf16-mixed, 16-mixed.
    precision: str = "auto"
    # Data parallelism (DDP through Lightning Fabric): batch sizes stay global and are split across
    # the devices * num_nodes processes. Under torchrun / `fabric run` the launcher's world is used.
    devices: int = 1
    num_nodes: int = 1
    # 4-D inputs and the model in channels-last memory format (speed only); "auto": on for 4-D inputs
    # into a convolutional model.
    channels_last: bool | str = "auto"
    compile: bool = False  # torch.compile the model's forward (speed only; the first steps compile)
    deterministic: bool = False
    threads: int = 0  # > 0: torch.set_num_threads
    progress: bool = True
    # Stochastic weight averaging (torch.optim.swa_utils): average the weights from swa_start (a
    # fraction of the steps) every swa_every steps (0: once per epoch); BatchNorm statistics are
    # recomputed on the training images afterwards, and the average is what is evaluated.
    swa: bool = False
    swa_start: float = 0.75
    swa_every: int = 0
    swa_lr: float = 0.0  # > 0: constant learning rate from swa_start on (SWALR-style); 0: keep the schedule
    # After training, the evaluated weights' BatchNorm statistics recomputed on the labelled training images
    # through the evaluation view (what SWA does for its average). For a model trained on strongly augmented
    # images only (a noisy student), whose running statistics are those of the augmented images, not the clean.
    bn_recompute: bool = False
    # ... on which training inputs: "labeled", or "all" (labelled and unlabelled, as the VAT authors'
    # semi-supervised MNIST script re-estimates its BatchNorm statistics on every training image)
    bn_recompute_on: str = "labeled"
    # Validation-driven control (needs data.n_val > 0); patience counts evaluations (eval_every).
    monitor: str = "val_loss"  # val_loss | val_accuracy
    plateau_patience: int = (
        0  # > 0: multiply the learning rate by plateau_factor after this many evaluations without improvement
    )
    plateau_factor: float = 0.1
    early_stop_patience: int = 0  # > 0: stop after this many evaluations without improvement
    restore_best: bool = True  # with early stopping: end on the best-monitored weights


@dataclass
class RobustnessConfig:
    """Corruption robustness (`semireg robustness RUN_DIR`, or after training with after_train)."""

    after_train: bool = False
    corruptions: list[str] = field(default_factory=list)  # [] = the 15 CIFAR-10-C corruptions + the 4 extra
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    n_images: int = -1  # test images corrupted (-1: all); the first n of a fixed permutation
    seed: int = 0  # corruption randomness (noise, blur angles, ...): fixed, so every model sees the same images
    released_dir: str = ""  # a directory with the released CIFAR-10-C .npy files; used instead of generating
    batch_size: int = 500


@dataclass
class RunConfig:
    name: str = "run"
    description: str = ""
    version: int = CONFIG_VERSION
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "supervised"})
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    teacher: str = ""  # run directory of a trained teacher (methods that distil from one)
    init_from: str = ""  # run directory whose evaluated weights initialise the model (same architecture)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    logger: str = "jsonl"  # jsonl | tensorboard (events in run_dir/tensorboard/ next to metrics.jsonl)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Recipe:
    """A base config plus named variants (override dicts) and the seeds to run each with."""

    name: str
    base: dict[str, Any]
    variants: list[tuple[str, dict[str, Any]]]
    seeds: list[int]
    description: str = ""
    # Stages run in order within each variant and seed (e.g. teacher, then student); a stage's
    # `teacher = "@<stage>"` names the run directory of an earlier stage.
    stages: list[tuple[str, dict[str, Any]]] = field(default_factory=lambda: [("", {})])


# ----------------------------------------------------------------------------- type checking


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` as type `tp`, or raise ConfigError. ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arg in args:  # the first type that takes the value, in written order
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass `cls` from a dict, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown key '{prefix}{key}' (known: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key}: expected a table, got {value!r}")
            kwargs[key] = build_dataclass(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, prefix + key)
    return cls(**kwargs)


# ----------------------------------------------------------------------------- overrides


def parse_value(text: str) -> Any:
    """Parse the right-hand side of `key=value` as a TOML value; bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"expected key=value, got {item!r}")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad key in {item!r}")
    return key, parse_value(text.strip())


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: '{part}' is not a table")
        node = child
    node[parts[-1]] = value


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge nested dicts; values in `overrides` win. Dotted keys are expanded."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if "." in key:
            expanded: dict[str, Any] = {}
            set_dotted(expanded, key, value)
            out = merge(out, expanded)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_named(*trees: dict[str, Any] | None) -> str | None:
    """The method (or system) the last of these config trees that names one names."""
    name = None
    for tree in trees:
        if not tree:
            continue
        if isinstance(tree.get("method"), dict) and "name" in tree["method"]:
            name = tree["method"]["name"]
        name = tree.get("method.name", name)
    return name if isinstance(name, str) else None


def own_options(method: str | None) -> set[str]:
    """Option names of a registered method, system or classical method (none for an unknown name:
    resolve names it)."""
    kind = next((k for k, entry in KINDS.items() if method in entry.registry), None)
    return {f.name for f in dataclasses.fields(KINDS[kind].registry[method].options)} if kind else set()


def fill_short_keys(tree: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """Let `steps=500` mean `train.steps=500` when the short key names exactly one field. A short key
    that is an option of `method` (a method or a system) is that option first: `lr=1e-4` on BEGAN is
    its `method.lr`, on the command line as in the Python API."""
    out: dict[str, Any] = {}
    own = own_options(method)
    sections = {
        "data": DataConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "augment": AugmentConfig,
    }
    top = {f.name for f in dataclasses.fields(RunConfig)}
    for key, value in tree.items():
        head = key.split(".")[0]
        if head in top:
            out = merge(out, {key: value})
            continue
        owners = [s for s, cls in sections.items() if key in {f.name for f in dataclasses.fields(cls)}]
        if key in own:
            out = merge(out, {f"method.{key}": value})
        elif len(owners) == 1:
            out = merge(out, {f"{owners[0]}.{key}": value})
        else:
            # Not a config field: a method option (validated by the method's options dataclass).
            out = merge(out, {f"method.{key}": value})
    return out


# ----------------------------------------------------------------------------- resolution


def resolve(tree: dict[str, Any]) -> RunConfig:
    """Build a validated RunConfig from a nested dict (recipe + variant + overrides)."""
    tree = copy.deepcopy(tree)
    version = tree.get("version", CONFIG_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"version: expected an integer, got {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(
            f"config version {tree['version']} was written by a newer semireg "
            f"(this one reads version {CONFIG_VERSION}); upgrade semireg"
        )
    method = tree.pop("method", {"name": "supervised"})
    if not isinstance(method, dict):
        raise ConfigError(f"method: expected a table, got {method!r}")
    cfg = build_dataclass(RunConfig, tree, "")
    name = method.get("name", "supervised")
    if not isinstance(name, str):
        raise ConfigError(f"method.name: expected a string, got {name!r}")
    options = {k: v for k, v in method.items() if k != "name"}
    opts = build_dataclass(options_class(name), options, "method.")
    cfg.method = {"name": name, **dataclasses.asdict(opts)}
    imply_settings(cfg)
    validate(cfg)
    return cfg


IMPLIED_EMA_DECAY = 0.999  # Mean Teacher's (Tarvainen & Valpola 2017) after its ramp-up


def imply_settings(cfg: RunConfig) -> None:
    """Settings a method cannot run without become its defaults, said in one line: a method that
    learns from an EMA of its weights gets train.ema_decay = 0.999 when none is set."""
    spec = METHODS.get(cfg.method["name"])
    if spec is not None and spec.needs_ema and cfg.train.ema_decay <= 0:
        cfg.train.ema_decay = IMPLIED_EMA_DECAY
        notice(
            f"method '{spec.name}' learns from an EMA of its weights: train.ema_decay = {IMPLIED_EMA_DECAY} "
            "(set it to choose another)"
        )


@dataclass(frozen=True)
class Kind:
    """One kind of thing `method.name` can name, and what every consumer of a run asks of it."""

    registry: dict[str, Any]  # name -> spec, whose `.options` is its options dataclass
    classifier: bool  # its run ends in one classifier (eval, predict and export take it as a model)
    curves: str  # what its run's curves show


KINDS: dict[str, Kind] = {
    "method": Kind(METHODS, True, "loss terms (log scale) and accuracy against the step"),  # a step function
    "system": Kind(SYSTEMS, False, "the terms each phase logged, against the round"),  # networks trained in phases
    "classical": Kind(CLASSICAL, True, "the fit's evaluation (one fit, no steps)"),  # fitted on all rows at once
}


def kind_of(name: str) -> str:
    """'method', 'system' or 'classical': which registry `method.name` is in."""

    for kind, entry in KINDS.items():
        if name in entry.registry:
            return kind
    known = "; ".join(f"{kind}s: {', '.join(sorted(entry.registry))}" for kind, entry in KINDS.items())
    raise ConfigError(f"method.name: unknown method '{name}' ({known})")


def kind_entry(name: str) -> Kind:
    """The Kind of a registered `method.name`."""

    return KINDS[kind_of(name)]


def options_class(name: str) -> type:
    """The options dataclass of a registered method, system or classical method."""

    return kind_entry(name).registry[name].options


def method_options(cfg: RunConfig) -> Any:
    return build_dataclass(
        options_class(cfg.method["name"]), {k: v for k, v in cfg.method.items() if k != "name"}, "method."
    )


# What a multi-network system reads of the train section; its networks, optimizers, learning rates and
# views are its own options (method.*), so any other train, model or augment key set on it is refused.
SYSTEM_TRAIN_KEYS = {
    "steps",
    "epochs",
    "batch_size",
    "seed",
    "threads",
    "precision",
    "device",
    "deterministic",
    "progress",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "devices",
    "num_nodes",
}


# What a classical method reads of the train section: it fits on all rows at once, in one process,
# with no optimizer, model or views of the step methods (its settings are its options, method.*).
CLASSICAL_TRAIN_KEYS = {"seed", "threads", "device", "deterministic", "progress"}


def settings_read(cfg: RunConfig) -> tuple[dict[str, set[str]], dict[str, str]]:
    """({section: the keys the trainable reads}, {section: where its own settings of that kind live}),
    for the sections a system or classical method reads only in part; ({}, {}) for a step method."""
    name, kind = cfg.method["name"], kind_of(cfg.method["name"])
    if kind == "method":
        return {}, {}
    if kind == "classical":
        where = f"the classical method '{name}' does not read it; its settings are method.* ({', '.join(sorted(own_options(name)))})"
        return {"train": CLASSICAL_TRAIN_KEYS, "model": set(), "augment": set()}, dict.fromkeys(
            ("train", "model", "augment"), where
        )
    rates = sorted(o for o in own_options(name) if o == "lr" or o.endswith("_lr") or o.startswith("lr_"))
    lead = f"the multi-network system '{name}' does not read it; "
    where = {
        "train": lead
        + (
            f"its learning rates and optimizers are options of its phases ({', '.join(f'method.{r}' for r in rates)})"
            if rates
            else "its optimizers are options of its phases (method.*)"
        ),
        "model": lead + "its networks are built from its own options (method.*)",
        "augment": lead + "its phases draw the images as they are",
    }
    return {"train": SYSTEM_TRAIN_KEYS, "model": set(), "augment": set()}, where


def check_keys_read(cfg: RunConfig) -> None:
    """A key a system or a classical method would ignore is an error saying where that setting lives for it."""
    reads, where = settings_read(cfg)
    defaults = RunConfig()
    for section, kept in reads.items():
        mine, default = getattr(cfg, section), getattr(defaults, section)
        for f in dataclasses.fields(mine):
            if f.name not in kept and getattr(mine, f.name) != getattr(default, f.name):
                raise ConfigError(f"{section}.{f.name}: {where[section]}")


def validate(cfg: RunConfig) -> None:
    check_keys_read(cfg)
    t, d = cfg.train, cfg.data
    choices = {
        "train.optimizer": (t.optimizer, {"adam", "adamw", "sgd", "adadelta"}),
        "train.schedule": (t.schedule, {"constant", "cosine", "linear", "step"}),
        "data.protocol": (d.protocol, {"standard", "holdout"}),
        "train.monitor": (t.monitor, {"val_loss", "val_accuracy"}),
        "train.bn_recompute_on": (t.bn_recompute_on, {"labeled", "all"}),
        "logger": (cfg.logger, {"jsonl", "tensorboard"}),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: '{value}' is not one of {', '.join(sorted(allowed))}")
    cfg.model.name = canonical_name(cfg.model.name)
    if cfg.model.name not in MODELS:
        raise ConfigError(f"model.name: unknown model '{cfg.model.name}' (known: {', '.join(sorted(MODELS))})")
    positive = {
        "train.steps": t.steps,
        "train.batch_size": t.batch_size,
        "data.n_labeled": d.n_labeled if d.n_labeled != -1 else 1,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    # data.n_test < 0 used to mean "no test set" under holdout without a word; 0 is the way to say it.
    for key, value in {
        "train.unlabeled_batch_size": t.unlabeled_batch_size,
        "train.mu": t.mu,
        "data.n_val": d.n_val,
        "data.n_test": d.n_test,
    }.items():
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
    if (t.plateau_patience > 0 or t.early_stop_patience > 0) and d.n_val <= 0:
        raise ConfigError("train.plateau_patience / train.early_stop_patience need a validation split (data.n_val > 0)")
    if (t.plateau_patience > 0 or t.early_stop_patience > 0) and t.eval_every <= 0:
        raise ConfigError("train.plateau_patience / train.early_stop_patience need train.eval_every > 0")
    if not 0.0 <= t.swa_start < 1.0:
        raise ConfigError(f"train.swa_start must be in [0, 1), got {t.swa_start}")
    if not 0.0 < t.plateau_factor < 1.0:
        raise ConfigError(f"train.plateau_factor must be in (0, 1), got {t.plateau_factor}")
    bad_sev = [s for s in cfg.robustness.severities if s not in (1, 2, 3, 4, 5)]
    if bad_sev:
        raise ConfigError(f"robustness.severities must be in 1..5, got {bad_sev}")
    if t.devices < 1 or t.num_nodes < 1:
        raise ConfigError(f"train.devices and train.num_nodes must be >= 1, got {t.devices} and {t.num_nodes}")
    if isinstance(t.channels_last, str) and t.channels_last != "auto":
        raise ConfigError(f"train.channels_last: expected true, false or 'auto', got '{t.channels_last}'")
    validate_augment(cfg.augment)


# ----------------------------------------------------------------------------- recipes


def recipe_names() -> list[str]:
    files = resources.files("semireg").joinpath("recipes").iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".toml"))


def _recipe_text(name_or_path: str) -> tuple[str, str, Path | None]:
    """(TOML text, recipe name, directory of the file or None for a packaged recipe)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path.read_text(), path.stem, path.parent
    if name_or_path not in recipe_names():
        raise ConfigError(
            f"unknown recipe '{name_or_path}' (known: {', '.join(recipe_names())}; or a path to a .toml file)"
        )
    return resources.files("semireg").joinpath("recipes", f"{name_or_path}.toml").read_text(), name_or_path, None


def _load_raw(name_or_path: str, chain: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """A recipe's TOML tree, with `extends = "other-recipe"` resolved: the other recipe's tree lies
    beneath (its tables deep-merged, except [method], which this recipe's replaces; its variants,
    seeds and stages kept unless this one names its own)."""
    text, name, where = _recipe_text(name_or_path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {name_or_path}: {exc}") from None
    parent = raw.pop("extends", None)
    if parent is None:
        return raw, name
    if not isinstance(parent, str):
        raise ConfigError(f"recipe {name}: extends must name a recipe, got {parent!r}")
    if parent in chain or parent == name:
        raise ConfigError(f"recipe {name}: extends forms a cycle ({' -> '.join((*chain, name, parent))})")
    if where is not None and (where / f"{parent}.toml").exists():
        parent = str(where / f"{parent}.toml")
    base, _ = _load_raw(parent, (*chain, name))
    base.pop("name", None)
    base.pop("description", None) if "description" in raw else None
    if "method" in raw:  # another method's options would not fit: a named method replaces the base's
        base.pop("method", None)
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    return {**merge(base, tables), **{k: v for k, v in raw.items() if not isinstance(v, dict)}}, name


def load_recipe(name_or_path: str) -> Recipe:
    raw, name = _load_raw(name_or_path)
    return parse_recipe(raw, name)


def parse_recipe(raw: dict[str, Any], name: str) -> Recipe:
    raw = copy.deepcopy(raw)
    for key in ("data", "model", "method", "train", "augment", "robustness"):
        if key in raw and not isinstance(raw[key], dict):
            raise ConfigError(f"recipe {name}: [{key}] must be a table, got {raw[key]!r}")
    for key in ("variants", "stages"):
        if not isinstance(raw.get(key, []), list):
            raise ConfigError(f"recipe {name}: {key} must be an array of tables ([[{key}]]), got {raw[key]!r}")
    variants_raw = raw.pop("variants", [])
    stages_raw = raw.pop("stages", [])
    seeds = raw.pop("seeds", None)
    description = raw.get("description", "")
    raw.setdefault("name", name)
    variants: list[tuple[str, dict[str, Any]]] = []
    for i, v in enumerate(variants_raw):
        if not isinstance(v, dict) or "name" not in v:
            raise ConfigError(f"recipe {name}: variants[{i}] needs a name")
        v = dict(v)
        vname = v.pop("name")
        per_stage = v.get("stages", {})
        if not isinstance(per_stage, dict) or not all(isinstance(t, dict) for t in per_stage.values()):
            raise ConfigError(f"recipe {name}: variants[{i}].stages must map stage names to tables")
        variants.append((str(vname), v))
    stages: list[tuple[str, dict[str, Any]]] = []
    for i, st in enumerate(stages_raw):
        if not isinstance(st, dict) or "name" not in st:
            raise ConfigError(f"recipe {name}: stages[{i}] needs a name")
        st = dict(st)
        sname = str(st.pop("name"))
        ref = st.get("teacher", "")
        if isinstance(ref, str) and ref.startswith("@") and ref[1:] not in [n for n, _ in stages]:
            raise ConfigError(f"recipe {name}: stage '{sname}' names teacher '{ref}', which is not an earlier stage")
        stages.append((sname, st))
    if seeds is None:
        seeds = [raw.get("train", {}).get("seed", 0)]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"recipe {name}: seeds must be a list of integers")
    recipe = Recipe(
        name=name,
        base=raw,
        variants=variants or [("", {})],
        seeds=seeds,
        description=description,
        stages=stages or [("", {})],
    )
    for vname, _ in recipe.variants:  # fail early on a bad variant or stage
        for sname, _ in recipe.stages:
            config_for(recipe, vname, 0, {}, sname, teacher_dirs={n: "-" for n, _ in recipe.stages})
    return recipe


def config_for(
    recipe: Recipe,
    variant: str,
    seed: int,
    overrides: dict[str, Any],
    stage: str = "",
    teacher_dirs: dict[str, str] | None = None,
) -> RunConfig:
    """Base < variant < stage < seed < command-line overrides. `@stage` teachers become directories."""
    variant_tree = {k: v for k, v in dict(recipe.variants)[variant].items() if k != "stages"}
    per_stage = dict(recipe.variants)[variant].get("stages", {})
    name = method_named(recipe.base, variant_tree, dict(recipe.stages)[stage], per_stage.get(stage), overrides)
    merged = merge(recipe.base, fill_short_keys(variant_tree, name))
    merged = merge(merged, fill_short_keys(dict(recipe.stages)[stage], name))
    # A variant may hold per-stage overrides: `stages = { student = { ... } }` (part of "variant < stage":
    # merged after the command line, `model.hidden=...` would lose to them).
    if stage and stage in per_stage:
        merged = merge(merged, fill_short_keys(per_stage[stage], name))
    merged.pop("stages", None)
    merged = merge(merged, {"train.seed": seed})
    merged = merge(merged, steps_win(fill_short_keys(overrides, name)))
    for key in ("teacher", "init_from"):
        ref = merged.get(key, "")
        if isinstance(ref, str) and ref.startswith("@"):
            if teacher_dirs is None or ref[1:] not in teacher_dirs or ref[1:] == stage:
                raise ConfigError(f"{key} '{ref}': no such earlier stage in recipe {recipe.name}")
            merged[key] = teacher_dirs[ref[1:]]
    merged["name"] = "/".join(p for p in (recipe.name, variant, stage) if p)
    return resolve(merged)


def steps_win(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides that set train.steps and not train.epochs also clear a recipe's epochs: steps given on the
    command line (or in Python) are the run's length, not a key the recipe's epochs silently outrank."""
    train = overrides.get("train", {})
    if isinstance(train, dict) and "steps" in train and "epochs" not in train:
        return merge(overrides, {"train": {"epochs": 0.0}})
    return overrides


def from_kwargs(options: dict[str, Any], base: dict[str, Any] | None = None) -> RunConfig:
    """The Python API: flat keyword options routed to their sections."""
    return resolve(merge(base or {}, steps_win(fill_short_keys(options, method_named(base, options)))))
