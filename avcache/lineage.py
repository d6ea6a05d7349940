"""The code each stage runs: the transitive closure of the project modules it imports.

DVC re-runs a stage when one of its dependencies changes, so a stage's code dependencies must
be exactly the project files it imports, directly or through other project modules, and, for
extraction, through the registry entry of the one extractor it runs. That closure is computed
here from the source (``ast``: every ``import`` statement, at module level or inside functions),
and the ``lineage`` stage writes it, with each file's sha256, to ``lineage/<stage>.json``. Every
other stage depends on its own lineage file, so editing a helper that only extractor X imports
changes only ``lineage/extract/X.json``, and only the stage that extracts X runs again.

    python -m avcache lineage lineage        # the DVC stage (deps: the source folders)
    python -m avcache lineage --show train   # print one stage's closure

Why not list the files in dvc.yaml: DVC interpolates neither lists nor nested keys
(``${code.${audio}}``), so dvc.yaml cannot pick the file list of the extractor named by a param.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from pathlib import Path

from avcache.contract.io import counted, sha256_files
from avcache.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("avcache",)
# The CLI dispatches by name (importlib), so it adds only itself and ``avcache.tasks`` (with the
# dataset contract, whose kind picks a task) to each closure; a task's stage lists the modules of
# both tasks, since the dataset file chooses which one runs.
ENTRY_POINTS = {
    "demo": ["avcache.cli", "avcache.datasets.demo"],
    "dataset": ["avcache.cli", "avcache.datasets.stage"],
    **{command: ["avcache.cli", *modules.values()] for command, modules in TASKS.items()},
}


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``, which never run."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str) -> set[str]:
    """The project modules that ``module``'s source imports anywhere (incl. inside functions)."""
    path = module_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(m)}


def closure(*modules: str) -> list[str]:
    """Repository-relative paths of every project file that importing ``modules`` executes."""
    seen, todo = set(), list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        if module_file(m) is None:
            raise ValueError(f"lineage: no module {m} under {ROOT}")
        seen.add(m)
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        todo.extend(imports_of(m))
    return sorted(module_file(m).relative_to(ROOT).as_posix() for m in seen)


def extractor_module(name: str) -> str:
    from avcache.extraction.extractors import REGISTRY

    if name not in REGISTRY:
        raise ValueError(f"unknown extractor {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].split(":")[0]


def stages() -> dict[str, list[str]]:
    """Stage key -> its entry modules; extraction has one key per registered extractor."""
    from avcache.extraction.extractors import REGISTRY

    out = dict(ENTRY_POINTS)
    for name in sorted(REGISTRY):
        out[f"extract/{name}"] = ["avcache.cli", "avcache.extraction.stage", extractor_module(name)]
    return out


def fingerprint(stage: str) -> dict:
    """The stage's code: each file of its closure with its sha256, and one hash over them all."""
    files = {rel: sha256_files(ROOT / rel) for rel in closure(*stages()[stage])}
    total = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"stage": stage, "sha256": total, "files": files}


def write_all(out_dir: Path) -> list[Path]:
    written = []
    for stage in stages():
        path = out_dir / f"{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fingerprint(stage), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def check_selection(path: Path = Path("params.yaml")) -> None:
    """params.yaml's ``audio`` and ``visual`` name registered extractors (when the file is here).

    The ``lineage`` stage runs before every extraction stage and depends on these two params, so
    ``-S audio=<typo>`` stops here with the registered names, not at DVC's check of the extraction
    stage's dependencies (a missing ``lineage/extract/<typo>.json``)."""
    from avcache.contract import params as P
    from avcache.extraction.extractors import REGISTRY

    if not path.is_file():
        return
    cfg = P.load(path)
    for modality in ("audio", "visual"):
        name = cfg.get(modality)
        if name not in REGISTRY:
            raise P.ParamsError(
                f"{path}: {modality}: unknown extractor {name!r}; registered: {', '.join(sorted(REGISTRY))}"
            )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="lineage", help="folder for <stage>.json")
    ap.add_argument("--show", metavar="STAGE", help="print one stage's files and exit")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if a.show:
        print("\n".join(closure(*stages()[a.show])))
        return
    from avcache.contract.params import ParamsError

    try:
        check_selection()
    except ParamsError as e:
        raise SystemExit(f"lineage: {e}") from None
    print(f"lineage: {counted(len(write_all(Path(a.out))), 'stage')} -> {a.out}/")


if __name__ == "__main__":
    main()
