"""
Runs of several CLIs built on the engine and the tasks: a fixed pretrain -> convert -> detect chain
(chain.py, ``tools/run_chain.py``) and the fine-tuning grid (finetune_sweep.py,
``tools/finetune_sweep.py``). Nothing in the library imports this package. Timings are in
:mod:`contrastive_det.benchmarks`.
"""
