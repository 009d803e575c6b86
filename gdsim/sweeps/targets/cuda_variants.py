"""Every variant of the CUDA sweep kernel that gdsim can launch, and its PTX.

A variant is one compiled kernel: a build of
:func:`gdsim.sweeps.targets.cuda_kernels.compiled` (tracked or not, dtype, size class:
:func:`gdsim.sweeps.targets.cuda.kernel_build`) and one signature, the Numba types of
:func:`gdsim.sweeps.targets.cuda.kernel_args`. The model family, loss, reduction,
activation, layers and optimizer options reach the kernel as values (the codes of
:class:`gdsim.models.ModelSpec`, the rows of ``hyper``), so they share variants; the
dtype, the build and the size class (the model's parameter count) do not.
:func:`kernel_variants` finds the variants the way a sweep does
(:func:`gdsim.sweeps.check_sweep`, :func:`gdsim.sweeps.plan.make_plan`) for every option
of gdsim's own tables, so that an option whose types differ shows up as a new variant
without a list here to edit.

:func:`variant_ptx` compiles a variant to PTX with NVVM, on a machine without a GPU
(numba-cuda and the ``nvidia-nvvm`` wheel; the simulator must be off).
"""

import dataclasses

import numpy as np

from ... import datasets, models, scalar
from ..._jit import cuda_ptx
from ..._validate import ParameterError
from ..plan import make_plan
from ..spec import CUDA_TRACKS, DTYPES, check_sweep
from .cuda import kernel_build, kernel_signature
from .cuda_kernels import LOCAL_SIZES, MIN_BLOCKS, THREADS, compiled

#: Compute capabilities the kernels are compiled for in CI (A100, H100).
COMPUTE_CAPABILITIES = ((8, 0), (9, 0))

#: MLP layer sizes (3 inputs, 2 outputs) planned for each size class of
#: :data:`~gdsim.sweeps.targets.cuda_kernels.LOCAL_SIZES`, then for the global build (0):
#: 14, 26, 218 and 690 parameters.
CLASS_MODELS = {16: (3, 2, 2), 64: (3, 4, 2), 256: (3, 16, 8, 2), 0: (3, 32, 16, 2)}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One compiled CUDA sweep kernel.

    Attributes
    ----------
    name : str
        ``dtype``, with ``-tracked`` for the build that measures tracks, then ``-local``
        and the size class or ``-global`` (and a number if one build ever had several
        signatures).
    tracked : bool
        The build (:func:`gdsim.sweeps.targets.cuda_kernels.compiled`).
    signature : tuple of numba.core.types.Type
        The argument types of its launch.
    options : tuple of str
        The option settings (``"model=MLP loss=mse ..."``) found to launch it.
    threads : int
        Threads per block of its launches.
    dtype : str
        The dtype it computes in.
    size : int
        Its size class (:func:`gdsim.sweeps.targets.cuda_kernels.size_class`; 0: global memory).
    """

    name: str
    tracked: bool
    signature: tuple
    options: tuple
    dtype: str = "float64"
    size: int = 0
    threads: int = THREADS


def option_settings():
    """The sweeps :func:`kernel_variants` plans: each dtype, model family and loss, with the
    defaults and with each other option changed one at a time, every value taken from
    gdsim's tables (activations, reductions, layers, tracks, ...).

    Returns
    -------
    list of (str, dict)
        A label and the keyword arguments of :func:`gdsim.sweeps.check_sweep`, ``model``
        given as ``(family, keyword arguments)`` (built by :func:`kernel_variants`).
    """
    changes = [{}]
    changes += [{"model": {"activation": name}} for name in scalar.ACTIVATIONS]
    changes += [{"model": {"reduction": name}} for name in scalar.REDUCTIONS]
    changes += [{"model": {"parameterization": p, "bias": b}} for p, b in scalar.LAYERS]
    changes += [{"momentum": 0.9}, {"momentum": 0.9, "nesterov": [False, True]},
                {"momentum": 0.9, "dampening": 0.5}, {"weight_decay": [0.0, 0.01]},
                {"lr_schedule": ("step", 2, 0.5)}, {"batch_size": [3, 12]}, {"shuffle": True},
                {"batch_size": 5, "drop_last": True}, {"divergence": None}, {"divergence": 10.0}]
    changes += [{"track": {name: 1}} for name in CUDA_TRACKS]
    changes += [{"track": dict.fromkeys(CUDA_TRACKS, 2), "batch_size": 5}]
    changes += [{"model": {"sizes": sizes}} | track for sizes in CLASS_MODELS.values()
                for track in ({}, {"track": {"loss": 1}})]
    settings = []
    for dtype in DTYPES:
        for family in ("Linear", "MLP"):
            for loss in scalar.LOSSES:
                for change in changes:
                    model = {"loss": loss} | change.get("model", {})
                    if family == "Linear" and "sizes" in model:
                        continue
                    if family == "Linear":
                        model.pop("activation", None)
                    kwargs = {"lr": [0.01, 0.1], "epochs": 3, "dtype": dtype} | change | {"model": (family, model)}
                    label = " ".join(f"{k}={v}" for k, v in [("model", family), *model.items()] +
                                     [(k, v) for k, v in kwargs.items() if k not in ("model", "lr", "epochs")])
                    settings.append((label, kwargs))
    return settings


def _model(family, options):
    if family == "Linear":
        return models.Linear(3, 2, **options)
    return models.MLP(options.pop("sizes", CLASS_MODELS[64]), **options)


def _data(model, n=12):
    if model.spec.loss == scalar.CROSS_ENTROPY:
        return datasets.blobs(n=n, n_classes=2, n_features=3, seed=0)
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def kernel_variants():
    """The CUDA sweep kernels gdsim can launch, one per build and signature, found by
    planning every sweep of :func:`option_settings` for ``target="cuda"`` (those that
    the models or :func:`gdsim.sweeps.check_sweep` refuse, e.g. tracks in float32, launch
    nothing).

    Returns
    -------
    list of Variant
    """
    found = {}
    for label, kwargs in option_settings():
        try:
            model = _model(*kwargs.pop("model"))
            spec = check_sweep(model, *_data(model), target="cuda", **kwargs)
        except ParameterError:
            continue
        plan = make_plan(spec, np.arange(spec.n_configs))
        key = (kernel_build(plan), kernel_signature(plan))
        found.setdefault(key, {})[label] = None  # a dict: labels in order, once
    variants = []
    for ((tracked, dtype, size), signature), labels in found.items():
        name = dtype + ("-tracked" if tracked else "") + (f"-local{size}" if size else "-global")
        same = [v for v in variants if v.name.split("#")[0] == name]
        variants.append(Variant(name + (f"#{len(same)}" if same else ""), tracked, signature, tuple(labels),
                                dtype=dtype, size=size))
    return sorted(variants, key=lambda v: v.name)


def variant_ptx(variant, cc, min_blocks=MIN_BLOCKS):
    """The PTX of ``variant`` (a :class:`Variant`) for compute capability ``cc``
    (``(major, minor)``), compiled by NVVM without a GPU (:func:`gdsim._jit.cuda_ptx`), with
    the launch bound ``min_blocks`` (gdsim's, :data:`~gdsim.sweeps.targets.cuda_kernels.MIN_BLOCKS`;
    None: none, to see what ptxas takes unbounded).

    Returns
    -------
    str
    """
    # compiled() is cached per process; a fresh build compiles its device functions for cc.
    build = compiled.__wrapped__(variant.tracked, variant.dtype, variant.size, min_blocks)
    return cuda_ptx(build, variant.signature, cc)


def covering(variants):
    """A few of ``variants`` that together compile every build: each dtype and tracked
    build with the global memory path and with a local-array one, and every size class of
    :data:`~gdsim.sweeps.targets.cuda_kernels.LOCAL_SIZES` at least once (size classes
    differ only in the length of the local arrays). What tests/test_cuda_ptx.py compiles.

    Returns
    -------
    list of Variant
    """
    chosen = {}
    builds = sorted({(v.dtype, v.tracked) for v in variants})
    sizes = list(LOCAL_SIZES)
    for i, (dtype, tracked) in enumerate(builds):
        same = [v for v in variants if (v.dtype, v.tracked) == (dtype, tracked)]
        for want in (0, sizes[i % len(sizes)]):
            chosen.update({v.name: v for v in same if v.size == want})
    for size in sizes[len(builds):]:  # classes no build took: the first build's
        chosen.update({v.name: v for v in variants if v.size == size and (v.dtype, v.tracked) == builds[0]})
    return sorted(chosen.values(), key=lambda v: v.name)
