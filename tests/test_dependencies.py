"""pyproject's ranges, the constraints seeds and the frozen sets CI installs agree.

Each lower bound must be a version CI tests (DEVELOPERS.md): the oldest seed's pin where the
oldest job installs the package, else the newest seed's. Both frozen sets must satisfy every
range and hold their seed's pins, or CI would test something else than it says.
"""

from __future__ import annotations

import tomllib
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

CONSTRAINTS = ROOT / "constraints"


def pins(name: str) -> dict[str, str]:
    """`name==version` lines of a constraints file, by canonical name."""
    found = {}
    for line in (CONSTRAINTS / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            [spec] = requirement.specifier
            assert spec.operator == "==", line
            found[canonicalize_name(requirement.name)] = spec.version
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += [line for line in extra if not line.startswith("kale-trace")]
    return [Requirement(line) for line in lines]


def test_every_lower_bound_is_a_tested_version():
    oldest, newest = pins("oldest.in"), pins("newest.in")
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        operators = {spec.operator: spec.version for spec in requirement.specifier}
        if "==" in operators:  # torch: exact on purpose (pyproject says why)
            assert operators["=="] == newest[name]
            continue
        assert operators[">="] == oldest.get(name, newest[name]), requirement


def test_the_frozen_sets_satisfy_the_ranges_and_hold_their_seeds():
    for seed, frozen in (("oldest.in", "oldest.txt"), ("newest.in", "newest.txt")):
        installed = pins(frozen)
        assert pins(seed).items() <= installed.items(), frozen
        for requirement in requirements():
            version = installed.get(canonicalize_name(requirement.name))
            if version is not None:
                assert requirement.specifier.contains(version), (frozen, requirement)


def test_the_oldest_set_is_the_one_the_readme_promises():
    oldest = pins("oldest.txt")
    assert Version(oldest["numpy"]).release[:2] == (1, 26)
    assert Version(oldest["pandas"]).major == 2
    assert Version(oldest["pyarrow"]) < Version("26")  # pyarrow 26 refuses numpy 1.x
    assert "torch" not in oldest and "kale-trace" not in oldest
