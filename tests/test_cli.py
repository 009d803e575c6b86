"""The `gdsim` command: the tutorial's printout against the torch fixture, and exit codes."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import LINE_STUDY
from gdsim import cli

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch" / "tutorial_batch_gd.npz"


def rows(text, title):
    """The (epoch, loss, w, b) rows of one table of the tutorial printout."""
    block = text.split(title, 1)[1].split("=>", 1)[0]
    return np.array([[float(v) for v in line.split()] for line in block.splitlines()[2:]
                     if line.strip() and not line.split()[0] == "end"])


def test_tutorial_prints_torchs_trajectory(capsys):
    assert cli.main(["tutorial"]) == 0
    out = capsys.readouterr().out
    table = rows(out, "Batch gradient descent")
    with np.load(FIXTURE) as fx:
        losses, params = fx["epoch_loss"], fx["params_history"]
    assert table.shape == (20, 4)
    np.testing.assert_array_equal(table[:, 0], np.arange(20))
    np.testing.assert_allclose(table[:, 1], losses[:20], rtol=1e-5)        # loss at the start of the epoch
    np.testing.assert_allclose(table[:, 2:], params[1:21], rtol=1e-5)      # w, b after it
    assert "=> converging: " in out.split("Per-sample SGD")[0]
    assert "=> bounded orbit: " in out.split("Per-sample SGD")[1]  # a far cycle at 9.98e13, not a divergence


@pytest.mark.parametrize("argv, message", [
    (["tutorial", "--epochs", "0"], "gdsim tutorial: error: epochs must be an integer in [1, inf], got 0"),
    (["tutorial", "--lr", "-1"], "gdsim tutorial: error: Invalid learning rate: -1.0 (lr must be >= 0)"),
])
def test_bad_values_exit_2_before_printing(argv, message, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == message


def test_console_script_entry_point():
    done = subprocess.run([sys.executable, "-m", "gdsim.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("gdsim ")
    done = subprocess.run([sys.executable, "-m", "gdsim.cli", "tutorial", "--epochs", "x"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "invalid int value: 'x'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "gdsim.cli"], capture_output=True, text=True)
    assert done.returncode == 2 and "tutorial" in done.stdout
    done = subprocess.run([sys.executable, "-m", "gdsim", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("gdsim ")  # python -m gdsim, as users try first


def test_info_reports_versions_threads_and_cuda(capsys):
    import numba
    import numpy

    import gdsim

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"gdsim {gdsim.__version__}"
    assert f"numpy {numpy.__version__}" in out and f"numba {numba.__version__}" in out
    # numba before numba-cuda, which only the CUDA target needs
    cuda_line = next(i for i, line in enumerate(out) if line.startswith("numba-cuda "))
    assert out.index(f"numba {numba.__version__}") < cuda_line
    assert f"threads: {numba.get_num_threads()} (NUMBA_NUM_THREADS; used by target='parallel')" in out
    cuda = next(line for line in out if line.startswith("cuda: "))
    # the test command runs with the simulator; elsewhere the line must say what is missing
    assert cuda == "cuda: simulator (NUMBA_ENABLE_CUDASIM=1)" or "GPU" in cuda or "not available" in cuda
    assert out[-1].startswith("targets: cpu, parallel")


SMALL_STUDY = 'title = "small"\ntarget = "cpu"\n' + LINE_STUDY + """
[train]
lr = [0.01, 0.1]
momentum = [0.0, 0.5]
batch_size = 10
epochs = 3
params0 = [-10.0, -20.0]
"""


def test_quiet_and_verbose_on_every_command(tmp_path, capsys):
    study = tmp_path / "small.toml"
    study.write_text(SMALL_STUDY)
    folders = ["--results", str(tmp_path / "r"), "--figures", str(tmp_path / "f")]
    assert cli.main(["run", str(study), *folders, "--restart"]) == 0
    out, err = capsys.readouterr()
    assert "[1/1] small" in out and "1 studies done" in out and err == ""  # no bar off a terminal
    assert cli.main(["run", str(study), *folders, "--restart", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert cli.main(["run", str(study), *folders, "--restart", "--verbose"]) == 0
    err = capsys.readouterr().err
    assert "[1/1] small" in err and "4/4" in err and "100%" in err  # tqdm's bar, written to the log too
    assert cli.main(["tutorial", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[:2] for line in lines] == [["Batch gradient descent", " converging"],
                                                       ["Per-sample SGD", " bounded orbit"]]
    for command in (["info"], ["figures", "--studies", str(tmp_path)], ["tutorial"]):
        with pytest.raises(SystemExit) as exit_:  # argparse: one or the other
            cli.main([*command, "-q", "-v"])
        assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
