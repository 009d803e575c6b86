"""README's Python examples run and do what they say."""

import pathlib
import re

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()


def test_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 2
    namespace = {}
    exec(blocks[0], namespace)
    result = namespace["result"]
    assert result.params_history.shape == (result.n_steps + 1, 2) and result.n_steps == 200
    exec(blocks[1], namespace)
    model, X, Yk = namespace["model"], namespace["X"], namespace["Yk"]
    assert model.loss(namespace["theta"], X, Yk) < 0.5 * model.loss(model.init(0), X, Yk)


def test_test_command_is_found_by_ci_script():
    command = README.split("<!-- test-command", 1)[1]
    line = next(l for l in command.splitlines() if l.startswith("python3"))
    assert 'pip install ".[test]"' in line and line.endswith("python -m pytest")
    ci = (pathlib.Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "<!-- test-command" in ci and "^python3" in ci
