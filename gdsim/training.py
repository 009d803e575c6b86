"""One training run: validate -> plan (flat arrays) -> jitted loop -> :class:`TrainResult`.

:func:`train` runs one training with ``torch.optim.SGD`` semantics; the whole loop over
epochs and batches runs inside Numba (:func:`train_loop`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # for the annotations only
    from .models import MLP
    from .optim import SGD

from ._jit import jit, load_compiler_unless_cached, loop_threads
from ._resources import check_memory
from ._threads import one_blas_thread
from ._validate import ParameterError, check_bool, check_int, check_seed
from .batches import batch_orders, batch_stop, steps_per_epoch
from .dense import dense_workspace_bytes, model_loss_grad, new_dense_workspace
from .kernels import divergence_threshold, has_bias, is_diverged, new_workspace, store_row
from .models import check_model
from .optim import (
    DAMPENING,
    MOMENTUM,
    NESTEROV,
    WEIGHT_DECAY,
    check_optimizer,
    epoch_lrs,
    sgd_update,
    sgd_update_rows,
)
from .outcomes import (NOT_GIVEN, OUTCOMES, NotGiven, check_train_divergence, classify, compile_classify_aside,
                       document_divergence)
from .tracks import (
    check_track,
    new_tracks,
    track_batch,
    track_full,
    tracks_bytes,
    tracks_dataset,
)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------
def use_dense_kernels(model, batch_size):
    """Whether :func:`train` computes batches with matrix products (BLAS) rather than
    sample by sample: worth it for wide layers and batches of more than a few samples.

    Its callers pass :func:`train_loop`'s ``dense`` from it: a thread count, or None.
    """
    widest = max(a * b for a, b in zip(model.sizes[:-1], model.sizes[1:]))
    return widest >= 1024 and batch_size >= 8


@jit
def train_loop(state, model, X, Y, batches, lr, hyper, maximize, divergence, out, dense, tracks):
    """Train one model with SGD over ``order.shape[0]`` epochs, in place.

    Parameters
    ----------
    state : (float64[n_params], float64[n_params], bool, bool, float)
        ``(theta, buf, continued, buffer_ready, initial_loss)``. ``theta``: the initial
        parameters, the final ones on return. ``buf``: torch's momentum buffer, updated in
        place (its content is ignored until the buffer is created: torch creates it at the
        first step with momentum). For a run continued from a :class:`TrainState`
        (``continued``), whether ``buf`` already holds the buffer and the run's initial
        full-data loss, which sets the divergence threshold; for a new run ``(False,
        False, any)`` (its first loss sets it).
    model : gdsim.models.ModelSpec
    X : float64[n, n_in]
    Y : float64[n, n_out] or float64[n, 1]
    batches : (int64[epochs, n], int, bool)
        ``(order, batch_size, drop_last)``: the sample order of each epoch, sliced into
        batches by :func:`gdsim.batches.batch_stop`.
    lr : float64[n_steps]
        Learning rate of each step.
    hyper : float64[N_HYPER]
        The other hyper-parameters, rows :data:`gdsim.optim.HYPER_ROWS`.
    maximize : bool
    divergence : (float, bool)
        ``(factor, stop)``: a loss above ``factor`` times the initial full-data loss marks
        divergence (``inf``: only NaN/inf do); with ``stop`` the run stops at the step
        marked: no update there, and the outputs after it are NaN (the epoch losses after
        it, the step losses after the batch loss that marked it, the parameters after it,
        and the tracks that were not measured).
    out : (float64[epochs + 1], float64[n_steps], float64[n_steps + 1, n_params])
        Outputs ``(epoch_loss, step_loss, params_history)``: the full-data loss before each
        epoch and after the last; each batch's loss before its update; when it has rows,
        the parameters before the first step and after every step.
    dense : int or None
        An int: compute each batch with matrix products (:func:`gdsim.dense.dense_loss_grad`,
        its scratch allocated once), their parts and the update on up to this many of
        Numba's threads (:mod:`gdsim.products`: the same bits for any); None: sample by
        sample. A None argument is a compile-time constant (Numba prunes its ``is None``
        branches), so the build of each choice compiles only its own kernels
        (:func:`use_dense_kernels` decides which).
    tracks : tuple or None
        :func:`gdsim.tracks.new_tracks`: the observables to measure every ``every[i]``
        steps (0: never), where they go and their scratch; None: none. Numba prunes the
        ``tracks is None`` branches of a None argument before compiling, so the build
        without tracks contains none of their code (Lanczos, noise scales, ...).

    Returns
    -------
    (int, float, float)
        The first step whose loss, evaluated before its update (the batch loss, or the
        full-data loss at the start of an epoch), is non-finite or above the threshold,
        and that loss; ``n_steps`` if only the final loss is; ``(-1, nan)`` if none.
        Then the initial loss of the run. The run goes on to the end unless ``stop``.
    """
    theta, buf, continued, buffer_ready, initial_loss = state
    order, batch_size, drop_last = batches
    divergence_factor, stop_diverged = divergence
    epoch_loss, step_loss, params_history = out
    momentum, dampening = hyper[MOMENTUM], hyper[DAMPENING]
    weight_decay, nesterov = hyper[WEIGHT_DECAY], hyper[NESTEROV] != 0.0
    n = X.shape[0]
    epochs = order.shape[0]
    work = new_workspace(model.sizes)
    matrices = new_dense_workspace(model.sizes, n, dense) if dense is not None else None  # None: pruned
    grad = np.empty(theta.shape[0])
    all_rows = np.arange(n)
    record = params_history.shape[0] > 0
    if record:
        store_row(params_history, 0, theta)
    scratch = np.empty(theta.shape[0])
    threshold = np.inf
    diverged_step = -1
    diverged_loss = np.nan
    stopped = False  # marked with stop_diverged: at the start of an epoch, or by a batch's loss
    by_batch = False
    # int64, not the literal 0: Numba would type the tracks' calls once with Literal[int](0)
    # before the loop's int64 and compile them twice (track_full, track_batch: ~4 s).
    step = np.int64(0)
    for epoch in range(epochs + 1):
        # Full-batch GD in data order: the first step's batch is the full data, so its loss
        # is the epoch's full-data loss, computed once (with its gradient).
        reuse = epoch < epochs and batch_size >= n and np.all(order[epoch] == all_rows)
        # ``reuse`` and np.bool_(True) below: want_grad a run-time bool, one build of the
        # kernel for both (a literal True or False would compile one each).
        full = model_loss_grad(theta, model, X, Y, all_rows, reuse, grad, work, matrices)
        epoch_loss[epoch] = full
        if epoch == 0:
            if not continued:
                initial_loss = full
            threshold = divergence_threshold(initial_loss, divergence_factor)
        if diverged_step < 0 and is_diverged(full, threshold):
            diverged_step = step
            diverged_loss = full
            stopped = stop_diverged
        if epoch == epochs or stopped:
            if tracks is not None:
                track_full(theta, model, X, Y, step, tracks, work, scratch, matrices)
            break
        for start in range(0, n, batch_size):
            stop = batch_stop(start, n, batch_size, drop_last)
            if stop == start:
                break
            if tracks is not None:
                track_full(theta, model, X, Y, step, tracks, work, scratch, matrices)
            if reuse:
                value = full
            else:
                value = model_loss_grad(theta, model, X, Y, order[epoch, start:stop], np.bool_(True), grad, work,
                                        matrices)
            step_loss[step] = value
            if diverged_step < 0 and is_diverged(value, threshold):
                diverged_step = step
                diverged_loss = value
                if stop_diverged:
                    stopped = by_batch = True
                    break
            if tracks is not None:
                track_batch(theta, model, X, Y, order[epoch, start:stop], step, tracks, value, grad)
            if dense is not None:
                sgd_update_rows(theta, grad, buf, model.sizes, has_bias(model.layer_code), dense, lr[step],
                                momentum, dampening, weight_decay, nesterov, maximize, step == 0 and not buffer_ready)
            else:
                sgd_update(theta, grad, buf, lr[step], momentum, dampening, weight_decay, nesterov, maximize,
                           step == 0 and not buffer_ready)
            step += 1
            if record:
                store_row(params_history, step, theta)
        if stopped:
            break
    if stopped:  # at step diverged_step, before its update: nothing after it was computed
        epoch_loss[epoch + 1:] = np.nan
        step_loss[step + 1 if by_batch else step:] = np.nan
        if record:
            params_history[step + 1:, :] = np.nan
    return diverged_step, diverged_loss, initial_loss


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, repr=False)
class TrainState:
    """Where a run stands, to continue it: ``train(..., state0=result.state)`` for ``M``
    more epochs gives, bit for bit, what one run of ``N + M`` epochs gives after its first
    ``N`` (with the same data, optimizer and sampling).

    Attributes
    ----------
    params : numpy.ndarray (n_params,)
    momentum_buffer : numpy.ndarray (n_params,) or None
        torch's momentum buffer; None until the first step with momentum creates it.
    step, epoch : int
        Updates and epochs done since the run began: the schedule and the sample orders
        continue from ``epoch``.
    seed : int
        The seed of the run's sample orders.
    initial_loss : float
        The run's first full-data loss, which sets its divergence threshold.
    """

    params: np.ndarray
    momentum_buffer: np.ndarray | None
    step: int
    epoch: int
    seed: int
    initial_loss: float

    def __repr__(self):
        buffer = "no momentum buffer" if self.momentum_buffer is None else "a momentum buffer"
        return f"TrainState(epoch {self.epoch}, step {self.step}, {self.params.shape[0]} parameters, {buffer})"


@dataclasses.dataclass(frozen=True, repr=False)
class TrainResult:
    """Outcome of :func:`gdsim.train`.

    Attributes
    ----------
    params : numpy.ndarray (n_params,)
        Final parameters.
    epoch_loss : numpy.ndarray (epochs + 1,)
        Full-data loss before each epoch and after the last.
    step_loss : numpy.ndarray (n_steps,)
        Loss of each step's batch, before its update.
    params_history : numpy.ndarray (n_steps + 1, n_params) or None
        Parameters before the first step and after each step (``record_params=True``).
    diverged_step : int
        First step whose loss (before its update) marked the run under ``divergence``
        (non-finite, or above the threshold); ``n_steps`` if only the final loss did; -1
        if none. A run that ``divergence`` stops stops there.
    diverged_loss : float
        The loss that marked the divergence (NaN if none).
    steps_per_epoch : int
    state : TrainState or None
        The final state, to continue the run (``train(..., state0=result.state)``); None
        for a run that ``divergence`` stopped.
    tracks : xarray.Dataset or None
        The observables of ``track=``, over the dimension ``step`` (None without ``track``).
    divergence_rule : str
        How :attr:`diverged` reads: ``"growth"`` (``divergence="growth"``), the outcome;
        ``"threshold"``, whether the run was marked.

    Notes
    -----
    Steps and epochs count from the start of this call, also for a continued run.
    """

    params: np.ndarray
    epoch_loss: np.ndarray
    step_loss: np.ndarray
    params_history: np.ndarray | None
    diverged_step: int
    diverged_loss: float
    steps_per_epoch: int
    state: TrainState | None
    tracks: object = None
    divergence_rule: str = "threshold"

    @property
    def diverged(self):
        """True if the run diverged, by the rule of ``divergence``: its :attr:`outcome` is
        "diverged" under ``divergence="growth"``, else it was marked (:attr:`diverged_step`)."""
        if self.divergence_rule == "growth":
            return self.outcome == "diverged"
        return self.diverged_step >= 0

    @property
    def outcome(self):
        """What became of the run, read from :attr:`epoch_loss`: "converged",
        "converging", "oscillating", "bounded orbit" or "diverged"
        (:func:`gdsim.outcomes.classify`; unlike :attr:`diverged`, a run that settled on a
        far but bounded orbit is not "diverged")."""
        return self._classified[0]

    @property
    def growth_rate(self):
        """The factor the full-data loss grows by per epoch over the last half of the
        epochs (below 1: it decays; :func:`gdsim.outcomes.classify`)."""
        return self._classified[1]

    @functools.cached_property
    def _classified(self):
        """(outcome, growth rate), classified once (``repr`` asks for the outcome too)."""
        code, rate = classify(self.epoch_loss)
        return OUTCOMES[int(code)], float(rate)

    @property
    def n_steps(self):
        """Number of updates made."""
        return self.step_loss.shape[0]

    @property
    def epoch_params(self):
        """Parameters before each epoch and after the last, ``(epochs + 1, n_params)``.

        Needs ``record_params=True``.
        """
        if self.params_history is None:
            raise ValueError("epoch_params needs the run to be made with record_params=True")
        return self.params_history[::self.steps_per_epoch]

    def __repr__(self):
        status = (f"diverged at step {self.diverged_step} (loss {self.diverged_loss:.4g})"
                  if self.diverged_step >= 0 else "its loss grows" if self.diverged else "did not diverge")
        return (f"TrainResult({self.n_steps} steps, loss {self.epoch_loss[0]:.6g} -> {self.epoch_loss[-1]:.6g}, "
                f"{self.outcome}, {status})")


@document_divergence
def train(model: MLP, X: ArrayLike, Y: ArrayLike, optimizer: SGD, *, epochs: int, batch_size: int | None = None,
          shuffle: bool | str = False, seed: int | None = None, drop_last: bool = False, params0: ArrayLike | None = None,
          lr_schedule: object = None, record_params: bool = False, divergence: str | float | None = None,
          state0: TrainState | None = None, track: dict[str, int] | None = None,
          divergence_factor: float | None | NotGiven = NOT_GIVEN) -> TrainResult:
    """Train ``model`` on ``(X, Y)`` with ``optimizer``, like a PyTorch training loop.

    Equivalent to (in float64)::

        for epoch in range(epochs):
            epoch_loss.append(loss(model, X, Y))
            for batch in batches(order[epoch], batch_size, drop_last):
                loss = criterion(model(X[batch]), Y[batch]); loss.backward()
                step_loss.append(loss.item()); opt.step(); opt.zero_grad()
        epoch_loss.append(loss(model, X, Y))

    with the whole loop compiled by Numba.

    Parameters
    ----------
    model : gdsim.Linear or gdsim.MLP
    X : array_like (n, n_in)
    Y : array_like
        Targets ``(n, n_out)`` for MSE, integer labels ``(n,)`` for cross-entropy.
    optimizer : gdsim.SGD
    epochs : int
        Number of passes over the data, ``>= 1``.
    batch_size : int or None, default None
        Samples per step, in ``[1, n]``; None means full batch (``n``).
    shuffle : bool, "replacement" or array_like of int (epochs, n), default False
        Sample order: data order (False), a fresh permutation per epoch drawn from ``seed``
        (True), ``n`` indices per epoch drawn with replacement from ``seed``
        (``"replacement"``), or the order itself (see :func:`gdsim.batches.batch_orders`).
    seed : int, optional
        Seeds the initial parameters (``model.init(seed)``, when ``params0`` is None)
        and the shuffles; default 0, or ``state0.seed``.
    drop_last : bool, default False
        Skip the last batch of an epoch when it is smaller than ``batch_size``.
    params0 : array_like (n_params,), optional
        Initial parameters (finite); default ``model.init(seed)``.
    lr_schedule : tuple or array_like, optional
        Learning-rate schedule stepped once per epoch, with torch's closed forms:
        ``("step", step_size, gamma)``, ``("exponential", gamma)``, ``("cosine", T_max,
        eta_min)`` or an array of ``epochs`` factors (see :func:`gdsim.epoch_lrs`).
    record_params : bool, default False
        Keep the parameters after every step in ``params_history``.
    divergence : "growth", float, "nonfinite" or None, default None
        See :data:`gdsim.outcomes.DIVERGENCE_DOC`.
    state0 : TrainState, optional
        Continue a run from its state (``result.state``): its parameters, momentum buffer,
        step and epoch counts (the lr schedule and the shuffles go on from there) and its
        initial loss (the divergence threshold). Not with ``params0``.
    track : dict, optional
        Observables measured inside the loop, ``{name: every k steps}``, e.g.
        ``{"loss": 1, "grad_norm": 1, "params": 100}``; names and what they measure in
        :mod:`gdsim.tracks`. They come back in ``result.tracks``.
    divergence_factor : float or None, optional
        Deprecated, use ``divergence``: a loss above this factor (> 0) times the initial
        loss marks the run, None: only a non-finite loss does; the run goes on to the end.
        ``divergence_factor=1e6`` (its old default) is ``divergence=None`` and
        ``divergence_factor=None`` is ``divergence="nonfinite"``; ``divergence=x`` marks
        where ``divergence_factor=x`` did, and stops the run there.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        For any invalid argument, before any work is done.

    Warns
    -----
    DeprecationWarning
        For ``divergence_factor``, naming the ``divergence`` that replaces it.
    """
    model = check_model(model)
    optimizer = check_optimizer(optimizer)
    X, Y = model.check_data(X, Y)
    n = X.shape[0]
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = n if batch_size is None else check_int("batch_size", batch_size, minimum=1, maximum=n)
    drop_last = check_bool("drop_last", drop_last)
    state0 = _check_state(state0, model, params0, seed)
    seed = state0.seed if state0 is not None else 0 if seed is None else check_seed("seed", seed)
    epoch0 = 0 if state0 is None else state0.epoch
    record_params = check_bool("record_params", record_params)
    every = check_track(track)
    factor, stop_diverged, divergence_rule = check_train_divergence(divergence, divergence_factor)
    per_epoch = steps_per_epoch(n, batch_size, drop_last)
    n_steps = epochs * per_epoch
    history_rows = n_steps + 1 if record_params else 0
    # Everything the run allocates (the schedule included), checked before anything is allocated.
    drawn = epoch0 + epochs if _drawn_orders(shuffle) else epochs
    dense = loop_threads() if use_dense_kernels(model, batch_size) else None  # the matrix path's threads
    matrix_bytes = dense_workspace_bytes(model.sizes, n) if dense else 0
    check_memory(8 * (history_rows * model.n_params + drawn * n + 2 * n_steps + 2 * (epoch0 + epochs)
                      + 4 * model.n_params) + matrix_bytes
                 + tracks_bytes(every, n_steps, model.n_params, n, model.sizes if dense else None),
                 f"a run of {n_steps} steps" + (" with record_params=True" if record_params else ""),
                 "train for fewer epochs" + (" or set record_params=False" if record_params else ""))
    # A continued run takes the next epochs of its schedule and of its drawn orders.
    lrs = epoch_lrs(optimizer.lr, lr_schedule, epoch0 + epochs)[epoch0:]
    order = batch_orders(n, drawn, shuffle, seed)[drawn - epochs:]
    if state0 is None:
        theta = model.init(seed) if params0 is None else model.check_params(params0, "params0").copy()
        buf, ready, initial = np.zeros_like(theta), False, np.nan
    else:
        theta = state0.params.copy()
        ready = state0.momentum_buffer is not None
        buf = state0.momentum_buffer.copy() if state0.momentum_buffer is not None else np.zeros_like(theta)
        initial = state0.initial_loss
    params_history = np.empty((history_rows, model.n_params))
    epoch_loss = np.empty(epochs + 1)
    step_loss = np.empty(n_steps)
    lr = np.repeat(lrs, per_epoch)
    tracks = new_tracks(every, n_steps, model, n, dense is not None) if every.any() else None
    args = ((theta, buf, state0 is not None, ready, initial), model.spec, X, Y, (order, batch_size, drop_last), lr,
            optimizer.hyper_table(), optimizer.maximize, (factor, stop_diverged),
            (epoch_loss, step_loss, params_history), dense, tracks)
    if load_compiler_unless_cached(train_loop, args) is False:  # Numba's registries with the GC paused
        compile_classify_aside()  # it compiles for seconds: the classifier meanwhile in another process
    with one_blas_thread(dense is not None):  # the matrix path: the same bits on any machine
        diverged_step, diverged_loss, initial_loss = train_loop(*args)
    buffer_ready = ready or (n_steps > 0 and optimizer.momentum != 0.0)
    state = None if stop_diverged and diverged_step >= 0 else TrainState(
        params=theta.copy(), momentum_buffer=buf if buffer_ready else None,
        step=(0 if state0 is None else state0.step) + n_steps, epoch=epoch0 + epochs, seed=seed,
        initial_loss=float(initial_loss))
    return TrainResult(params=theta, epoch_loss=epoch_loss, step_loss=step_loss,
                       params_history=params_history if record_params else None,
                       diverged_step=int(diverged_step), diverged_loss=float(diverged_loss),
                       steps_per_epoch=per_epoch, state=state,
                       tracks=None if tracks is None else tracks_dataset(tracks, n_steps),
                       divergence_rule=divergence_rule)



def _drawn_orders(shuffle):
    """Whether ``shuffle`` asks for orders drawn from the seed (a continued run skips the
    epochs already drawn), rather than given as an array."""
    return isinstance(shuffle, (bool, np.bool_, str))


def _check_state(state0, model, params0, seed):
    """``state0`` checked against the model and the other arguments (None passes)."""
    if state0 is None:
        return None
    if not isinstance(state0, TrainState):
        raise ParameterError(f"state0 must be a TrainState (a previous result's .state), got "
                             f"{type(state0).__name__}", "state0")
    if params0 is not None:
        raise ParameterError("give params0 (a new run) or state0 (a run continued), not both", "params0")
    if seed is not None and check_seed("seed", seed) != state0.seed:
        raise ParameterError(f"seed must be state0's seed ({state0.seed}) or None: a continued run keeps its "
                             f"sample orders, got {seed!r}", "seed")
    model.check_params(state0.params, "state0.params", finite=False)
    if state0.momentum_buffer is not None:
        model.check_params(state0.momentum_buffer, "state0.momentum_buffer", finite=False)
    return state0
