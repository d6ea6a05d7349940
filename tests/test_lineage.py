"""Each stage depends on exactly the code it runs: the import closure, checked three ways."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from helpers import REPO

from avcache import lineage
from avcache.contract.params import ParamsError
from avcache.extraction.extractors import REGISTRY

PROJECT_MODULES = """
import importlib, json, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
print(json.dumps(sorted(getattr(m, "__file__", None) or "" for n, m in sys.modules.items()
                        if n.split(".")[0] in ("avcache", "extract", "train", "evaluate"))))
"""


@pytest.mark.subprocess
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
    assert {
        "avcache/contract/cache.py",
        "avcache/contract/dataset.py",
        "avcache/contract/params.py",
        "avcache/contract/pair.py",
        "avcache/localization/models.py",
    } <= set(train)
    assert not any(f.startswith("avcache/extraction/") for f in train) and "avcache/media.py" not in train
    assert "avcache/localization/evaluate.py" not in train
    evaluate = lineage.closure("avcache.localization.evaluate")
    assert {"avcache/localization/models.py", "avcache/plots.py"} <= set(evaluate)
    assert "avcache/localization/train.py" not in evaluate
    musicnn = lineage.closure(*lineage.stages()["extract/musicnn"])
    assert "avcache/extraction/extractors/musicnn.py" in musicnn
    assert "avcache/extraction/extractors/hf.py" not in musicnn  # the transformers helper is not musicnn's code
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


@pytest.mark.dvc
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
    assert deps["lineage"] == [*lineage.PACKAGES, "params.yaml"]  # params: inputs, audio, visual, ... (checked there)
    expect = {
        "demos@demo": "demo",
        "dataset": "dataset",
        "extract@audio": "extract/audio",  # which extractor, its options and code: lineage.selection
        "extract@visual": "extract/visual",
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


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fingerprint_follows_file_contents(tmp_path, monkeypatch):
    """Every file's hash is the sha256 of its bytes, and editing a file in a copy of the tree changes
    the fingerprints of exactly the stages that run it, in that file's entry alone."""
    copy = tmp_path / "repo"
    for pkg in lineage.PACKAGES:
        shutil.copytree(REPO / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(lineage, "ROOT", copy)
    before = {stage: lineage.fingerprint(stage) for stage in lineage.stages()}
    for stage, fp in before.items():
        assert fp["stage"] == stage and fp["files"] == {rel: sha256_of(REPO / rel) for rel in fp["files"]}, stage

    def edit(rel):
        """Append a comment to ``rel``: the stages whose fingerprint changed."""
        with open(copy / rel, "a") as f:
            f.write("# edited\n")
        after = {stage: lineage.fingerprint(stage) for stage in lineage.stages()}
        changed = {stage for stage in after if after[stage] != before[stage]}
        for stage in changed:
            old, new = before[stage], after[stage]
            assert {k for k in new["files"] if new["files"][k] != old["files"].get(k)} == {rel}, stage
            assert new["files"][rel] == sha256_of(copy / rel) != sha256_of(REPO / rel)
            assert new["sha256"] != old["sha256"] and set(new["files"]) == set(old["files"])
        before.update(after)
        return changed

    # the transformers helper: the two extractors built on transformers, nothing else
    assert edit("avcache/extraction/extractors/hf.py") == {"extract/maskformer", "extract/wav2vec2"}
    # decoding: every extractor and the attention maps (drawn on decoded frames); never training
    changed = edit("avcache/media.py")
    assert {f"extract/{name}" for name in REGISTRY} | {"attention"} <= changed
    assert not changed & {"train", "evaluate"}


@pytest.mark.dvc
def test_no_cached_dvc_output_is_tracked_by_git():
    """A cached output that git also tracks makes a fresh clone's ``dvc repro`` refuse to run."""
    from dvc.repo import Repo

    tracked = set(subprocess.check_output(["git", "ls-files"], cwd=REPO, text=True).splitlines())
    with Repo(str(REPO)) as repo:
        rel = [os.path.relpath(out.fs_path, REPO) for stage in repo.index.stages for out in stage.outs if out.use_cache]
    assert rel
    clashes = [t for t in tracked for p in rel if t == p or t.startswith(p + "/")]
    assert not clashes, f"DVC outputs also in git (git rm --cached them): {clashes}"


def test_the_selection_file_names_the_extractor_its_options_and_code(tmp_path, caplog):
    """lineage/extract/<modality>.json, the extraction stage's only link to `extractors.<name>`,
    exists for the modalities of `inputs` alone and changes with the extractor or its options."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "inputs": ["audio"], "visual": "nosuch"}))
    cfg = lineage.check_selection(tmp_path / "params.yaml")  # the unused modality's name is not checked
    lineage.write_all(tmp_path / "out", cfg)
    audio = json.loads((tmp_path / "out/extract/audio.json").read_text())
    assert not (tmp_path / "out/extract/visual.json").exists()
    assert audio["extractor"] == "musicnn" and audio["options"] == params["extractors"]["musicnn"]
    assert audio["files"] == lineage.fingerprint("extract/musicnn")["files"]
    cfg["extractors"]["musicnn"]["combine"] = "sum"
    assert lineage.selection(cfg)["audio"]["options"]["combine"] == "sum"
    for bad, message in (
        ({"inputs": ["audio"], "audio": "nosuch"}, "audio: unknown extractor 'nosuch'; registered: "),
        ({"inputs": []}, "inputs must be a non-empty list of distinct names from audio, visual, got []"),
        ({"inputs": "audio"}, "inputs must be a non-empty list of distinct names from audio, visual, got 'audio'"),
        ({"demos": ["ave"]}, "demos must be a list of distinct names from demo, clip_demo, got ['ave']"),
        (
            {"demos": [], "dataset": {**params["dataset"], "root": "data/demo"}},
            "dataset.root is data/demo, the demo folder, but demos [] does not list demo: add it (-S 'demos=[demo]')",
        ),
    ):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, **bad}))
        with pytest.raises(ParamsError) as e:
            lineage.check_selection(tmp_path / "params.yaml")
        assert message in str(e.value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "dataset": {"root": "mine", "videos": "mine"}}))
    lineage.check_selection(tmp_path / "params.yaml")
    assert "demos ['demo'] are generated but dataset.root is mine: set demos: []" in caplog.text
