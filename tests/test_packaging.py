"""pyproject.toml declares what is required, constraints.txt pins the tested set, setup.sh installs with it."""
from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from genrefusion.versions import LIBRARIES, WEIGHT_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = Version(version)
    return out


def requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["project"]["dependencies"]]
    for extra in PROJECT["project"]["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("genrefusion[")]
    return reqs


def test_every_requirement_admits_the_pinned_version():
    p = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in p, f"{req.name} is required but not pinned in constraints.txt"
        assert req.specifier.contains(p[name], prereleases=True), f"{req} excludes the tested {p[name]}"


def test_bounds_that_matter():
    reqs = {canonicalize_name(r.name): r.specifier for r in requirements()}
    assert not reqs["torch"].contains("2.4.1") and not reqs["torch"].contains("2.14.0")  # dynamo=False needs 2.5
    assert not reqs["transformers"].contains("6.0.0")  # no silent move across a major version
    for w in WEIGHT_PACKAGES[:-1]:  # the weights behind cache keys and trained models: one exact version
        assert str(reqs[canonicalize_name(w)]).startswith("=="), w
    assert Requirement(PROJECT["build-system"]["requires"][0]).specifier.contains("77.0.0")
    assert not Requirement(PROJECT["build-system"]["requires"][0]).specifier.contains("76.9")  # SPDX license


def test_this_environment_is_the_tested_set():
    # what the suite runs on is what constraints.txt records (regenerate it with scripts/constraints.sh)
    p = pins()
    for dist in LIBRARIES + WEIGHT_PACKAGES:
        try:
            installed = Version(metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
        assert Version(installed.base_version) == p[canonicalize_name(dist)], (dist, installed)


def test_setup_installs_every_package_through_the_constraints():
    script = (ROOT / "scripts" / "setup.sh").read_text()
    installs = [line for line in script.splitlines() if re.search(r"\bpip install\b", line) and "--upgrade pip" not in line]
    assert len(installs) >= 3 and all("-c constraints.txt" in line for line in installs), installs
