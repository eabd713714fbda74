"""The study runner: expansion of study files, digests, skipping, failures, resume, state; a tiny
real study end to end (local and submitit's local executor), killed and resumed; the report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from contrastive_det.studies import StudyError, expand, load_study, run_study
from contrastive_det.studies.state import RUN_RECORD, StudyState

from conftest import FAST, REPO, copy_crops

TOY = os.path.join(REPO, "configs", "toy")


def write_study(path, **overrides):
    study = {
        "name": "tiny",
        "output_dir": str(path.parent / "study_out"),
        "pretrain": {
            "methods": {
                "simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml"},
                "supcon": {
                    "config": "configs/toy/pretrain_supcon_R18.yaml",
                    "opts": {"SOLVER.MAX_ITER": 5},
                },
            },
            "axes": {"images": {"key": "DATASETS.PRETRAIN.SUBSET_COUNT", "values": [20, 40]}},
            "seeds": [0],
        },
        "transfer": {
            "seeds": [0, 1],
            "runs": {
                "lbfgs": {
                    "config": "configs/toy/cls_linear_lbfgs_R18.yaml",
                    "opts": {"CLASSIFICATION.LAYERS": ["res5"]},
                },
                "det": {"config": "configs/toy/digits_R_50_FPN.yaml"},
            },
        },
    }
    for key, value in overrides.items():
        section, _, sub = key.partition(".")
        if sub:
            study[section][sub] = value
        else:
            study[section] = value
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# expansion
# ---------------------------------------------------------------------------------------------
def test_expansion_ids_dependencies_and_commands(tmp_path):
    study = load_study(write_study(tmp_path / "s.yaml"))
    runs = expand(study)
    ids = [r.id for r in runs]
    rows = ["simclr__images-20", "simclr__images-40", "supcon__images-20", "supcon__images-40"]
    assert [i for i in ids if i.startswith("pretrain/")] == [f"pretrain/{r}/seed0" for r in rows]
    assert [i for i in ids if i.startswith("convert/")] == [f"convert/{r}/seed0/det" for r in rows]
    for t in ("lbfgs", "det"):
        assert [i for i in ids if i.startswith(f"transfer/{t}/")] == [
            f"transfer/{t}/{r}/seed{s}" for r in rows + ["random-init"] for s in (0, 1)
        ]
    assert len(ids) == len(set(ids)) == 4 + 4 + 2 * 10
    by_id = {r.id: r for r in runs}
    seen = set()
    for r in runs:  # dependencies come first
        assert all(d in seen for d in r.deps), r.id
        seen.add(r.id)
    pre = by_id["pretrain/supcon__images-40/seed0"]
    assert pre.argv[0].endswith("tools/pretrain_net.py")
    i = pre.argv.index("SOLVER.MAX_ITER")
    assert (
        pre.argv[i + 1] == "5"
        and pre.argv[pre.argv.index("DATASETS.PRETRAIN.SUBSET_COUNT") + 1] == "40"
    )
    assert pre.argv[-4:] == ["SEED", "0", "OUTPUT_DIR", os.path.join(study.output_dir, pre.id)]
    assert pre.meta["axes"] == {"images": 40} and pre.meta["method"] == "supcon"
    cls = by_id["transfer/lbfgs/supcon__images-40/seed1"]
    assert cls.deps == [pre.id]
    assert cls.argv[cls.argv.index("MODEL.WEIGHTS") + 1] == os.path.join(
        pre.out_dir, "backbone.pth"
    )
    assert cls.argv[cls.argv.index("CLASSIFICATION.LAYERS") + 1] == "('res5', )"
    assert cls.argv[cls.argv.index("RESULTS.METHOD") + 1] == "supcon"
    conv = by_id["convert/supcon__images-40/seed0/det"]
    det = by_id["transfer/det/supcon__images-40/seed0"]
    # one shape: the transfer's own config, the converted weights (whose recorded keys train_net
    # adopts)
    assert conv.argv[1:] == [
        os.path.join(pre.out_dir, "backbone.pth"),
        conv.outputs[0],
        "--base",
        det.meta["config"],
    ]
    assert conv.outputs == [os.path.join(conv.out_dir, "weights.pkl")]
    assert (
        det.deps == [conv.id]
        and det.argv[det.argv.index("--config-file") + 1] == det.meta["config"]
    )
    assert det.argv[det.argv.index("MODEL.WEIGHTS") + 1] == conv.outputs[0]
    assert "MODEL.KEYS_FROM_WEIGHTS" not in det.argv
    # random init: classification without weights; detection without weights, shaped like the first
    # row
    rnd = by_id["transfer/lbfgs/random-init/seed0"]
    assert rnd.deps == [] and rnd.argv[rnd.argv.index("MODEL.WEIGHTS") + 1] == ""
    assert "MODEL.KEYS_FROM_WEIGHTS" not in rnd.argv
    rdet = by_id["transfer/det/random-init/seed1"]
    first = by_id["convert/simclr__images-20/seed0/det"]
    assert rdet.deps == [first.id]
    assert rdet.argv[rdet.argv.index("MODEL.WEIGHTS") + 1] == ""
    assert rdet.argv[rdet.argv.index("--config-file") + 1] == det.meta["config"]
    assert rdet.argv[rdet.argv.index("MODEL.KEYS_FROM_WEIGHTS") + 1] == first.outputs[0]


def test_several_pretraining_seeds_get_their_own_transfer_folders(tmp_path):
    study = load_study(
        write_study(tmp_path / "s.yaml", **{"pretrain.seeds": [0, 1], "pretrain.axes": {}})
    )
    ids = [r.id for r in expand(study)]
    assert (
        "transfer/lbfgs/simclr/pretrain_seed1/seed0" in ids
        and "transfer/lbfgs/random-init/seed0" in ids
    )


def test_a_transfer_can_name_its_rows_and_seeds(tmp_path):
    runs = {
        "lbfgs": {"config": "configs/toy/cls_linear_lbfgs_R18.yaml"},
        "det": {
            "config": "configs/toy/digits_R_50_FPN.yaml",
            "methods": ["supcon", "random-init"],
            "seeds": [3, 4, 5],
        },
    }
    study = load_study(
        write_study(tmp_path / "s.yaml", **{"pretrain.axes": {}, "transfer.runs": runs})
    )
    ids = [r.id for r in expand(study)]
    assert [i for i in ids if i.startswith("transfer/lbfgs/")] == [
        f"transfer/lbfgs/{r}/seed{s}" for r in ("simclr", "supcon", "random-init") for s in (0, 1)
    ]
    assert [i for i in ids if i.startswith("transfer/det/")] == [
        f"transfer/det/{r}/seed{s}" for r in ("supcon", "random-init") for s in (3, 4, 5)
    ]
    assert [i for i in ids if i.startswith("convert/")] == ["convert/supcon/seed0/det"]
    rdet = next(r for r in expand(study) if r.id == "transfer/det/random-init/seed3")
    assert (
        rdet.deps == ["convert/supcon/seed0/det"] and rdet.argv[rdet.argv.index("SEED") + 1] == "3"
    )


def test_one_at_a_time_sweep_varies_each_axis_alone_from_the_baseline(tmp_path):
    axes = {
        "jpeg": {"key": "INPUT.CORRUPTION.JPEG_QUALITY", "values": [10, 50]},
        "downsample": {"key": "INPUT.CORRUPTION.DOWNSAMPLE", "values": [4]},
    }
    study = load_study(
        write_study(
            tmp_path / "s.yaml", **{"pretrain.axes": axes, "pretrain.sweep": "one_at_a_time"}
        )
    )
    pre = [r for r in expand(study) if r.kind == "pretrain" and r.meta["method"] == "simclr"]
    assert [r.meta["row"] for r in pre] == [
        "simclr",
        "simclr__jpeg-10",
        "simclr__jpeg-50",
        "simclr__downsample-4",
    ]
    assert (
        "INPUT.CORRUPTION.JPEG_QUALITY" not in pre[0].argv
        and "INPUT.CORRUPTION.DOWNSAMPLE" not in pre[1].argv
    )
    with pytest.raises(StudyError, match="pretrain.sweep: expected one of product, one_at_a_time"):
        load_study(write_study(tmp_path / "s.yaml", **{"pretrain.sweep": "grid"}))


def test_local_runs_share_the_cores_unless_the_user_set_threads():
    from contrastive_det.studies.executors import LocalExecutor, shared_thread_env

    assert shared_thread_env(2, {}, cpus=2)["OMP_NUM_THREADS"] == "1"
    assert shared_thread_env(1, {}, cpus=2)["OMP_NUM_THREADS"] == "2"
    assert shared_thread_env(3, {}, cpus=8)["OMP_NUM_THREADS"] == "2"
    assert shared_thread_env(4, {}, cpus=2)["OMP_NUM_THREADS"] == "1"
    assert shared_thread_env(2, {"OMP_NUM_THREADS": "3"}, cpus=2)["OMP_NUM_THREADS"] == "3"
    assert LocalExecutor(jobs=1, env={"PATH": "/bin"}).env["PATH"] == "/bin"


def test_eta_costs_each_pending_run_by_its_own_groups_mean():
    from contrastive_det.studies.runner import estimate_eta

    pre, det, lin = ("pretrain", None), ("transfer", "det"), ("transfer", "lin")
    durations = {pre: [300.0, 200.0], lin: [10.0, 30.0]}
    # 3 linear runs (20 s each), 2 at a time; the 2 detection runs have no finished one: counted,
    # not guessed
    assert estimate_eta(durations, [det, det, lin, lin, lin], 2) == (3 * 20.0 / 2, 2)
    assert estimate_eta(durations, [pre], 1) == (250.0, 0)  # its group's mean, not the overall mean
    assert estimate_eta({}, [pre], 1) == (0.0, 1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"name": "bad/name"}, "name: 'bad/name' must be a name"),
        (
            {"pretrain.methods": {"simclr": {"config": "configs/toy/nope.yaml"}}},
            "pretrain.methods.simclr.config: no such config file",
        ),
        (
            {
                "pretrain.methods": {
                    "simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml", "opt": {}}
                }
            },
            "pretrain.methods.simclr: unknown keys \\['opt'\\]",
        ),
        ({"pretrain.seeds": [0, 0]}, "pretrain.seeds: repeated seeds"),
        ({"pretrain.axes": {"images": {"key": "subset", "values": [1]}}}, "is not a config key"),
        (
            {"pretrain.axes": {"images": {"key": "DATASETS.PRETRAIN.SUBSET_COUNT", "values": []}}},
            "non-empty list",
        ),
        ({"transfer.runs": {}}, "transfer.runs: names no runs"),
        (
            {
                "transfer.runs": {
                    "det": {"config": "configs/toy/digits_R_50_FPN.yaml", "methods": ["mocov2"]}
                }
            },
            "transfer.runs.det.methods: unknown methods \\['mocov2'\\]",
        ),
        (
            {
                "transfer.runs": {
                    "det": {"config": "configs/toy/digits_R_50_FPN.yaml", "seeds": [1, 1]}
                }
            },
            "transfer.runs.det.seeds: repeated seeds",
        ),
        (
            {
                "pretrain.methods": {
                    "random-init": {"config": "configs/toy/pretrain_simclr_R18.yaml"}
                }
            },
            "baseline row",
        ),
        (
            {
                "pretrain.axes": {
                    "map": {
                        "key": "DATASETS.PRETRAIN.LABEL_MAP",
                        "values": ["a/coarse.yaml", "b/coarse.yaml"],
                    }
                }
            },
            "values 'a/coarse.yaml' and 'b/coarse.yaml' map to the same run folder name 'coarse'",
        ),
        (
            {
                "pretrain.axes": {
                    "q": {"key": "INPUT.CORRUPTION.JPEG_QUALITY", "values": ["a b", "a_b"]}
                }
            },
            "map to the same run folder name 'a_b'",
        ),
    ],
)
def test_bad_study_files_name_the_file_and_key(tmp_path, overrides, message):
    path = write_study(tmp_path / "s.yaml", **overrides)
    with pytest.raises(StudyError, match=message) as e:
        load_study(path)
    assert str(path) in str(e.value)


def test_a_key_given_twice_in_a_study_file_is_named(tmp_path):
    path = write_study(tmp_path / "s.yaml")
    text = path.read_text().replace("  seeds:\n  - 0\n", "  seeds:\n  - 0\n  seeds:\n  - 1\n", 1)
    assert text != path.read_text()
    path.write_text(text)
    with pytest.raises(
        StudyError,
        match=rf"{path}:\d+: key 'seeds' is given twice in the same mapping \(first on line \d+\)",
    ):
        load_study(path)


# ---------------------------------------------------------------------------------------------
# the runner's logic with an executor that "runs" a command by writing its outputs
# ---------------------------------------------------------------------------------------------
class WritingExecutor:
    """Writes each run's outputs (fails the runs whose id contains ``fail``); records commands."""

    poll_interval = 0.0

    def __init__(self, runs, fail=(), jobs=2):
        self.runs = {r.id: r for r in runs}
        self.fail, self.jobs = set(fail), jobs
        self.started, self._ended = [], []

    def capacity(self):
        return self.jobs - len(self._ended)

    def start(self, items):
        for key, argv, _log_path, *_ in items:
            self.started.append((key, argv))
            if key not in self.fail:
                for p in self.runs[key].outputs:
                    os.makedirs(os.path.dirname(p), exist_ok=True)
                    # a converted config inherits the transfer config, as the converter writes it
                    text = (
                        f'_BASE_: "{argv[argv.index("--base") + 1]}"\n'
                        if p.endswith(".yaml")
                        else "x"
                    )
                    open(p, "w").write(text)
            self._ended.append(
                (
                    key,
                    0 if key not in self.fail else 3,
                    None if key not in self.fail else "exit status 3",
                )
            )

    def poll(self):
        ended, self._ended = self._ended, []
        return ended

    def stop(self):
        pass


def small_study(tmp_path):
    return load_study(write_study(tmp_path / "s.yaml", **{"pretrain.axes": {}}))


def test_runner_skips_done_runs_and_reruns_changed_ones(tmp_path):
    study = small_study(tmp_path)
    runs = expand(study)
    lines = []
    ex = WritingExecutor(runs)
    status = run_study(study, ex, log=lines.append)
    assert set(status.values()) == {"done"} and len(ex.started) == len(runs)
    assert any("ETA" in line for line in lines)
    state = json.load(open(os.path.join(study.output_dir, "state.json")))
    assert {v["status"] for v in state["runs"].values()} == {"done"}
    plan = json.load(open(os.path.join(study.output_dir, "plan.json")))
    assert [r["id"] for r in plan["runs"]] == [r.id for r in runs]
    # second time: nothing runs
    ex2 = WritingExecutor(runs)
    run_study(study, ex2, log=lines.append)
    assert ex2.started == []
    # a changed override of one method: its pretraining and everything downstream of it run again
    write_study(
        tmp_path / "s.yaml",
        **{
            "pretrain.axes": {},
            "pretrain.methods": {
                "simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml"},
                "supcon": {
                    "config": "configs/toy/pretrain_supcon_R18.yaml",
                    "opts": {"SOLVER.MAX_ITER": 6},
                },
            },
        },
    )
    study = load_study(tmp_path / "s.yaml")
    ex3 = WritingExecutor(expand(study))
    run_study(study, ex3, log=lines.append)
    again = sorted(k for k, _ in ex3.started)
    assert again == sorted(
        [
            "pretrain/supcon/seed0",
            "convert/supcon/seed0/det",
            "transfer/det/supcon/seed0",
            "transfer/det/supcon/seed1",
            "transfer/lbfgs/supcon/seed0",
            "transfer/lbfgs/supcon/seed1",
        ]
    )


def test_a_label_map_edited_in_place_redoes_the_runs_that_read_it(tmp_path):
    """CLASSIFICATION.LABEL_MAP names a file: its content, not only its path, is in the run's
    digest."""
    label_map = tmp_path / "parity.json"
    label_map.write_text(json.dumps({str(d): ("even" if d % 2 == 0 else "odd") for d in range(10)}))
    write_study(
        tmp_path / "s.yaml",
        **{
            "pretrain.axes": {},
            "transfer.runs": {
                "coarse": {
                    "config": "configs/toy/cls_linear_lbfgs_R18.yaml",
                    "opts": {"CLASSIFICATION.LABEL_MAP": str(label_map)},
                },
                "fine": {"config": "configs/toy/cls_linear_lbfgs_R18.yaml"},
            },
        },
    )
    study = load_study(tmp_path / "s.yaml")
    runs = expand(study)
    run_study(study, WritingExecutor(runs), log=lambda _: None)
    ex = WritingExecutor(runs)
    run_study(study, ex, log=lambda _: None)
    assert ex.started == []
    # the user moves digit 9 to "even" in place: same path, same size, other labels
    label_map.write_text(label_map.read_text().replace('"9": "odd"', '"9": "eve"'))
    ex = WritingExecutor(runs)
    run_study(study, ex, log=lambda _: None)
    assert sorted(k for k, _ in ex.started) == sorted(
        f"transfer/coarse/{m}/seed{s}" for m in ("simclr", "supcon", "random-init") for s in (0, 1)
    )


def _folder_set(root, classes=("a", "b"), per_class=2):
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            os.makedirs(root / split / c, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / split / c / f"{i}.png")


def test_a_dataset_edited_on_disk_redoes_the_runs_that_read_it(tmp_path):
    """The digest takes the content of every dataset a run's config names: swapping two class
    folders, or replacing one image, redoes the transfers on that set and nothing else."""
    data = tmp_path / "set"
    _folder_set(data)
    config = tmp_path / "cls_custom.yaml"
    config.write_text(
        f'_BASE_: "{TOY}/cls_linear_lbfgs_R18.yaml"\n'
        "DATASETS:\n"
        "  CUSTOM:\n"
        f"    - {{NAME: ab_train, FORMAT: folder, ROOT: {data}/train, CLASSES: [a, b]}}\n"
        f"    - {{NAME: ab_test, FORMAT: folder, ROOT: {data}/test, CLASSES: [a, b]}}\n"
        '  TRAIN: ("ab_train",)\n'
        '  TEST: ("ab_test",)\n'
    )
    write_study(
        tmp_path / "s.yaml",
        **{
            "pretrain.axes": {},
            "transfer.runs": {
                "custom": {"config": str(config)},
                "toy": {"config": "configs/toy/cls_linear_lbfgs_R18.yaml"},
            },
        },
    )
    study = load_study(tmp_path / "s.yaml")
    runs = expand(study)
    lines = []
    run_study(study, WritingExecutor(runs), log=lines.append)
    assert any("dataset(s) checked on disk" in line for line in lines)
    ex = WritingExecutor(runs)
    run_study(study, ex, log=lambda _: None)
    assert ex.started == []
    redone = sorted(
        f"transfer/custom/{m}/seed{s}" for m in ("simclr", "supcon", "random-init") for s in (0, 1)
    )
    # the user swaps the two test class folders (same files, same sizes, other labels)
    os.rename(data / "test" / "a", data / "test" / "tmp")
    os.rename(data / "test" / "b", data / "test" / "a")
    os.rename(data / "test" / "tmp", data / "test" / "b")
    ex = WritingExecutor(runs)
    run_study(study, ex, log=lambda _: None)
    assert sorted(k for k, _ in ex.started) == redone
    # one training image replaced in place by another of the same size
    from PIL import Image

    time.sleep(0.01)
    Image.new("RGB", (8, 8), (0, 200, 0)).save(data / "train" / "a" / "0.png")
    ex = WritingExecutor(runs)
    run_study(study, ex, log=lambda _: None)
    assert sorted(k for k, _ in ex.started) == redone


def test_a_dataset_that_cannot_be_read_stamps_as_unreadable(tmp_path):
    from contrastive_det.config import get_cfg
    from contrastive_det.studies.state import dataset_stamps

    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = [
        {"NAME": "gone_train", "FORMAT": "folder", "ROOT": str(tmp_path / "gone"), "CLASSES": ["a"]}
    ]
    cfg.DATASETS.TRAIN = ("gone_train",)
    cfg.DATASETS.TEST = ()
    assert dataset_stamps(cfg) == ["gone_train:unreadable (FileNotFoundError)"]


def test_a_pretraining_label_map_is_in_the_digest_by_content(tmp_path):
    from contrastive_det.studies.spec import Run
    from contrastive_det.studies.state import run_digest

    label_map = tmp_path / "coarse.json"
    label_map.write_text('{"0": "a", "1": "b"}')
    run = Run(
        "pretrain/x/seed0",
        "pretrain",
        [
            os.path.join(REPO, "tools", "pretrain_net.py"),
            "--config-file",
            os.path.join(TOY, "pretrain_supcon_R18.yaml"),
            "DATASETS.PRETRAIN.LABEL_MAP",
            str(label_map),
        ],
        [],
        str(tmp_path / "run"),
        [],
    )
    before = run_digest(run, [])
    assert run_digest(run, []) == before
    label_map.write_text('{"0": "b", "1": "a"}')
    assert run_digest(run, []) != before


def test_a_new_default_key_keeps_the_digest_a_changed_value_does_not(tmp_path, monkeypatch):
    """A version that adds a config key with its default must not redo finished runs; a value set
    apart from the defaults (here back to another value of an existing key) must."""
    from contrastive_det.config import defaults as config_defaults
    from contrastive_det.studies import state as state_module
    from contrastive_det.studies.spec import Run
    from contrastive_det.studies.state import run_digest

    def run(*opts):
        argv = [os.path.join(REPO, "tools", "train_net.py"), "--config-file"]
        argv += [os.path.join(TOY, "cls_linear_sgd_R18.yaml"), *opts]
        return Run("transfer/x/seed0", "transfer", argv, [], str(tmp_path / "run"), [])

    before = run_digest(run(), [])
    original = config_defaults.get_cfg

    def get_cfg_with_a_new_key():
        cfg = original()
        cfg.MODEL.NEW_KEY_OF_A_LATER_VERSION = 7
        return cfg

    for module in (config_defaults, state_module):
        monkeypatch.setattr(module, "get_cfg", get_cfg_with_a_new_key)
    monkeypatch.setattr("contrastive_det.engine.defaults.get_cfg", get_cfg_with_a_new_key)
    assert run_digest(run(), []) == before
    assert run_digest(run("MODEL.NEW_KEY_OF_A_LATER_VERSION", "8"), []) != before
    monkeypatch.undo()
    assert run_digest(run("SOLVER.BASE_LR", "0.5"), []) != before
    assert run_digest(run(), []) == before


def test_a_failed_run_skips_its_dependents_and_the_rest_go_on(tmp_path):
    study = small_study(tmp_path)
    runs = expand(study)
    lines = []
    status = run_study(
        study, WritingExecutor(runs, fail={"pretrain/simclr/seed0"}), log=lines.append
    )
    assert status["pretrain/simclr/seed0"] == "failed"
    assert (
        status["transfer/lbfgs/simclr/seed0"] == "skipped"
        and status["convert/simclr/seed0/det"] == "skipped"
    )
    # the detection random-init row uses simclr's converted config: skipped with it
    assert status["transfer/det/random-init/seed0"] == "skipped"
    assert (
        status["transfer/lbfgs/supcon/seed1"] == "done"
        and status["transfer/lbfgs/random-init/seed1"] == "done"
    )
    assert any(line.startswith("FAILED pretrain/simclr/seed0") for line in lines)
    state = StudyState(study.output_dir, "")
    assert (
        state.get("transfer/lbfgs/simclr/seed0")["error"]
        == "dependency pretrain/simclr/seed0 failed"
    )
    # the next start runs only what did not finish
    ex = WritingExecutor(runs)
    run_study(study, ex, log=lines.append)
    assert "transfer/lbfgs/supcon/seed1" not in [k for k, _ in ex.started]
    assert "pretrain/simclr/seed0" in [k for k, _ in ex.started]


def test_a_run_killed_with_a_checkpoint_continues_with_resume(tmp_path):
    study = small_study(tmp_path)
    runs = expand(study)
    run_study(study, WritingExecutor(runs, fail={"pretrain/supcon/seed0"}), log=lambda line: None)
    state = StudyState(study.output_dir, "")
    state.set("pretrain/supcon/seed0", status="running")  # as a killed study leaves it
    pre = {r.id: r for r in runs}["pretrain/supcon/seed0"]
    open(os.path.join(pre.out_dir, "last_checkpoint"), "w").write("model_0000002.pth")
    ex = WritingExecutor(runs)
    run_study(study, ex, log=lambda line: None)
    argv = dict(ex.started)["pretrain/supcon/seed0"]
    assert argv[1] == "--resume"
    # a run that never started (no checkpoint) starts afresh
    assert "--resume" not in dict(ex.started)["transfer/lbfgs/supcon/seed0"]


def test_a_checkpoint_of_another_digest_is_never_resumed(tmp_path):
    """The run's state says another digest (its config changed): it starts afresh and the stale tag
    goes."""
    study = small_study(tmp_path)
    runs = expand(study)
    run_study(study, WritingExecutor(runs, fail={"pretrain/supcon/seed0"}), log=lambda line: None)
    state = StudyState(study.output_dir, "")
    # killed under an older version
    state.set("pretrain/supcon/seed0", status="running", digest="0" * 64)
    pre = {r.id: r for r in runs}["pretrain/supcon/seed0"]
    tag = os.path.join(pre.out_dir, "last_checkpoint")
    open(tag, "w").write("model_0000002.pth")
    ex, lines = WritingExecutor(runs), []
    run_study(study, ex, log=lines.append)
    assert "--resume" not in dict(ex.started)["pretrain/supcon/seed0"]
    assert not os.path.exists(tag)
    assert any(
        "checkpoint of an earlier version of the run; starting afresh" in line for line in lines
    )


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    study = small_study(tmp_path)
    lines = []
    status = run_study(study, None, dry_run=True, log=lines.append)
    assert set(status.values()) == {"pending"} and len(status) == len(expand(study))
    assert any("[todo] transfer/det/random-init/seed1" in line for line in lines)
    assert not os.path.exists(os.path.join(study.output_dir, "state.json"))


def test_relative_paths_start_at_the_root_and_runs_call_the_given_tools(tmp_path, monkeypatch):
    path = write_study(tmp_path / "s.yaml")
    # configs/toy/... is not here: named with the root it was looked for in
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        StudyError,
        match=r"pretrain\.methods\.simclr\.config: no such config file "
        rf"'configs/toy/pretrain_simclr_R18\.yaml'.*study's root {tmp_path}",
    ):
        load_study(str(path), tools_dir=os.path.join(REPO, "tools"))
    # a root with the configs, without tools/
    (tmp_path / "configs").symlink_to(os.path.join(REPO, "configs"))
    with pytest.raises(
        StudyError,
        match=rf"{tmp_path / 'tools'} lacks pretrain_net.py, "
        r".*train_net.py, select_config.py, report.py",
    ):
        load_study(str(path))  # the tools default to <root>/tools
    tools = tmp_path / "my_tools"
    tools.mkdir()
    for name in (
        "pretrain_net.py",
        "convert_to_detectron2.py",
        "train_net.py",
        "select_config.py",
        "report.py",
    ):
        (tools / name).write_text("")
    study = load_study(str(path), root=REPO, tools_dir=str(tools))
    assert study.root == REPO and study.methods["simclr"]["config"] == os.path.join(
        TOY, "pretrain_simclr_R18.yaml"
    )
    assert {os.path.dirname(r.argv[0]) for r in expand(study)} == {str(tools)}
    # the CLI: --root from anywhere, its own tools
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "run_study.py"),
            str(path),
            "--dry-run",
            "--root",
            REPO,
        ],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "[todo] transfer/det/random-init/seed1" in proc.stdout, (
        proc.stderr[-2000:]
    )


# ---------------------------------------------------------------------------------------------
# a tiny real study
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mini_sets(toy_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("study_sets")
    copy_crops(toy_root, root / "plain", {"train": 6, "test": 3})
    copy_crops(toy_root, root / "textured", {"train": 6, "test": 4}, "crops_textured")
    return root


def real_study(
    tmp_path, sets, detection=True, name="tiny", seeds=(0, 1), segmentation=False, checkpoints=None
):
    custom = (
        f"[{{'NAME': 'st_plain_train', 'FORMAT': 'folder', 'ROOT': '{sets / 'plain' / 'train'}'}}, "
        f"{{'NAME': 'st_plain_test', 'FORMAT': 'folder', 'ROOT': '{sets / 'plain' / 'test'}'}}, "
        f"{{'NAME': 'st_tex_train', 'FORMAT': 'folder', 'ROOT': '{sets / 'textured' / 'train'}'}}, "
        f"{{'NAME': 'st_tex_test', 'FORMAT': 'folder', 'ROOT': '{sets / 'textured' / 'test'}'}}]"
    )
    small = {"DATASETS.CUSTOM": custom, "DATALOADER.NUM_WORKERS": 0}
    runs = {
        "lbfgs": {
            "config": "configs/toy/cls_linear_lbfgs_R18.yaml",
            "opts": {
                **small,
                "DATASETS.TRAIN": ["st_tex_train"],
                "DATASETS.TEST": ["st_tex_test"],
                "INPUT.CLS.CROP_SIZE": 32,
                "INPUT.CLS.TEST_RESIZE": 32,
                "CLASSIFICATION.LBFGS.NUM_REGS": 3,
                "CLASSIFICATION.FEATURE_CACHE": str(tmp_path / "cache"),
            },
        }
    }
    if detection:
        runs["det"] = {
            "config": "configs/toy/digits_R_50_FPN.yaml",
            "opts": {**dict(zip(FAST[::2], FAST[1::2])), "SOLVER.MAX_ITER": 1},
        }
    # the toy pretraining is a ResNet-18: build_dilated_resnet_backbone gives it output stride 16
    if segmentation:
        runs["seg"] = {
            "config": "configs/toy/seg_digits_R_50_FCN16s.yaml",
            "opts": {
                "SOLVER.IMS_PER_BATCH": 2,
                "INPUT.SEM_SEG.CROP_SIZE": [64, 64],
                "DATALOADER.NUM_WORKERS": 0,
                "SOLVER.MAX_ITER": 1,
            },
        }
    study = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "pretrain": {
            "methods": {
                "simclr": {
                    "config": "configs/toy/pretrain_simclr_R18.yaml",
                    "opts": {
                        **small,
                        "DATASETS.TRAIN": ["st_plain_train"],
                        "DATASETS.TEST": ["st_plain_test"],
                        "SOLVER.IMS_PER_BATCH": 16,
                        "SOLVER.MAX_ITER": 2,
                        "SOLVER.WARMUP_ITERS": 1,
                        "TEST.KNN.K": 5,
                    },
                }
            },
            "seeds": [0],
        },
        "transfer": {"seeds": list(seeds), "runs": runs},
    }
    if checkpoints:
        study["checkpoints"] = checkpoints
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def study_cli(args, toy_root, **kwargs):
    env = dict(os.environ, DETECTRON2_DATASETS=str(toy_root), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "run_study.py"), *args],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        **kwargs,
    )


@pytest.mark.slow
def test_tiny_study_end_to_end_then_report(mini_sets, toy_root, tmp_path):
    path = real_study(tmp_path, mini_sets)
    proc = study_cli([str(path), "--jobs", "2"], toy_root, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = tmp_path / "tiny"
    det = json.load(open(out / "transfer/det/simclr/seed1/results.json"))
    assert det["method"] == "simclr" and det["weights"].endswith(
        "convert/simclr/seed0/det/weights.pkl"
    )
    assert det["seed"] == 1 and "bbox/AP50" in next(iter(det["metrics"].values()))
    rnd = json.load(open(out / "transfer/lbfgs/random-init/seed0/results.json"))
    assert rnd["method"] == "random-init" and rnd["protocol"] == "linear_lbfgs"
    # one shape: the R50 protocol's own config; the R18 rows adopt the .pkl's keys, random init too
    for row in ("simclr", "random-init"):
        saved = (out / f"transfer/det/{row}/seed0/config.yaml").read_text()
        assert (
            "DEPTH: 18" in saved and "RES2_OUT_CHANNELS: 64" in saved and "FORMAT: RGB" in saved
        ), row
    assert json.load(open(out / "transfer/det/random-init/seed0/results.json"))["weights"] == ""
    assert (out / "pretrain/simclr/seed0" / RUN_RECORD).is_file()
    tables = (out / "report/tables.md").read_text()
    assert "#### lbfgs on st_tex_test" in tables and "#### det on" in tables
    assert "| random-init |" in tables and "(2)" in tables  # 2 seeds per row
    assert "report:" in proc.stdout and (out / "report/report.md").is_file()
    assert "| random-init |" in proc.stdout  # the short tables on the console
    report = (out / "report/report.md").read_text()
    assert "## Pictures" in report and "UMAP" in report  # the embedding and detection pictures
    # run again: everything is skipped
    proc = study_cli([str(path)], toy_root, timeout=600)
    assert "10 runs, 10 done before, 0 to run" in proc.stdout, proc.stdout[-3000:]


@pytest.mark.slow
def test_a_study_over_brought_checkpoints_and_a_pretraining_run(mini_sets, toy_root, tmp_path):
    """Two existing checkpoints (MoCo v2's layout, torchvision's) and one pretraining run end in one
    report whose rows are all three (and random init); a conversion that fails fails only its
    row."""
    from test_checkpoint_rows import moco_checkpoint, tv_checkpoint

    moco = moco_checkpoint(str(tmp_path / "moco_v2_800ep_pretrain.pth.tar"))
    sup = tv_checkpoint(str(tmp_path / "resnet18_sup.pth"))
    broken = tmp_path / "not_a_resnet.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}}, broken)
    path = real_study(
        tmp_path,
        mini_sets,
        name="brought",
        seeds=(0,),
        checkpoints={
            "moco_v2": {"path": moco},
            "sup_tv": {"path": sup},
            "broken": {"path": str(broken)},
        },
    )
    study = yaml.safe_load(path.read_text())
    study["transfer"]["runs"]["det"]["methods"] = [
        "sup_tv"
    ]  # detection of one brought row keeps the test short
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    proc = study_cli([str(path), "--jobs", "2"], toy_root, timeout=1500)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]  # the broken row failed
    assert (
        "FAILED checkpoint/broken" in proc.stdout
        and "SKIPPED transfer/lbfgs/broken/seed0" in proc.stdout
    )
    out = tmp_path / "brought"
    # the converter's own message
    assert "no ResNet" in (out / "logs/checkpoint__broken.log").read_text()
    res = json.load(open(out / "transfer/lbfgs/moco_v2/seed0/results.json"))
    assert res["method"] == "moco_v2" and res["weights_source"].endswith(
        "checkpoint/moco_v2/backbone.pth"
    )
    det = json.load(open(out / "transfer/det/sup_tv/seed0/results.json"))
    assert det["weights"].endswith("convert/sup_tv/det/weights.pkl")
    tables = (out / "report/tables.md").read_text()
    for row in ("simclr", "moco_v2", "sup_tv", "random-init"):
        assert f"| {row} |" in tables, tables
    assert "| broken |" not in tables
    # the same command again: the conversions and transfers are not redone, the broken row is tried
    # again
    proc = study_cli([str(path), "--no-report"], toy_root, timeout=600)
    assert (
        "START checkpoint/moco_v2" not in proc.stdout and "START checkpoint/broken" in proc.stdout
    )


@pytest.mark.slow
def test_submitit_local_executor_runs_the_study(mini_sets, toy_root, tmp_path):
    path = real_study(tmp_path, mini_sets, detection=False, name="tiny_submitit", seeds=(1,))
    proc = study_cli(
        [str(path), "--executor", "submitit-local", "--no-report"], toy_root, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = tmp_path / "tiny_submitit"
    assert (out / "transfer/lbfgs/simclr/seed1/results.json").is_file()
    assert (out / "submitit").is_dir()  # submitit's job folder


@pytest.mark.slow
def test_killed_study_continues_where_it_stopped(mini_sets, toy_root, tmp_path):
    path = real_study(tmp_path, mini_sets, detection=False, name="tiny_killed")
    out = tmp_path / "tiny_killed"
    env = dict(os.environ, DETECTRON2_DATASETS=str(toy_root), PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tools", "run_study.py"), str(path)],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    record = out / "pretrain/simclr/seed0" / RUN_RECORD
    deadline = time.time() + 600
    while not record.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert record.is_file(), "the pretraining run did not finish"
    time.sleep(2)  # a transfer run is under way
    os.killpg(proc.pid, signal.SIGKILL)  # the study and its run, as a lost machine would
    proc.wait()
    state = json.load(open(out / "state.json"))["runs"]
    assert state["pretrain/simclr/seed0"]["status"] == "done"
    first_record = record.read_text()
    proc = study_cli([str(path), "--no-report"], toy_root, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "START pretrain/" not in proc.stdout  # not done twice
    assert record.read_text() == first_record
    state = json.load(open(out / "state.json"))["runs"]
    assert {v["status"] for v in state.values()} == {"done"}
    assert len(state) == 5


def test_local_runs_on_a_gpu_machine_each_get_their_own_devices(tmp_path):
    """--jobs N with 4 GPUs: each training run sees only its --num-gpus devices
    (CUDA_VISIBLE_DEVICES), a run waits until enough are free, other tools see none; never two runs
    on one device."""
    from contrastive_det.studies.executors import LocalExecutor

    tool = tmp_path / "train_net.py"  # stands for the training CLI: records what it was given
    tool.write_text(
        "import os, sys, time\nprint('devices=' + os.environ.get('CUDA_VISIBLE_DEVICES', "
        "'<unset>'))\ntime.sleep(float(sys.argv[sys.argv.index('--sleep') + 1]))\n"
    )
    other = tmp_path / "convert_to_detectron2.py"
    other.write_text(tool.read_text())
    ex = LocalExecutor(jobs=3, devices=["0", "1", "2", "3"])
    logs = {k: str(tmp_path / f"{k}.log") for k in "abcd"}
    ex.start(
        [
            ("a", [str(tool), "--num-gpus", "2", "--sleep", "1.5"], logs["a"], {}),
            ("b", [str(tool), "--num-gpus", "2", "--sleep", "0.5"], logs["b"], {}),
            ("c", [str(tool), "--num-gpus", "1", "--sleep", "0"], logs["c"], {}),
            ("d", [str(other), "--sleep", "0"], logs["d"], {}),
        ]
    )
    assert ex.capacity() == -1  # 4 items taken for 3 slots: the runner starts nothing more
    ended = []
    while len(ended) < 4:
        ended += ex.poll()
        time.sleep(0.05)
    assert sorted(k for k, code, _ in ended) == list("abcd") and all(
        code == 0 for _, code, _ in ended
    )
    seen = {k: open(logs[k]).read().split("devices=")[1].strip() for k in "abcd"}
    assert seen["a"] == "0,1" and seen["b"] == "2,3" and seen["d"] == ""
    assert seen["c"] in ("2", "3")  # started once b had finished and given its devices back
    assert sorted(ex._free) == ["0", "1", "2", "3"]


def test_each_kind_of_run_gets_its_own_resources(tmp_path):
    """Conversions never inherit a training job's GPUs and days; the study file's per-kind and
    per-transfer resources override the command line's; --num-gpus follows the GPUs per task."""
    from contrastive_det.studies.resources import num_gpus_per_task, parse_slurm_time

    path = write_study(tmp_path / "s.yaml", **{"pretrain.axes": {}})
    raw = yaml.safe_load(open(path))
    raw["resources"] = {"pretrain": {"time": 4320}, "transfer": {"gpus": 4}}
    first = next(iter(raw["transfer"]["runs"]))
    raw["transfer"]["runs"][first]["resources"] = {"gpus": 1, "time": 120}
    path.write_text(yaml.safe_dump(raw))
    study = load_study(str(path))
    cli = {"gpus": 8, "cpus": 10, "time": 1440, "nodes": 1, "tasks_per_node": 1}
    runs = expand(study)
    got = {
        r.kind if r.kind != "transfer" else r.meta["transfer"]: study.run_resources(r, cli)
        for r in runs
    }
    assert got["pretrain"] == {**cli, "time": 4320}
    assert got["convert"] == {"gpus": 0, "cpus": 2, "time": 60, "nodes": 1, "tasks_per_node": 1}
    assert got[first] == {**cli, "gpus": 1, "time": 120}
    others = [t for t in study.transfers if t != first]
    assert all(got[t] == {**cli, "gpus": 4} for t in others)
    assert num_gpus_per_task({"gpus": 8, "tasks_per_node": 2}) == 4 and num_gpus_per_task({}) == 0
    assert [
        parse_slurm_time(t) for t in ("infinite", "30", "10:00", "2:00:00", "1-00:00:00", "1-12")
    ] == [None, 30, 10, 120, 1440, 2160]
    raw["resources"] = {"pretrain": {"gpu": 1}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"resources\.pretrain\.gpu: unknown resource"):
        load_study(str(path))


def test_a_second_driver_on_the_same_study_is_refused(tmp_path):
    from contrastive_det.studies.state import StudyLock, StudyLocked

    with StudyLock(str(tmp_path)):
        with pytest.raises(
            StudyLocked, match=rf"being run by another driver \(pid {os.getpid()} on"
        ):
            StudyLock(str(tmp_path)).__enter__()
    with StudyLock(str(tmp_path)):  # released on exit
        pass


class _JobExecutor(WritingExecutor):
    """Keeps its runs "running" like cluster jobs; ``poll`` raises ``error`` once a run started."""

    def __init__(self, runs, error):
        super().__init__(runs)
        self.error, self.stopped_with = error, []

    def start(self, items):
        self.started += [(key, argv) for key, argv, *_ in items]

    def poll(self):
        raise self.error

    def job_id(self, key):
        return f"job-{key}"

    def job_tasks(self, key):
        return 1

    def reattach(self, key, job_id, tasks=1):
        return True

    def stop(self, cancel=False):
        self.stopped_with.append(cancel)
        return "cancelled" if cancel else "left running"


@pytest.mark.parametrize(
    "error, answer, cancelled",
    [
        (RuntimeError("the driver's own bug"), None, False),  # a driver error never cancels jobs
        (KeyboardInterrupt(), None, True),  # Ctrl-C without a terminal: cancel, and say which
        (KeyboardInterrupt(), False, False),  # Ctrl-C on a terminal: only if the user says yes
        (KeyboardInterrupt(), True, True),
    ],
)
def test_only_an_interrupt_cancels_cluster_jobs(tmp_path, error, answer, cancelled):
    study = small_study(tmp_path)
    executor = _JobExecutor(expand(study), error)
    asked = []
    confirm = None if answer is None else (lambda q: asked.append(q) or answer)
    with pytest.raises(type(error)):
        run_study(study, executor, log=lambda line: None, confirm=confirm)
    assert executor.stopped_with == [cancelled]
    assert bool(asked) == (answer is not None) and all("Cancel the" in q for q in asked)
    state = json.load(open(os.path.join(study.output_dir, "state.json")))["runs"]
    started = [k for k, _ in executor.started]
    assert started and all(
        state[k]["status"] == "running" and state[k]["job_id"] == f"job-{k}" for k in started
    )


class _FollowingExecutor(WritingExecutor):
    """A second driver's executor: follows earlier jobs (``reattach``), whose runs then end well."""

    def __init__(self, runs):
        super().__init__(runs, jobs=100)
        self.reattached = []

    def job_id(self, key):
        return f"new-{key}"

    def job_tasks(self, key):
        return 1

    def reattach(self, key, job_id, tasks=1):
        self.reattached.append((key, job_id))
        for p in self.runs[key].outputs:  # the job finishes while this driver follows it
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "w").write("x")
        self._ended.append((key, 0, None))
        return True


def test_a_restarted_driver_follows_the_jobs_it_had_submitted(tmp_path):
    study = small_study(tmp_path)
    first = _JobExecutor(expand(study), RuntimeError("the driver died"))
    with pytest.raises(RuntimeError):
        run_study(study, first, log=lambda line: None)
    submitted = [k for k, _ in first.started]
    lines = []
    second = _FollowingExecutor(expand(study))
    status = run_study(study, second, log=lines.append)
    assert second.reattached == [(k, f"job-{k}") for k in submitted]
    assert not set(submitted) & {k for k, _ in second.started}  # none submitted twice
    assert all(f"REATTACH {k}: job job-{k} of an earlier driver" in lines for k in submitted)
    assert set(status.values()) == {"done"}


def test_cluster_resources_are_checked_against_the_partition_before_submitting(monkeypatch):
    from contrastive_det.studies import executors

    ex = object.__new__(executors.SubmititExecutor)  # no submitit executor needed for the check
    ex.cluster, ex.parameters = "slurm", {"slurm_partition": "gpu"}
    monkeypatch.setattr(executors, "partition_time_limit", lambda p: 60 if p == "gpu" else None)
    monkeypatch.setattr(executors, "partition_has_gpus", lambda p: p == "gpu")
    runs = {
        "pretrain/a/seed0": {"gpus": 8, "time": 30},
        "convert/a/seed0/det": {"gpus": 0, "time": 60},
        "transfer/t/a/seed0": {"gpus": 0, "time": 45},
    }
    kinds = {
        "pretrain/a/seed0": "pretrain",
        "convert/a/seed0/det": "convert",
        "transfer/t/a/seed0": "transfer",
    }
    lines = ex.check_resources(runs, kinds)
    assert len(lines) == 1 and "1 training runs ask for no GPU on partition 'gpu'" in lines[0]
    assert "transfer/t/a/seed0" in lines[0]  # a conversion without GPU is expected
    # the kind decides, not the id: a grid point is training, a select run is not
    grid = {
        "select/t/a/00_lr0.1/seed0": {"gpus": 0, "time": 5},
        "select/t/a/choice": {"gpus": 0, "time": 5},
    }
    lines = ex.check_resources(
        grid, {"select/t/a/00_lr0.1/seed0": "grid", "select/t/a/choice": "select"}
    )
    assert len(lines) == 1 and "1 training runs" in lines[0] and "00_lr0.1" in lines[0]
    with pytest.raises(
        ValueError,
        match=r"1 runs ask for more time than partition 'gpu' allows \(60 min\): "
        r"pretrain/a/seed0 \(90 min\)",
    ):
        ex.check_resources({**runs, "pretrain/a/seed0": {"gpus": 8, "time": 90}})


def test_an_axis_can_apply_to_some_methods_only(tmp_path):
    """SCAN's neighbourhood size swept for SCAN alone: the other methods run once, without the axis
    (their rows become the plots' dashed baselines), never once per value under other names."""
    path = write_study(
        tmp_path / "s.yaml",
        **{
            "pretrain.axes": {
                "k": {"key": "MODEL.SCAN.NUM_NEIGHBORS", "values": [8, 64], "methods": ["supcon"]}
            }
        },
    )
    runs = expand(load_study(path))
    rows = sorted({r.meta["row"] for r in runs if r.kind == "pretrain"})
    assert rows == ["simclr", "supcon__k-64", "supcon__k-8"]
    pre = next(r for r in runs if r.id == "pretrain/supcon__k-64/seed0")
    assert pre.argv[pre.argv.index("MODEL.SCAN.NUM_NEIGHBORS") + 1] == "64"
    assert (
        "MODEL.SCAN.NUM_NEIGHBORS"
        not in next(r for r in runs if r.id == "pretrain/simclr/seed0").argv
    )
    bad = write_study(
        tmp_path / "bad.yaml",
        **{"pretrain.axes": {"k": {"key": "SOLVER.MAX_ITER", "values": [1], "methods": ["scan"]}}},
    )
    with pytest.raises(StudyError, match=r"pretrain\.axes\.k\.methods: unknown methods \['scan'\]"):
        load_study(bad)


def test_a_new_tasks_study_weights_and_checkpoint_opts_need_no_edit_in_studies(tmp_path):
    """How a study feeds a task its trunk comes from the Task class (study_weights,
    checkpoint_row_opts)."""
    from contrastive_det.engine.task import TASK_REGISTRY
    from contrastive_det.tasks.detection import DetectionTask

    @TASK_REGISTRY.register()
    class DepthEstimationTask(DetectionTask):  # a task the studies package has never heard of
        study_weights = "converted"
        checkpoint_row_opts = {"MODEL.RESNETS.NORM": "GN"}

    config = tmp_path / "depth.yaml"
    config.write_text(
        f"_BASE_: {os.path.join(TOY, 'digits_R_50_FPN.yaml')}\nTASK: DepthEstimationTask\n"
    )
    ckpt = tmp_path / "brought.pth"
    torch.save({"state_dict": {}}, ckpt)
    path = write_study(
        tmp_path / "s.yaml",
        **{
            "transfer.runs": {"depth": {"config": str(config)}},
            "checkpoints": {"brought": {"path": str(ckpt)}},
        },
    )
    try:
        runs = {r.id: r for r in expand(load_study(str(path)))}
    finally:
        TASK_REGISTRY._obj_map.pop("DepthEstimationTask")
    assert runs["convert/simclr__images-20/seed0/depth"].kind == "convert"
    rnd = runs["transfer/depth/random-init/seed0"]
    assert (
        rnd.deps == ["convert/simclr__images-20/seed0/depth"]
        and rnd.meta["task"] == "DepthEstimationTask"
    )
    brought = runs["transfer/depth/brought/seed0"].argv
    assert brought[brought.index("MODEL.RESNETS.NORM") + 1] == "GN"
    assert "MODEL.RESNETS.NORM" not in runs["transfer/depth/simclr__images-20/seed0"].argv


class _EndedSlurmJob:
    """A SLURM job as submitit shows it once sacct gave a terminal state: done, and without a result
    file until ``result`` is set (then ``results()`` returns it)."""

    def __init__(self, job_id):
        self.job_id, self.result = job_id, None

    def done(self):
        return True

    def results(self):
        from submitit.core.utils import UncompletedJobError

        if self.result is None:
            raise UncompletedJobError(f"Job {self.job_id} has not produced any output")
        return [self.result]


def _slurm_executor_following(jobs):
    """A SubmititExecutor on "slurm" that follows ``jobs`` (key -> job), without a cluster."""
    from contrastive_det.studies import executors

    ex = executors.SubmititExecutor.__new__(executors.SubmititExecutor)
    ex.cluster, ex._jobs, ex._no_output_since, ex._sacct_state = "slurm", dict(jobs), {}, {}
    return ex


def test_a_slurm_job_seen_ended_without_result_is_followed_while_sacct_says_requeued(monkeypatch):
    """The requeue race the real-cluster test met once: after ``scontrol requeue`` sacct showed the
    old attempt ended, submitit called the job done without a result and the study failed while
    SLURM ran the job again. Such a job is followed while sacct says it is queued or running, and
    fails only once its state stays terminal for REQUEUE_GRACE_S."""
    from contrastive_det.studies import executors

    job = _EndedSlurmJob("188")
    ex = _slurm_executor_following({"pretrain/x": job})
    clock = {"t": 1000.0, "state": "PENDING"}
    monkeypatch.setattr(executors.time, "time", lambda: clock["t"])
    monkeypatch.setattr(executors, "slurm_job_state", lambda job_id: clock["state"])
    assert ex.poll() == []  # requeued: followed
    clock["t"] += 500
    assert ex.poll() == []  # still pending after a long time: followed
    job.result = 0  # the rerun finished
    assert ex.poll() == [("pretrain/x", 0, None)] and not ex._jobs

    job = _EndedSlurmJob("188")
    ex._jobs["pretrain/y"] = job
    clock["state"] = "FAILED"
    assert ex.poll() == []  # terminal, but within the grace period
    clock["t"] += executors.REQUEUE_GRACE_S + 1
    (key, status, error), *rest = ex.poll()
    assert (key, status, rest) == ("pretrain/y", 1, []) and "188" in error
    assert not ex._no_output_since and not ex._sacct_state


def test_a_job_followed_after_a_requeue_asks_sacct_once_per_interval(monkeypatch):
    """The driver polls every second; sacct (slurmdbd) is asked about a job without result at most
    once per SACCT_EVERY_S, and the answer it gave is used in between."""
    from contrastive_det.studies import executors

    ex = _slurm_executor_following({"pretrain/x": _EndedSlurmJob("189")})
    clock = {"t": 1000.0, "asked": 0}

    def state(job_id):
        clock["asked"] += 1
        return "PENDING"

    monkeypatch.setattr(executors.time, "time", lambda: clock["t"])
    monkeypatch.setattr(executors, "slurm_job_state", state)
    for _ in range(25):  # 25 polls one second apart
        assert ex.poll() == []
        clock["t"] += 1.0
    assert clock["asked"] == 3  # at 0, 10 and 20 s
    assert executors.SACCT_EVERY_S == 10.0


def test_without_an_answer_from_sacct_a_job_without_result_fails_after_the_grace(monkeypatch):
    """A cluster where sacct is missing or silent must not hold the driver: the state "" counts as
    ended, so the job fails once REQUEUE_GRACE_S have passed."""
    from contrastive_det.studies import executors

    def no_sacct(*args, **kwargs):
        raise FileNotFoundError("sacct")

    monkeypatch.setattr(executors.subprocess, "run", no_sacct)
    assert executors.slurm_job_state("190") == ""

    ex = _slurm_executor_following({"pretrain/z": _EndedSlurmJob("190")})
    clock = {"t": 1000.0}
    monkeypatch.setattr(executors.time, "time", lambda: clock["t"])
    assert ex.poll() == []
    clock["t"] += executors.REQUEUE_GRACE_S + 1
    (key, status, error), *rest = ex.poll()
    assert (key, status, rest) == ("pretrain/z", 1, []) and "190" in error


def test_local_runs_stop_with_the_driver_however_it_dies(tmp_path):
    """A driver killed with SIGKILL left its runs training on as orphans (and a restart put a
    second trainer in their folders): each run now gets SIGTERM when the driver dies, and runs in a
    session of its own (a terminal's Ctrl-C reaches the driver only, which stops them with
    SIGTERM)."""
    run = tmp_path / "run.py"
    run.write_text(
        "import os, signal, sys, time\n"
        "def stop(*_):\n"
        f"    open({str(tmp_path / 'stopped')!r}, 'w').write(str(os.getpid()))\n"
        "    sys.exit(75)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"open({str(tmp_path / 'ready')!r}, 'w').write(f'{{os.getpid()}} {{os.getsid(0)}}')\n"
        "time.sleep(120)\n"
    )
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import time\n"
        "from contrastive_det.studies.executors import LocalExecutor\n"
        "ex = LocalExecutor(jobs=1)\n"
        f"ex.start([('r', [{str(run)!r}], {str(tmp_path / 'r.log')!r})])\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=REPO)
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    child, session = map(int, (tmp_path / "ready").read_text().split())
    assert session == child != os.getsid(proc.pid)  # its own session
    proc.kill()
    proc.wait()
    while not (tmp_path / "stopped").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "stopped").read_text() == str(child)
