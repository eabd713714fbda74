"""The one trainer every task runs on: detectron2's DefaultTrainer, fed by the task registry."""
import logging
import weakref

from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, create_ddp_model
from detectron2.engine.train_loop import TrainerBase
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..solver import build_optimizer
from .checkpoint import AtomicDetectionCheckpointer
from .hooks import WriteResults
from .tasks import get_task


def wrap_ddp(model, device):
    """detectron2's ``create_ddp_model``, except CPU models get no ``device_ids`` (DDP over gloo)."""
    if comm.get_world_size() > 1 and device == "cpu":
        return DistributedDataParallel(model, broadcast_buffers=False)
    return create_ddp_model(model, broadcast_buffers=False)


class Trainer(DefaultTrainer):
    """
    :class:`DefaultTrainer` (SimpleTrainer/AMPTrainer step, detectron2's hooks: LR schedule,
    PreciseBN, periodic checkpointing, evaluation, ETA/JSON/TensorBoard writers) with:

    * data loaders and evaluators from the task selected by ``cfg.TASK``;
    * atomic checkpoints (:class:`AtomicDetectionCheckpointer`);
    * ``OUTPUT_DIR/results.json`` written after the final evaluation.
    """

    def __init__(self, cfg, config_file=""):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_ddp(model, cfg.MODEL.DEVICE)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicDetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.config_file = config_file
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        ret = super().build_hooks()
        if comm.is_main_process():
            # After the EvalHook (which runs the final evaluation) and before the writers.
            extra = get_task(self.cfg).build_hooks(self.cfg) + [WriteResults(self.config_file)]
            ret[-1:-1] = extra
        return ret

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        return get_task(cfg).build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return get_task(cfg).build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return get_task(cfg).build_evaluator(cfg, dataset_name, output_folder)
