"""The operator docs hold together: the README links them, nothing points at a markdown file
outside the repository, and the configuration shown in docs/operations.md is valid."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from multiraft.server.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".service", ".sh", ".json", ""}


def test_readme_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("architecture.md", "operations.md", "benchmarks.md"):
        assert f"(docs/{name}" in readme, name
        assert (DOCS / name).is_file()
    for doc in ("architecture.md", "operations.md"):
        for target in re.findall(r"\]\(([a-z]+\.md)[#)]", (DOCS / doc).read_text()):
            assert (DOCS / target).is_file(), f"{doc} links {target}"


def test_every_markdown_file_named_is_in_the_repository() -> None:
    """The project stands alone: a `.md` file named anywhere (docs, comments, tests) is one of
    its own, never a design or reference file kept outside the repository."""
    own = {p.name for p in ROOT.rglob("*.md") if not {".git", "build"} & set(p.parts)}
    offenders = []
    for top in ("README.md", "docs", "multiraft", "router", "batching", "metrics", "deploy",
                "scripts", "bench", "tests"):
        base = ROOT / top
        for path in [base] if base.is_file() else base.rglob("*"):
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                for name in re.findall(r"[\w.-]+\.md\b", path.read_text(errors="replace")):
                    if name not in own:
                        offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_operations_sections() -> None:
    text = (DOCS / "operations.md").read_text()
    for title in (
        "Starting a cluster on several machines", "Adding a store", "Replacing a dead store",
        "Moving a replica", "Upgrading", "Backing up and restoring", "Metrics and alerts",
        "Splitting and merging regions",
    ):
        assert re.search(rf"^## {title}", text, re.M), title
    split = text.split("## Splitting and merging regions", 1)[1]
    for what in (
        "ctl split", "ctl merge", "/regions/{id}/split", "/regions/{id}/merge",
        "--region-split-size", "--region-split-qps", "--no-auto-merge", "MERGE_ROLLED_BACK",
        "multiraft_region_splits_total",
    ):
        assert what in split, what


def test_the_toml_example_of_operations_is_valid(tmp_path: Path) -> None:
    text = (DOCS / "operations.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"{i}.toml"
        path.write_text(block)
        c = load_config(path)
        assert c.advertise_peer_addr and c.peers()[c.store_id] == ("db1", 20161)


@pytest.mark.parametrize("doc", ["architecture.md", "operations.md"])
def test_flags_named_in_the_docs_exist(doc: str) -> None:
    from multiraft.server.config import ServerConfig

    keys = {f.replace("_", "-") for f in ServerConfig.__dataclass_fields__ if not f.startswith("_")}
    keys |= {f"no-{k}" for k in keys}
    # Flags of `multiraft ctl` / `kv` / `--version`, `systemctl enable --now`.
    known_elsewhere = {
        "admin", "token", "json", "timeout", "learner", "client", "version", "config", "now",
        "hex",
    }
    for flag in re.findall(r"(?<![\w-])--([a-z][a-z*-]*[a-z])", (DOCS / doc).read_text()):
        # `--advertise-*-addr` names a family of flags.
        ok = flag in known_elsewhere or any(fnmatch(k, flag) for k in keys)
        assert ok, f"{doc}: --{flag}"
