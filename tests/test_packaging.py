"""pyproject.toml and environment.yml name the same packages at the same versions."""
import os
import re
import tomllib

from harness import REPO

# conda-forge names that differ from PyPI's
CONDA_NAMES = {"torch": "pytorch-cpu", "dask[distributed]": "dask"}
CONDA_EXTRA = {"distributed": "dask[distributed]"}  # conda splits dask[distributed] in two


def pyproject_pins():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = {}
    for spec in specs:
        name, version = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$", spec).groups()
        pins[name.lower()] = version
    return pins


def environment_pins():
    pins = {}
    with open(os.path.join(REPO, "environment.yml")) as f:
        for line in f:
            m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)\s*(==|=)\s*([^\s#]+)", line)
            if m and m.group(1) != "python":
                pins[m.group(1).lower()] = m.group(3)
    return pins


def test_every_dependency_is_pinned_exactly():
    pins = pyproject_pins()
    assert pins["torch"] == "2.13.0" and pins["nbgrader"] == "0.9.6"
    assert pins["sqlalchemy"].startswith("2.0.")  # nbgrader 0.9.6 breaks on 2.1


def test_environment_yml_names_the_same_packages_and_versions():
    ours, conda = pyproject_pins(), environment_pins()
    translated = {CONDA_NAMES.get(name, name): version for name, version in ours.items()}
    for conda_name, pypi_name in CONDA_EXTRA.items():
        assert conda[conda_name] == ours[pypi_name]
        conda = {k: v for k, v in conda.items() if k != conda_name}
    assert conda == translated
