"""Sweep kernels per target: :mod:`gdsim.targets.cpu` (serial and parallel), :mod:`gdsim.targets.cuda`."""
