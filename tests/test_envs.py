"""envs/guider.yaml (conda, `snakemake --sdm conda`) stays in step with pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "envs" / "guider.yaml").read_text())


def pip_section(env: dict) -> list[str]:
    sections = [entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict)]
    assert len(sections) == 1, "envs/guider.yaml must have exactly one pip: section"
    return sections[0]


def pins(requirements: list[str]) -> dict[str, str]:
    """{normalised name: exact version} of '==' requirements; anything else is an error."""
    out = {}
    for text in requirements:
        req = Requirement(text)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{text!r} is not pinned with =="
        out[re.sub(r"[-_.]+", "-", req.name).lower()] = specs[0].version
    return out


def test_pip_section_pins_exactly_the_project_dependencies():
    assert pins(pip_section(conda_env())) == pins(pyproject()["dependencies"])


def test_conda_python_satisfies_requires_python():
    conda_python = next(d for d in conda_env()["dependencies"] if isinstance(d, str) and d.startswith("python"))
    version = conda_python.split("=", 1)[1]
    assert version in SpecifierSet(pyproject()["requires-python"])


def test_every_rule_uses_the_env_and_the_post_deploy_script_installs_guider():
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'CONDA_ENV = "../../envs/guider.yaml"' in common
    assert (ROOT / "workflow" / "rules" / "../../envs/guider.yaml").resolve() == ROOT / "envs" / "guider.yaml"
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = path.read_text()
        assert text.count("conda:\n") == text.count("\nrule ") + text.count("    rule:\n"), path.name
    script = ROOT / "envs" / "guider.post-deploy.sh"
    assert script.stat().st_mode & 0o111, "post-deploy script must be executable"
    assert "pip install --no-deps --no-build-isolation --editable ." in script.read_text()


def test_conda_env_has_no_unpinned_or_duplicate_packages():
    env = conda_env()
    names = [Requirement(r).name.lower() for r in pip_section(env)]
    assert len(names) == len(set(names))
    assert "conda-forge" in env["channels"]
