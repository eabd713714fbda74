#!/usr/bin/env python
"""
Train and evaluate with contrastive-det's one Trainer: the task comes from the config's ``TASK``
(detection transfer by default; pretraining configs set ``TASK: PretrainTask``, classification
transfer configs ``TASK: ClassificationTask``).

Detection: Faster R-CNN / Mask R-CNN on VOC0712, COCO, the toy digit scenes or your own VOC/COCO
dataset, with MODEL.WEIGHTS in any checkpoint layout the converter reads.
"""

from contrastive_det.engine import Trainer, argument_parser, get_task, launch_runs, setup

EPILOG = """
Examples:

Toy digit scenes on CPU (run `make data` first):
    tools/train_net.py --config-file configs/toy/digits_R_50_C4.yaml

VOC0712, 8 GPUs, weights converted from a contrastive checkpoint (torchvision layout):
    tools/train_net.py --config-file configs/detection/voc0712_R_50_C4_24k_torchvision.yaml \\
        --num-gpus 8 MODEL.WEIGHTS converted.pkl OUTPUT_DIR out/voc_mocov2

Linear probe (L-BFGS on cached features) of any checkpoint the converter reads, on CIFAR-10:
    tools/train_net.py --config-file configs/classification/linear_lbfgs/cifar10.yaml \\
        MODEL.WEIGHTS moco_v2_800ep.pth.tar

Mean and std over 5 seeds:  add --num-seeds 5
4 GPUs instead of 8:         add --num-gpus 4 --fewer-gpus
Resume after a crash:        add --resume (same OUTPUT_DIR; continues bit-exactly with the \
checkpoint's seed)
Evaluate only:               add --eval-only MODEL.WEIGHTS out/model_final.pth
Two machines of 8 GPUs:
    (machine0)$ tools/train_net.py --machine-rank 0 --num-machines 2 --num-gpus 8 \\
                    --dist-url tcp://IP0:PORT [--config-file ...]
    (machine1)$ tools/train_net.py --machine-rank 1 --num-machines 2 --num-gpus 8 \\
                    --dist-url tcp://IP0:PORT [--config-file ...]
"""


def main(args, seed=None, output_dir=None):
    """One run in one process (of possibly many); ``launch_runs`` picks the seed and folder."""
    cfg = setup(args, seed=seed, output_dir=output_dir)

    # protocols fitted by their evaluator (L-BFGS probes, few-shot) evaluate MODEL.WEIGHTS directly
    if args.eval_only or not get_task(cfg).trains(cfg):
        model, checkpoint = Trainer.build_evaluation_model(cfg, resume=args.resume)
        results = Trainer.test(cfg, model)
        Trainer.write_eval_results(
            cfg, results, checkpoint=checkpoint, config_file=args.config_file
        )
        return results

    trainer = Trainer(cfg, config_file=args.config_file)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = argument_parser(EPILOG).parse_args()
    print("Command Line Args:", args)
    path = launch_runs(main, args)
    if path:
        print(f"results: {path}")
