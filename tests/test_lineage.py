"""Each stage depends on exactly the code it runs: the import closure, checked three ways."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from avcache import lineage
from avcache.extraction.extractors import REGISTRY

PROJECT_MODULES = """
import importlib, json, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
print(json.dumps(sorted(getattr(m, "__file__", None) or "" for n, m in sys.modules.items()
                        if n.split(".")[0] in ("avcache", "extract", "train", "evaluate"))))
"""


@pytest.mark.parametrize("stage", list(lineage.stages()))
def test_static_closure_covers_what_python_really_imports(stage):
    entries = lineage.stages()[stage]
    r = subprocess.run(
        [sys.executable, "-c", PROJECT_MODULES, *entries],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    loaded = {str(__import__("pathlib").Path(f).relative_to(REPO)) for f in json.loads(r.stdout.splitlines()[-1])}
    static = set(lineage.closure(*entries))
    assert loaded <= static, f"imported at run time but not in {stage}'s lineage: {sorted(loaded - static)}"


def test_closures_are_exact_not_the_whole_tree():
    """The cases the lineage issue named: too narrow for train/evaluate, too wide for extraction."""
    train = lineage.closure("avcache.localization.train")
    contract = {f"avcache/contract/{m}.py" for m in ("cache", "dataset", "params", "pair")}
    assert contract | {"avcache/localization/models.py"} <= set(train)
    assert not any(f.startswith("avcache/extraction/") for f in train)
    assert "avcache/localization/evaluate.py" not in train
    evaluate = lineage.closure("avcache.localization.evaluate")
    assert {"avcache/localization/models.py", "avcache/plots.py"} <= set(evaluate)
    assert "avcache/localization/train.py" not in evaluate
    musicnn = lineage.closure(*lineage.stages()["extract/musicnn"])
    assert "avcache/extraction/extractors/musicnn.py" in musicnn
    assert not any(f.endswith(("/hf.py", "/waveform.py")) for f in musicnn)  # transformers helpers: not musicnn's
    wav2vec2 = lineage.closure(*lineage.stages()["extract/wav2vec2"])
    assert {"avcache/extraction/extractors/hf.py", "avcache/extraction/extractors/waveform.py"} <= set(wav2vec2)
    assert "avcache/extraction/extractors/keras_apps.py" not in wav2vec2


def resolved_stages(tmp_path, params):
    """dvc.yaml resolved by DVC itself for the given params: {stage name: [dep paths]}."""
    from dvc.repo import Repo

    Repo.init(tmp_path, no_scm=True)
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with Repo(tmp_path) as repo:
        return {s.name: [d.def_path for d in s.deps] for s in repo.index.stages}


@pytest.mark.parametrize(
    "audio, visual",
    [
        ("musicnn", "efficientnet"),
        ("wav2vec2", "maskformer"),
        ("vggish_release", "vgg19_release"),
        ("openl3", "convnext"),
    ],
)
def test_dvc_yaml_code_deps_are_the_lineage_files(tmp_path, audio, visual):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(audio=audio, visual=visual)
    deps = resolved_stages(tmp_path, params)
    assert deps["lineage"] == list(lineage.PACKAGES)
    expect = {
        "demo": "demo",
        "clip_demo": "demo",
        "dataset": "dataset",
        "extract_audio": f"extract/{audio}",
        "extract_visual": f"extract/{visual}",
        "train": "train",
        "evaluate": "evaluate",
        "attention": "attention",
    }
    assert set(deps) == {"lineage", *expect}
    sources = tuple(f"{p}/" for p in lineage.PACKAGES)
    for stage, key in expect.items():
        code = [d for d in deps[stage] if d.startswith(sources + ("lineage/",))]
        assert code == [f"lineage/{key}.json"], (stage, deps[stage])


def test_every_registered_extractor_has_a_lineage_file_and_every_option_in_params():
    """`-S audio=<name>` works for every name, and `-S extractors.<name>.<option>=...` for every option
    (DVC sets only keys that params.yaml already has)."""
    import inspect

    from avcache.extraction import extractors

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(params["extractors"]) == set(REGISTRY)
    assert {k.split("/", 1)[1] for k in lineage.stages() if k.startswith("extract/")} == set(REGISTRY)
    for name in REGISTRY:
        init = inspect.signature(extractors.get(name).__init__).parameters.values()
        options = {p.name for p in init if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD}
        given = set(params["extractors"][name])
        assert given - {"reduction", "storage"} == options, name
        assert "reduction" not in given or "storage" in given, name  # -S ...storage.dtype=float16


def test_fingerprint_follows_file_contents(tmp_path, monkeypatch):
    before = lineage.fingerprint("extract/musicnn")
    assert (
        before["files"]["avcache/extraction/extractors/musicnn.py"]
        == __import__("hashlib").sha256((REPO / "avcache/extraction/extractors/musicnn.py").read_bytes()).hexdigest()
    )
    copy = tmp_path / "repo"
    for pkg in lineage.PACKAGES:
        __import__("shutil").copytree(
            REPO / pkg, copy / pkg, ignore=__import__("shutil").ignore_patterns("__pycache__")
        )
    monkeypatch.setattr(lineage, "ROOT", copy)
    assert lineage.fingerprint("extract/musicnn") == before
    with open(copy / "avcache/extraction/extractors/hf.py", "a") as f:
        f.write("# edited\n")
    assert lineage.fingerprint("extract/musicnn") == before  # not musicnn's code
    assert lineage.fingerprint("extract/wav2vec2") != before
    with open(copy / "avcache/media.py", "a") as f:
        f.write("# edited\n")
    assert lineage.fingerprint("extract/musicnn")["sha256"] != before["sha256"]
    assert (
        lineage.fingerprint("train") == lineage.fingerprint("train")
        and "avcache/media.py" not in lineage.fingerprint("train")["files"]
    )


def test_no_cached_dvc_output_is_tracked_by_git():
    """A cached output that git also tracks makes a fresh clone's ``dvc repro`` refuse to run."""
    from dvc.repo import Repo

    tracked = set(subprocess.check_output(["git", "ls-files"], cwd=REPO, text=True).splitlines())
    with Repo(str(REPO)) as repo:
        rel = [os.path.relpath(out.fs_path, REPO) for stage in repo.index.stages for out in stage.outs if out.use_cache]
    assert rel
    clashes = [t for t in tracked for p in rel if t == p or t.startswith(p + "/")]
    assert not clashes, f"DVC outputs also in git (git rm --cached them): {clashes}"
