"""The installed stack: what the README promises after `scripts/setup_env.sh`."""

import subprocess
import sys


def test_imports_and_pins():
    import detectron2
    import numpy
    import torch
    import torchvision

    import contrastive_det

    assert (
        torch.__version__.split("+")[0] == "2.14.1"
        and torchvision.__version__.split("+")[0] == "0.29.1"
    )
    assert int(numpy.__version__.split(".")[0]) < 2
    assert detectron2.__version__ and contrastive_det.__version__


def test_collect_env_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "detectron2.utils.collect_env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "detectron2" in proc.stdout and "PyTorch" in proc.stdout


def test_import_registers_extra_norm_head_in_a_fresh_process():
    code = (
        "import contrastive_det\n"
        "from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY\n"
        "print(ROI_HEADS_REGISTRY.get('Res5ROIHeadsExtraNorm').__module__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "contrastive_det.modeling.roi_heads", (
        proc.stderr[-2000:]
    )
