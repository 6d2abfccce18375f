#!/usr/bin/env python3
"""The project's addresses for the package metadata, from one place.

    project_urls.py show                      print them
    project_urls.py pyproject PYPROJECT.toml  append a [project.urls] table (a staged copy)

They come from Cargo.toml's `homepage`, `repository` and `documentation`, else the
environment (OPTIN_PROJECT_URL, OPTIN_REPOSITORY_URL; the NuGet-only names
OPTIN_NUGET_PROJECT_URL / OPTIN_NUGET_REPOSITORY_URL still work). The project has
no public address yet: until Cargo.toml names one, both are a placeholder under
example.invalid (RFC 2606: can never resolve) and every caller warns, so that no
package goes out pointing at a stranger's site. NuGet's nuspec (nuget/pack.py)
and the wheel's metadata use this module.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "https://example.invalid/optin-telemetry"


def cargo_field(name: str) -> str | None:
    text = (ROOT / "Cargo.toml").read_text()
    pkg = text.split("[package]", 1)[1].split("\n[", 1)[0]
    m = re.search(rf'^{name}\s*=\s*"([^"]+)"', pkg, re.M)
    return m.group(1) if m else None


def urls(who: str) -> tuple[str, str, str]:
    """(homepage, repository, documentation); `who` names the caller in the warning."""
    env = os.environ.get
    repo = cargo_field("repository") or env("OPTIN_REPOSITORY_URL") or env("OPTIN_NUGET_REPOSITORY_URL")
    project = cargo_field("homepage") or env("OPTIN_PROJECT_URL") or env("OPTIN_NUGET_PROJECT_URL")
    if not repo:
        print(f"{who}: WARNING: no repository URL (Cargo.toml `repository` or OPTIN_REPOSITORY_URL): "
              f"the metadata says {PLACEHOLDER}, which is no real address", file=sys.stderr)
        repo = PLACEHOLDER + ".git"
    if not project:
        project = repo[:-4] if repo.endswith(".git") else repo
    docs = cargo_field("documentation") or project.rstrip("/") + "#readme"
    return project, repo, docs


def pyproject(path: Path) -> None:
    """Appends [project.urls] (Homepage, Source, Documentation, Issues) to a staged pyproject.toml."""
    text = path.read_text()
    if "[project.urls]" in text:
        raise SystemExit(f"project_urls.py: {path} already has [project.urls]")
    project, repo, docs = urls("project_urls.py")
    source = repo[:-4] if repo.endswith(".git") else repo
    quote = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    table = (f"\n[project.urls]\nHomepage = {quote(project)}\nSource = {quote(source)}\n"
             f"Documentation = {quote(docs)}\nIssues = {quote(source.rstrip('/') + '/issues')}\n")
    # [project.urls] must follow the [project] table's keys: insert it before the next table.
    m = re.search(r"^\[project\]\n(?:(?!^\[).*\n)*", text, re.M)
    if not m:
        raise SystemExit(f"project_urls.py: {path} has no [project] table")
    path.write_text(text[: m.end()] + table.lstrip("\n") + "\n" + text[m.end():])


def main() -> int:
    if sys.argv[1:2] == ["show"] and len(sys.argv) == 2:
        for name, value in zip(("homepage", "repository", "documentation"), urls("project_urls.py")):
            print(f"{name} {value}")
        return 0
    if sys.argv[1:2] == ["pyproject"] and len(sys.argv) == 3:
        pyproject(Path(sys.argv[2]))
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
