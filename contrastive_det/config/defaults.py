"""Every config key contrastive-det adds to detectron2's defaults, one comment per key."""

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from .renamed import add_renamed_keys


def add_contrastive_det_config(cfg):
    """Add contrastive-det's keys to a detectron2 config (in place). Safe to call twice."""
    if hasattr(cfg, "TASK"):
        return cfg
    # The task the one Trainer runs: a class name in TASK_REGISTRY (one file per task in
    # contrastive_det/tasks/) that supplies data loaders and evaluators. "DetectionTask": Faster
    # R-CNN detection transfer.
    cfg.TASK = "DetectionTask"

    # User datasets registered from the config, without writing Python. A list of dicts, each:
    #   {NAME: str, FORMAT: "voc" | "coco" | "folder" | "csv" | "sem_seg", CLASSES: [str, ...],
    #    voc:  ROOT (folder with JPEGImages/ Annotations/ ImageSets/Main/), SPLIT (e.g. "trainval"),
    #          YEAR (2007 -> 11-point VOC metric, the default; anything else -> area metric)
    #    coco: JSON (instances file), IMAGE_ROOT (folder the file names are relative to)
    #    folder: ROOT (class-per-folder classification set: ROOT/<class>/<image>),
    #          METRIC ("top1", the default, or "mean_per_class")
    #    csv:  CSV (file of "path,label" rows, optional header line "path,label"; a label is a name
    # of
    #          CLASSES or else an integer id in [0, len(CLASSES))), ROOT (optional: the folder
    # relative
    #          paths start from; default the CSV file's folder), METRIC ("top1", the default, or
    #          "mean_per_class")
    #    sem_seg: IMAGE_ROOT/<stem>.{jpg,png,...} with LABEL_ROOT/<stem>.png (class indices);
    # optional IGNORE_LABEL
    #          (255), LIST (file of stems; default all images), REDUCE_ZERO_LABEL (0 = other, c ->
    # class c-1)} CLASSES is required for voc, csv and sem_seg (the label order) and optional for
    # coco (the JSON's categories) and folder (the sorted folder names). Examples (YAML and command
    # line): datasets/README.md.
    cfg.DATASETS.CUSTOM = []

    # Key prefix of the backbone inside MODEL.WEIGHTS when the file holds several ResNets (e.g.
    # "student." of {"student": ..., "teacher": ...}), like the converter's --prefix. "" = detect
    # it.
    cfg.MODEL.WEIGHTS_PREFIX = ""
    # Detection and segmentation: a ResNet's depth, res2 width, stride_in_1x1, pixel mean/std and
    # input format come from the weights when they record them (a .pkl of
    # tools/convert_to_detectron2.py, or a ResNet checkpoint converted at start-up); the log lists
    # each key changed. False: keep the config's values and only warn where they differ.
    cfg.MODEL.ADOPT_WEIGHTS_KEYS = True
    # Detection and segmentation: a converted .pkl whose keys (as above) this run adopts WITHOUT
    # loading its weights: a random-init baseline shaped like the pretrained rows. Needs
    # MODEL.WEIGHTS "".
    cfg.MODEL.KEYS_FROM_WEIGHTS = ""

    # Pre-flight image scan (contrastive_det.data.checks.check_images): before training, decode
    # every image of the datasets when they hold at most this many distinct images, and list ALL
    # unreadable/truncated files in one error. 0 = never. ~1 ms per VOC-sized JPEG: the default
    # covers VOC0712 (16,551 train + 4,952 test images) but skips COCO train2017 (118k).
    cfg.DATALOADER.CHECK_IMAGES_MAX = 25000

    # Bitwise-repeatable training on GPU: cuDNN's deterministic kernels and torch's deterministic
    # algorithms (an error names any operation without one), cuDNN autotuning off, and cuBLAS's
    # fixed workspace (CUBLAS_WORKSPACE_CONFIG=:4096:8). Slower. Off: a resumed or repeated GPU run
    # draws the same data and random numbers (SEED, iteration, rank) but its sums may differ in the
    # last bits. The CPU path is repeatable either way.
    cfg.DETERMINISTIC = False

    add_pretrain_config(cfg)
    add_classification_config(cfg)
    add_segmentation_config(cfg)
    # Keys moved in 0.2.0, still read under their old names (config/renamed.py: RENAMED_KEYS).
    add_renamed_keys(cfg)

    cfg.RESULTS = CN()
    # Name of the pretraining method behind MODEL.WEIGHTS (e.g. "mocov2", "supcon"), recorded in
    # OUTPUT_DIR/results.json so studies can group runs. "" records "random-init" when
    # MODEL.WEIGHTS is empty and "unspecified" otherwise.
    cfg.RESULTS.METHOD = ""
    # The checkpoint MODEL.WEIGHTS was converted from (set by tools/train_net.py when it converts a
    # torchvision-layout/SSL checkpoint on the fly; recorded in results.json). "" = MODEL.WEIGHTS
    # itself.
    cfg.RESULTS.WEIGHTS_SOURCE = ""
    return cfg


def get_cfg():
    """detectron2's default config with contrastive-det's keys added."""
    return add_contrastive_det_config(_d2_get_cfg())


def add_pretrain_config(cfg):
    """Keys of contrastive pretraining (TASK "PretrainTask"); see docs/design.md section 5."""
    # torchvision ResNet trunk used by every pretrainer (exported in torchvision layout).
    cfg.MODEL.TV_RESNET = CN()
    # 18, 34, 50, 101 or 152; 0 (classification transfer): the depth of the MODEL.WEIGHTS checkpoint
    cfg.MODEL.TV_RESNET.DEPTH = 50
    # bottleneck width (64 = standard; 128 = wide ResNet-50-2)
    cfg.MODEL.TV_RESNET.WIDTH_PER_GROUP = 64
    # Batch norm of the trunk, by detectron2 name: "BN", or global BN "SyncBN" / "nnSyncBN"
    # (torch's, CUDA) / "naiveSyncBN" (detectron2's, also on CPU over gloo). In one process every
    # synced flavour becomes BN; on several CPU processes SyncBN becomes naiveSyncBN. The projection
    # heads take it too.
    cfg.MODEL.TV_RESNET.NORM = "BN"
    # zero-init the last BN gamma of each residual block
    cfg.MODEL.TV_RESNET.ZERO_INIT_RESIDUAL = False
    # Conv weights and input in channels-last (NHWC) memory order: the same model and values (up
    # to float rounding), faster convolutions on CPU (oneDNN) and on GPU under AMP; False: NCHW.
    cfg.MODEL.TV_RESNET.CHANNELS_LAST = True

    cfg.MODEL.CONTRASTIVE = CN()
    # Projection MLP: PROJ_LAYERS linear layers (BN + ReLU between them), hidden width
    # PROJ_HIDDEN_DIM, output PROJ_DIM. MoCo v2: 2 layers 2048-2048-128; SimCLR: 2 layers
    # 2048-2048-128.
    cfg.MODEL.CONTRASTIVE.PROJ_LAYERS = 2
    cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 2048
    cfg.MODEL.CONTRASTIVE.PROJ_DIM = 128
    # A norm after hidden linear layers (SimCLR v1 uses it; MoCo v2 not), of MODEL.TV_RESNET.NORM's
    # kind.
    cfg.MODEL.CONTRASTIVE.PROJ_BN = False
    # MoCo v2 0.2; SimCLR 0.5 (batch 256) / 0.1; SupCon 0.07
    cfg.MODEL.CONTRASTIVE.TEMPERATURE = 0.2
    # SupCon: loss scaled by TEMPERATURE / BASE_TEMPERATURE
    cfg.MODEL.CONTRASTIVE.BASE_TEMPERATURE = 0.07
    cfg.MODEL.CONTRASTIVE.CONTRAST_MODE = (
        "all"  # SupCon: "all" views are anchors, or only view "one"
    )
    cfg.MODEL.CONTRASTIVE.MOMENTUM = 0.999  # momentum of the key encoder (MoCo-style methods)
    # keys (and labels) kept in the queue; multiple of the global batch
    cfg.MODEL.CONTRASTIVE.QUEUE_SIZE = 65536
    # MoCo's shuffled BN for the key encoder (needs > 1 process)
    cfg.MODEL.CONTRASTIVE.SHUFFLE_BN = True
    cfg.MODEL.CONTRASTIVE.NUM_CLASSES = 1000  # classes of the supervised/joint objectives' labels
    # In-batch methods (SimCLR, SupCon): "concat" forwards both views as one batch of 2N (BN
    # statistics over both views, as SimCLR's own code); "separate" forwards each view alone (BN
    # statistics per view, as lightly's documented loop and many PyTorch re-implementations).
    cfg.MODEL.CONTRASTIVE.VIEW_BATCHING = "concat"
    # The joint objectives (CE+SelfSupCon "CESelfSupCon", SupCon+SelfSupCon "SupConSelfSupCon").
    cfg.MODEL.JOINT = CN()
    cfg.MODEL.JOINT.INSTANCE_WEIGHT = 0.5  # weight of the MoCo instance term
    cfg.MODEL.JOINT.SUPCON_WEIGHT = 1.0  # SupCon+SelfSupCon: weight of the queue SupCon term
    # SCAN (Wei et al. 2020): SupCon over the labels, restricted to each sample's neighbourhood.
    cfg.MODEL.SCAN = CN()
    cfg.MODEL.SCAN.NUM_NEIGHBORS = 100  # neighbourhood size k (momentum embeddings)
    cfg.MODEL.SCAN.NON_NEIGHBOR = "mask"  # same-label non-neighbours "mask"ed or "negative"
    # SimCLR (Chen et al. 2020).
    cfg.MODEL.SIMCLR = CN()
    # Factor on the NT-Xent loss, which is the mean over the 2N anchors (lightly's NTXentLoss and
    # most PyTorch ports). Google's TF SimCLR adds the two views' means: 2.0 reproduces its scale,
    # which matters for LARS's 1-D parameters (BN, biases: plain momentum SGD) and for the weight of
    # the decay; AdamW and LARS's adapted tensors hardly see it.
    cfg.MODEL.SIMCLR.LOSS_SCALE = 1.0
    # Supervised (cross-entropy) baseline: label smoothing of its cross-entropy (0 = plain CE,
    # torchvision's classic ImageNet recipe; torchvision's newer recipes use 0.1).
    cfg.MODEL.CONTRASTIVE.LABEL_SMOOTHING = 0.0

    # Two-view augmentation (torchvision.transforms.v2); defaults are MoCo v2's / SimCLR's.
    cfg.INPUT.TWO_VIEW = CN()
    # Augmented views drawn per training image: 2 for the contrastive methods, 1 for the supervised
    # baseline ("Supervised"); each pretrainer checks that it gets the number it takes.
    cfg.INPUT.TWO_VIEW.NUM_VIEWS = 2
    cfg.INPUT.TWO_VIEW.CROP_SIZE = 224  # output side of RandomResizedCrop
    cfg.INPUT.TWO_VIEW.CROP_SCALE = (0.2, 1.0)  # area range of RandomResizedCrop (SimCLR 0.08-1)
    cfg.INPUT.TWO_VIEW.FLIP_PROB = 0.5
    cfg.INPUT.TWO_VIEW.JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    cfg.INPUT.TWO_VIEW.JITTER_PROB = 0.8
    cfg.INPUT.TWO_VIEW.GRAYSCALE_PROB = 0.2
    cfg.INPUT.TWO_VIEW.BLUR_PROB = 0.5  # Gaussian blur probability (0 disables)
    cfg.INPUT.TWO_VIEW.BLUR_SIGMA = (0.1, 2.0)
    # kernel side as a fraction of CROP_SIZE (made odd)
    cfg.INPUT.TWO_VIEW.BLUR_KERNEL_FRACTION = 0.1
    cfg.INPUT.TWO_VIEW.SOLARIZE_PROB = 0.0  # optional solarization (BYOL-style), threshold 128
    # kNN/eval: resize shorter side, then center crop CROP_SIZE
    cfg.INPUT.TWO_VIEW.TEST_RESIZE = 256

    # kNN monitor on a held-out split (run by the eval hook): bank = TEST.KNN.BANK, queries =
    # DATASETS.TEST.
    cfg.TEST.KNN = CN()
    cfg.TEST.KNN.BANK = ""  # dataset whose embeddings form the bank ("" = DATASETS.TRAIN[0])
    cfg.TEST.KNN.K = 200  # neighbours that vote
    cfg.TEST.KNN.T = 0.1  # votes weighted by exp(cosine / T)
    cfg.TEST.KNN.BATCH_SIZE = 256  # images per inference batch (per process)

    # Study axes of Cole et al. (docs/design.md section 6), applied to the pretraining images.
    cfg.DATASETS.PRETRAIN = CN()
    # Data quantity: a deterministic, class-stratified subset of the (mixed) training images, by
    # count (SUBSET_COUNT > 0) or by fraction (SUBSET_FRACTION < 1); never both. Seeded by
    # SUBSET_SEED.
    cfg.DATASETS.PRETRAIN.SUBSET_COUNT = 0
    cfg.DATASETS.PRETRAIN.SUBSET_FRACTION = 1.0
    cfg.DATASETS.PRETRAIN.SUBSET_SEED = 0
    # Domain mixing: one proportion per DATASETS.TRAIN entry (empty = plain concatenation). The
    # mixture has MIX_TOTAL images (0 = the largest total the proportions allow without repeats).
    cfg.DATASETS.PRETRAIN.MIX_PROPORTIONS = ()
    cfg.DATASETS.PRETRAIN.MIX_TOTAL = 0
    # Label granularity: a JSON file {"fine class name": "coarse class name", ...} applied to the
    # labels of the supervised/joint objectives and of kNN evaluation ("" = fine labels).
    cfg.DATASETS.PRETRAIN.LABEL_MAP = ""
    # Corruption of pretraining images (before the two views; evaluation images stay clean).
    cfg.INPUT.CORRUPTION = CN()
    cfg.INPUT.CORRUPTION.JPEG_QUALITY = 0  # re-encode as JPEG at this quality (1-95; 0 = off)
    cfg.INPUT.CORRUPTION.SALT_PEPPER = 0.0  # fraction of pixels set to 0 or 255 (0 = off)
    cfg.INPUT.CORRUPTION.DOWNSAMPLE = 1  # downsample by this factor and upsample back (1 = off)

    cfg.SOLVER.OPTIMIZER = "SGD"  # "SGD" (detectron2's, MOMENTUM/NESTEROV), "LARS" or "AdamW"
    cfg.SOLVER.LARS_ETA = 0.001  # LARS trust coefficient
    cfg.SOLVER.ADAM_BETAS = (
        0.9,
        0.999,
    )  # AdamW (beta1, beta2); WEIGHT_DECAY is the decoupled decay
    return cfg


def add_classification_config(cfg):
    """Keys of classification transfer (TASK "ClassificationTask"); see docs/design.md section 8."""
    # The classifier meta-architecture ("Classifier"): the torchvision trunk of MODEL.TV_RESNET + a
    # head.
    cfg.MODEL.CLASSIFIER = CN()
    # Classes of the head; 0 = the number of classes of DATASETS.TRAIN[0] (its metadata "classes").
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = 0
    # Freeze the trunk: no gradients, kept in eval mode (BN statistics untouched), asserted after
    # training.
    cfg.MODEL.CLASSIFIER.FREEZE_TRUNK = False
    # Head: "linear"; "bn_linear" = non-affine BatchNorm1d then linear (Islam et al.'s linear
    # probe); "core_tuning" = bias-free linear + Core-tuning's contrastive head
    # (CLASSIFICATION.CORE_TUNING).
    cfg.MODEL.CLASSIFIER.HEAD = "linear"
    # Input conventions of a detectron2-named MODEL.WEIGHTS that has no config.yaml beside it (they
    # cannot be read from the tensors): "" = refuse such a file, "torchvision" = RGB, torchvision's
    # mean/std, stride in the 3x3 conv. Other layouts carry (or imply) their own and ignore this
    # key.
    cfg.MODEL.CLASSIFIER.WEIGHTS_CONVENTIONS = ""

    cfg.CLASSIFICATION = CN()
    # Protocol (docs/design.md section 8). Trained by SGD on the one Trainer: "linear_sgd" (frozen
    # trunk), "finetune" (whole network), "core_tuning". Fitted on frozen features by the evaluator
    # (no SGD iterations; MODEL.WEIGHTS is evaluated as with --eval-only): "linear_lbfgs",
    # "layerwise", "few_shot".
    cfg.CLASSIFICATION.PROTOCOL = "linear_sgd"
    # Validation split (L-BFGS regularisation choice, fine-tuning grid). "" = a class-stratified
    # VAL_FRACTION of DATASETS.TRAIN (seed VAL_SEED), the rest being the training split.
    cfg.CLASSIFICATION.VAL_DATASET = ""
    cfg.CLASSIFICATION.VAL_FRACTION = 0.2
    cfg.CLASSIFICATION.VAL_SEED = 0
    # SGD protocols: train on the training split alone and evaluate on the validation split (model
    # selection, e.g. the fine-tuning grid). False: train on train+val, evaluate on DATASETS.TEST.
    cfg.CLASSIFICATION.EVAL_ON_VAL = False
    # SGD protocols: the schedule in epochs of what the run trains on (the training split with
    # EVAL_ON_VAL, else train + val). > 0: SOLVER.MAX_ITER = EPOCHS x floor(images /
    # SOLVER.IMS_PER_BATCH) (full batches per epoch, as a loader that drops the last partial one),
    # set when the run starts (logged; its config.yaml records it). 0 = SOLVER.MAX_ITER as given.
    cfg.CLASSIFICATION.EPOCHS = 0
    # With EPOCHS: the epochs at which WarmupMultiStepLR multiplies the LR by SOLVER.GAMMA (they set
    # SOLVER.STEPS). () = SOLVER.STEPS as given.
    cfg.CLASSIFICATION.STEP_EPOCHS = ()
    # Deprecated in 0.2.0, ignored with a warning, removed in 0.3.0: the fine-tuning grid of the
    # former tools/finetune_sweep.py. A study transfer's select: (docs/studies.md) runs any grid on
    # validation.
    for key in ("", ".BASE_LRS", ".WEIGHT_DECAYS", ".WD_OVER_LR"):
        cfg.register_deprecated_key("CLASSIFICATION.FINETUNE_GRID" + key)
    # Metric reported as "score": "top1", "mean_per_class" or "map11"; "" = the test set's metadata
    # "metric".
    cfg.CLASSIFICATION.METRIC = ""
    # Coarser labels (label granularity): a JSON file {"fine class name": "coarse class name", ...},
    # the format of DATASETS.PRETRAIN.LABEL_MAP, relabelling train, val and test by class name; the
    # classes are the sorted coarse names. A leading $DETECTRON2_DATASETS is the dataset root. "" =
    # the fine labels.
    cfg.CLASSIFICATION.LABEL_MAP = ""
    # Pooled trunk outputs used by the frozen-feature protocols ("res2".."res5"); the first one for
    # linear_lbfgs and few_shot, every one for layerwise.
    cfg.CLASSIFICATION.LAYERS = ("res5",)
    # Folder of the feature cache of the frozen-feature protocols, keyed by (weights digest,
    # dataset, split, transform, layer). "" = $CONTRASTIVE_DET_CACHE or
    # ~/.cache/contrastive_det/features.
    cfg.CLASSIFICATION.FEATURE_CACHE = ""
    # Images per inference batch (per process) of evaluation and feature extraction.
    cfg.CLASSIFICATION.TEST_BATCH_SIZE = 64

    # L-BFGS logistic regression (Kornblith et al. 2019): the L2 penalty reg (= 1/C of scikit-learn)
    # is chosen among NUM_REGS log-spaced values in [REG_MIN, REG_MAX] on the validation split.
    cfg.CLASSIFICATION.LBFGS = CN()
    cfg.CLASSIFICATION.LBFGS.REG_MIN = 1e-6
    cfg.CLASSIFICATION.LBFGS.REG_MAX = 1e5
    cfg.CLASSIFICATION.LBFGS.NUM_REGS = 45
    cfg.CLASSIFICATION.LBFGS.MAX_ITER = 1000  # L-BFGS iterations per fit
    # A fit stops when every gradient entry of the mean objective is <= TOL (scikit-learn's
    # LogisticRegression tol, whose default this is). 1e-6 moves the test score by < 0.2 points on
    # the toy features and costs ~12x the time (docs/benchmarks.md, "Classification benchmarks").
    cfg.CLASSIFICATION.LBFGS.TOL = 1e-4
    # Precision of the fits: "float64" (scikit-learn's) or "float32" (~2x faster on a CPU, far more
    # on most GPUs; stops ~1e-3 from the optimum, the same test score on the toy features).
    cfg.CLASSIFICATION.LBFGS.DTYPE = "float64"

    # Few-shot episodes (Islam et al. 2021) drawn from the test split, deterministic from SEED.
    cfg.CLASSIFICATION.FEW_SHOT = CN()
    cfg.CLASSIFICATION.FEW_SHOT.WAYS = 5
    cfg.CLASSIFICATION.FEW_SHOT.SHOTS = (1, 5, 20)
    cfg.CLASSIFICATION.FEW_SHOT.QUERIES = 15  # query images per class and episode
    cfg.CLASSIFICATION.FEW_SHOT.EPISODES = 600
    # "logistic" (Islam et al.: logistic regression on L2-normalised features), "centroid" (nearest
    # class mean by cosine similarity) or "protonet" (ProtoNet / ssl-transfer: nearest mean of the
    # raw features by squared Euclidean distance).
    cfg.CLASSIFICATION.FEW_SHOT.CLASSIFIER = "logistic"
    # logistic regression's L2 penalty (scikit-learn's default C = 1)
    cfg.CLASSIFICATION.FEW_SHOT.REG = 1.0

    # Core-tuning (Zhang et al. 2021; docs/design.md section 5): loss = CE + ETA * focal SupCon.
    cfg.CLASSIFICATION.CORE_TUNING = CN()
    cfg.CLASSIFICATION.CORE_TUNING.ETA = 0.1
    cfg.CLASSIFICATION.CORE_TUNING.ALPHA = 1.0  # mixup lambda ~ Beta(ALPHA, ALPHA)
    cfg.CLASSIFICATION.CORE_TUNING.TEMPERATURE = 0.07
    # contrastive head in_dim -> HIDDEN_DIM -> PROJ_DIM
    cfg.CLASSIFICATION.CORE_TUNING.HIDDEN_DIM = 2048
    cfg.CLASSIFICATION.CORE_TUNING.PROJ_DIM = 256
    # hard negatives: weight of the shuffled side
    cfg.CLASSIFICATION.CORE_TUNING.MIN_SHUFFLED_WEIGHT = 0.8
    # Scale of the focal SupCon term: "batch" = each anchor's weighted sum divided by the batch
    # rows, as the authors' code does (ETA 0.1 was tuned at this scale); "positives" = SupCon's mean
    # over positives.
    cfg.CLASSIFICATION.CORE_TUNING.CON_NORMALIZATION = "batch"
    # Contrastive term also on the hard negatives/positives made by feature mixup; False: on the
    # batch's own only.
    cfg.CLASSIFICATION.CORE_TUNING.HARD_PAIRS = True
    # Classifier also trained on the mixup samples' soft labels; False: CE on the real samples only.
    cfg.CLASSIFICATION.CORE_TUNING.SMOOTH_BOUNDARY = True

    # Classification images (torchvision.transforms.v2): training RandomResizedCrop(CROP_SIZE,
    # CROP_SCALE) + flip; test: the TEST_PIPELINE preset below.
    cfg.INPUT.CLS = CN()
    cfg.INPUT.CLS.CROP_SIZE = 224
    cfg.INPUT.CLS.CROP_SCALE = (0.08, 1.0)
    cfg.INPUT.CLS.FLIP_PROB = 0.5
    cfg.INPUT.CLS.TEST_RESIZE = 256
    # Test (and frozen-feature) image pipeline, a preset named for its reference
    # (contrastive_det/data/classification_loader.py TEST_PIPELINES): "resize_crop" (MoCo lincls:
    # shorter side TEST_RESIZE, centre crop CROP_SIZE), "ssl_transfer" (shorter side CROP_SIZE,
    # bicubic, centre crop) or "islam" (square resize to 1.15 x CROP_SIZE, centre crop).
    cfg.INPUT.CLS.TEST_PIPELINE = "resize_crop"
    return cfg


def add_segmentation_config(cfg):
    """Keys of semantic segmentation transfer (TASK "SegmentationTask"); see
    docs/segmentation.md."""
    # FCNHead (contrastive_det/modeling/sem_seg_heads.py) on detectron2's MODEL.SEM_SEG_HEAD keys
    # (NAME, IN_FEATURES, NUM_CLASSES, CONVS_DIM, NORM, IGNORE_VALUE, LOSS_WEIGHT) plus these:
    head = cfg.MODEL.SEM_SEG_HEAD
    # 3x3 conv + norm + ReLU blocks of the head (MoCo's FCN-16s and mmseg's FCN: 2)
    head.NUM_CONVS = 2
    head.DILATION = 1  # dilation (= padding) of those convs (MoCo's FCN-16s: 6; mmseg's FCN-D8: 1)
    # mmseg's concat_input: concat the input with the conv output, fuse by a 3x3 conv
    head.CONCAT_INPUT = False
    head.DROPOUT = 0.0  # Dropout2d before the 1x1 classifier (mmseg: 0.1; MoCo: none)
    # Auxiliary FCN head during training (mmseg: on "res4", 1 conv of 256 channels, loss weight
    # 0.4). "" = none. The feature must be in MODEL.RESNETS.OUT_FEATURES.
    head.AUX_IN_FEATURE = ""
    head.AUX_CONVS_DIM = 256
    head.AUX_NUM_CONVS = 1
    head.AUX_LOSS_WEIGHT = 0.4
    # Core-tuning on pixel embeddings: THIS SUITE'S ADAPTATION (the paper's segmentation recipe is
    # not public; contrastive_det/modeling/sem_seg_core_tuning.py): per class up to PIXELS_PER_CLASS
    # pixels of the batch, mixup hard pairs, focal SupCon on a HIDDEN_DIM ->
    # CLASSIFICATION.CORE_TUNING.PROJ_DIM MLP; ETA, ALPHA, TEMPERATURE, MIN_SHUFFLED_WEIGHT,
    # CON_NORMALIZATION, HARD_PAIRS, SMOOTH_BOUNDARY come from CLASSIFICATION.CORE_TUNING.
    head.CORE_TUNING = CN()
    head.CORE_TUNING.ENABLED = False
    head.CORE_TUNING.PIXELS_PER_CLASS = 32
    head.CORE_TUNING.HIDDEN_DIM = 512

    # Dilated ResNets (MODEL.BACKBONE.NAME "build_dilated_resnet_backbone", every depth,
    # contrastive_det/modeling/dilated_resnet.py; or detectron2.projects.deeplab's
    # "build_resnet_deeplab_backbone", ResNet-50 and deeper): output stride 16 with RES4_DILATION 1
    # + RESNETS.RES5_DILATION 2, 8 with 2 + 4.
    cfg.MODEL.RESNETS.RES4_DILATION = 1
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]  # dilation multipliers of the 3 res5 blocks
    # mmseg's contract_dilation (build_dilated_resnet_backbone only): the first block of a dilated
    # stage dilates its strided 3x3 conv by half the stage's dilation
    cfg.MODEL.RESNETS.CONTRACT_DILATION = False
    # The stem must stay "basic" (one 7x7 conv) for standard ResNet checkpoints: "deeplab" (three
    # 3x3 convs) would be left at random init.
    cfg.MODEL.RESNETS.STEM_TYPE = "basic"

    # Poly learning rate ("WarmupPolyLR", contrastive_det/solver/lr_schedule.py):
    # (BASE_LR - POLY_LR_MIN) * (1 - iter / MAX_ITER) ^ POLY_LR_POWER + POLY_LR_MIN.
    cfg.SOLVER.POLY_LR_POWER = 0.9
    # mmseg's min_lr (1e-4 in its FCN-D8 schedule); 0 = detectron2's poly
    cfg.SOLVER.POLY_LR_MIN = 0.0

    # Training augmentation of segmentation images and label maps (data/sem_seg_mapper.py), in
    # order:
    cfg.INPUT.SEM_SEG = CN()
    # 1. random rescale by a ratio drawn uniformly from SCALE_RATIO, of the image's own size when
    #    BASE_SIZE is empty (MoCo), else of the largest size that fits BASE_SIZE = (long, short)
    # keeping
    #    the aspect ratio (mmseg: (2048, 512) on VOC, (2048, 1024) on Cityscapes)
    cfg.INPUT.SEM_SEG.SCALE_RATIO = (0.5, 2.0)
    cfg.INPUT.SEM_SEG.BASE_SIZE = ()
    # 2. random crop of CROP_SIZE (h, w), retried up to 10 times while one class covers more than
    #    INPUT.CROP.SINGLE_CATEGORY_MAX_AREA of it (mmseg: 0.75; 1.0 = no retry), then padding to
    #    CROP_SIZE (image: the pixel mean, i.e. 0 after normalisation; label: the ignore value)
    cfg.INPUT.SEM_SEG.CROP_SIZE = (513, 513)
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    # 3. horizontal flip with probability FLIP_PROB
    cfg.INPUT.SEM_SEG.FLIP_PROB = 0.5
    # 4. mmseg's PhotoMetricDistortion (brightness +-32, contrast and saturation 0.5-1.5, hue +-18,
    #    each with probability 0.5); False = none (MoCo)
    cfg.INPUT.SEM_SEG.PHOTOMETRIC = False
    # Test: one scale, the original size when TEST_BASE_SIZE is empty (MoCo), else the largest size
    # that fits TEST_BASE_SIZE = (long, short) with the aspect ratio kept (mmseg: (2048, 512) on
    # VOC); logits are resized back to the original size before scoring.
    cfg.INPUT.SEM_SEG.TEST_BASE_SIZE = ()
    # Test windows: the whole image of TEST_CROP_SIZE with
    # TEST_STRIDE (mmseg's Cityscapes test: 769 / 513); () = whole image.
    cfg.INPUT.SEM_SEG.TEST_CROP_SIZE = ()
    cfg.INPUT.SEM_SEG.TEST_STRIDE = ()
    return cfg
