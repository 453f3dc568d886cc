"""`SemiSupervisedClassifier`: semireg as a scikit-learn estimator.

Unlabelled rows are marked in y, as scikit-learn's own semi-supervised estimators take them:
`y == -1` (or the value of `unlabeled=`), and `None` or NaN for labels of any type. `classes_` are
the user's own labels; a fitted estimator pickles without a pickle of torch code (its weights travel
as safetensors bytes, its model is rebuilt from the registry by name).
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
import warnings
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from .api import fit as fit_model
from .api import select as select_methods
from .augment import eval_transform
from .config import kind_of, resolve
from .data.arrays import as_images, notice
from .data.partial import UNLABELED, as_label_array, check_one_label_kind, unlabeled_mask
from .errors import BudgetError
from .evaluation import predict_logits
from .finished import module_with_weights
from .selection import parse_budget, verdict

DEFAULT_METHOD = "auto"
# method="auto" scores AUTO_CANDIDATES and the mean of AUTO_ENSEMBLE's probabilities on folds of the
# labelled rows (within `budget`) and keeps that mean unless a single candidate beats it beyond noise.
# Chosen on validation rows of the development tasks (digits, wine, breast cancer; benchmarks/reproduce/
# vector_defaults.py and vector_ensembles.py --members uda flexmatch labelspreading selftraining): the mean of
# FlexMatch, label spreading and self-training 89.3 / 95.2 / 95.6 % (mean 93.4; UDA in FlexMatch's place 92.9,
# every member alone lower on at least one task; with self-training's curriculum selection 89.5 / 95.2 / 95.0);
# the folds of 12-50 labels rarely tell single methods apart.
# FlexMatch replaced FixMatch among the candidates (its class-wise thresholds; 88.5 against 85.7 % on digits).
AUTO_CANDIDATES = ("supervised", "uda", "flexmatch", "vat", "labelspreading", "selftraining")
AUTO_ENSEMBLE = ("flexmatch", "labelspreading", "selftraining")
AUTO_FOLDS = 3
# `budget` covers the whole fit: the search gets this share of it, the final fits of the chosen
# members the rest (on digits the final fit of the three ensemble members took 7-9 s).
AUTO_SEARCH_SHARE = 2 / 3


class SemiSupervisedClassifier(ClassifierMixin, BaseEstimator):
    """A classifier trained on labelled and unlabelled rows together.

    Parameters
    ----------
    method : "auto" (a search over AUTO_CANDIDATES on folds of the labelled rows, within `budget`;
        `method_` and `choice_` say what it chose), a registered method (`semireg.list_methods()`),
        e.g. "fixmatch", "vat", "supervised", or a classical one (`semireg.list_classical()`):
        "labelspreading", "selftraining".
    model : a registered model name (`semireg.list_models()`) or an `nn.Module` mapping a batch to
        logits; a neural method's (a classical method fits its own).
    steps : optimizer steps of a neural method (for "auto": at most, each candidate's steps in the search).
    options : any other config keys, short or dotted (`{"lr": 3e-4, "method.threshold": 0.9}`).
    unlabeled : the label that marks an unlabelled row (besides None and NaN); -1 by default.
    random_state : None (a fresh seed each fit), an int, or a numpy RandomState.
    verbose : 0 silences semireg's one-line notices; 1 shows them.
    budget : seconds (or '90s', '2m') a method="auto" fit may take: AUTO_SEARCH_SHARE of it for the
        search, the rest for the final fit on all the labels.

    When no row is unlabelled, the labelled inputs are the unlabelled pool as well (a semi-supervised
    method then regularises on them, as FixMatch's reference code adds labelled images to its pool).
    """

    def __init__(
        self,
        method: str = DEFAULT_METHOD,
        model: str | nn.Module = "mlp",
        steps: int = 500,
        options: dict[str, Any] | None = None,
        unlabeled: Any = UNLABELED,
        random_state: Any = None,
        verbose: int = 0,
        budget: str | float = "30s",
    ) -> None:
        self.method = method
        self.model = model
        self.steps = steps
        self.budget = budget
        self.options = options
        self.unlabeled = unlabeled
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        return tags

    def fit(self, X: Any, y: Any) -> SemiSupervisedClassifier:
        """Train on the rows of X; rows whose label is `unlabeled`, None or NaN are unlabelled."""
        x = self.inputs(X, reset=True)
        if getattr(y, "ndim", 1) == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it is read as shape (n_samples,)",
                DataConversionWarning,
                stacklevel=2,
            )
        labels = as_label_array(y, "y")
        if len(labels) != len(x):
            raise ValueError(f"y: {len(labels)} labels for {len(x)} rows of X")
        missing = unlabeled_mask(labels, self.unlabeled)
        if missing.all():
            raise ValueError(
                f"y: every row is unlabelled (marked {self.unlabeled!r}, None or NaN); "
                "at least one labelled row per class is needed"
            )
        kept = labels[~missing]
        check_one_label_kind(kept, "y")
        check_classification_targets(kept)
        self.classes_ = np.unique(kept)
        if len(self.classes_) < 2:
            raise ValueError(f"y: the labelled rows hold 1 class ({self.classes_[0]!r}); a classifier needs 2 or more")
        x_l, x_u = x[torch.from_numpy(~missing)], x[torch.from_numpy(missing)]
        pool = x_u if len(x_u) else x_l
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        y_l = np.searchsorted(self.classes_, kept)
        with self.notices():
            self.method_ = self.method if self.method != "auto" else self.choose(x_l, y_l, pool, seed)
            self.members_ = [self.fit_member(name, x_l, y_l, pool, seed) for name in self.method_.split("+")]
        if self.method == "auto" and not self.selection_["accuracy"]:
            warnings.warn(self.choice_, UserWarning, stacklevel=2)
        self.in_shape_ = tuple(x.shape[1:])
        return self

    def fit_member(self, name: str, x_l: torch.Tensor, y_l: np.ndarray, pool: torch.Tensor, seed: int):
        """(eval-mode module, its resolved config) of one method trained on all the labels."""
        neural = kind_of(name) == "method"
        # steps are a neural method's; a classical method fits once (its settings are in options)
        steps = {"steps": self.steps} if neural else {}
        # what the user set for the neural methods is not for a classical one that "auto" or a "+" list adds
        chosen_for_them = (self.method == "auto" or "+" in self.method) and not neural
        options = {} if chosen_for_them else (self.options or {})
        result = fit_model(
            "mlp" if chosen_for_them else self.model,
            (x_l, y_l),
            pool,
            method=name,
            seed=seed,
            num_classes=len(self.classes_),
            **steps,
            **options,
        )
        return result.model.cpu().eval(), result.config.to_dict()

    def choose(self, x_l: torch.Tensor, y_l: np.ndarray, pool: torch.Tensor, seed: int) -> str:
        """method="auto": AUTO_CANDIDATES on folds of the labelled rows within `budget`; the one that
        beats AUTO_REFERENCE beyond noise, else AUTO_REFERENCE. Said in one line (`choice_`)."""
        if not isinstance(self.model, str):
            raise ValueError("method='auto' searches registered models only: pass model='mlp' (or another name)")
        start = time.perf_counter()
        ensemble = "+".join(AUTO_ENSEMBLE)
        try:
            sel = select_methods(
                (x_l, y_l),
                pool,
                model=self.model,
                methods=list(AUTO_CANDIDATES),
                budget=AUTO_SEARCH_SHARE * parse_budget(self.budget),
                folds=AUTO_FOLDS,
                out=None,  # in memory: nothing written
                num_classes=len(self.classes_),
                seed=seed,
                progress=False,
                steps=self.steps,
                **(self.options or {}),
            )
        except BudgetError as exc:
            # The default must fit on a slow or busy machine too: the search is what the budget cannot hold,
            # so the reference it would have had to beat is kept (`fit` warns: notices may be silenced).
            self.selection_ = {"accuracy": {}, "steps": 0, "verdict": f"no search: {exc}"}
            self.choice_ = f"auto: {ensemble} (no search: {exc}) in {time.perf_counter() - start:.0f} s"
            return ensemble
        sel.accuracy[ensemble] = [
            float((sum(sel.val_probs[m][i] for m in AUTO_ENSEMBLE).argmax(1) == labels).mean())
            for i, labels in enumerate(sel.val_labels)
        ]
        chosen, why = verdict(sel, reference=ensemble)
        self.selection_ = {"accuracy": sel.accuracy, "steps": sel.steps, "verdict": why}
        self.choice_ = f"auto: {chosen} ({why}) in {time.perf_counter() - start:.0f} s"
        notice(self.choice_)
        return chosen

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, n_classes) probabilities, columns in the order of `classes_`, rows summing to 1."""
        check_is_fitted(self)
        x = self.inputs(X, reset=False)
        probs = []
        for module, config in self.members_:  # several: the mean of their probabilities
            transform = eval_transform(resolve(config).augment)
            # float64: a float32 matrix product sums in an order that depends on the batch's row count,
            # so a row's probabilities would change (by ~1e-7) with the rows predicted beside it.
            logits = predict_logits(copy.deepcopy(module).double(), x.double(), transform=transform)  # (N, K)
            probs.append(torch.softmax(logits.double(), dim=1))
        return (sum(probs) / len(probs)).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """(N,) predicted labels, in the user's own label values."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy on the labelled rows of (X, y): rows marked unlabelled, as in `fit`, are left out
        (a cross-validation fold of semi-supervised data holds them, and they have no answer)."""
        labels = as_label_array(y, "y")
        labelled = ~unlabeled_mask(labels, self.unlabeled)
        if not labelled.any():
            raise ValueError("score: every row of y is unlabelled; there is nothing to score")
        weights = None if sample_weight is None else np.asarray(sample_weight)[labelled]
        return float(accuracy_score(labels[labelled], self.predict(X)[labelled], sample_weight=weights))

    def inputs(self, X: Any, *, reset: bool) -> torch.Tensor:
        """X checked as scikit-learn checks it (shape, NaN, feature count and names) -> float32 (N, ...)."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        arr = validate_data(self, X, reset=reset, allow_nd=True, dtype="numeric")
        if arr.ndim == 2 and arr.dtype == np.uint8:
            arr = arr.astype(np.float32)  # uint8 features are numbers, not pixels to scale to [0, 1]
        with self.notices():
            # torch cannot wrap a read-only array (a memory-mapped file): copy that one
            return as_images(np.ascontiguousarray(arr) if arr.flags.writeable else arr.copy(), "X")

    @contextlib.contextmanager
    def notices(self):
        """semireg's one-line notices (class counts, precision) go to stderr only when verbose."""
        if self.verbose:
            yield
            return
        with contextlib.redirect_stderr(io.StringIO()):
            yield

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if "members_" in state and isinstance(self.model, str):
            state["members_"] = [
                (
                    {
                        "safetensors": save_tensors(
                            {k: v.detach().cpu().contiguous().clone() for k, v in m.state_dict().items()}
                        )
                    },
                    c,
                )
                for m, c in self.members_
            ]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        members = state.get("members_")
        if members and isinstance(members[0][0], dict) and "safetensors" in members[0][0]:
            state["members_"] = [
                (
                    module_with_weights(
                        resolve(config), state["in_shape_"], len(state["classes_"]), load_tensors(packed["safetensors"])
                    ).eval(),
                    config,
                )
                for packed, config in members
            ]
        self.__dict__.update(state)
