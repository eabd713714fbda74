"""Studies: a study file expands into runs of the real CLIs (pretrain -> convert -> transfer), run
locally or on SLURM (submitit), resumable; reports aggregate their results.json files."""

from .expansion import expand
from .spec import Run, Study, StudyError, load_study
from .runner import plan, run_study

__all__ = ["Run", "Study", "StudyError", "expand", "load_study", "plan", "run_study"]
