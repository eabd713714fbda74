"""
Fixed class lists of the downstream classification sets (the role of detectron2's
``builtin_meta.py``): the sets whose class names are a definition rather than a file on disk.
Sets whose names are on disk (folder names, ``classes.txt``, ``.mat`` files) read them lazily; see
:mod:`contrastive_det.data.datasets.downstream.readers`.
"""

# EuroSAT (RGB): the folder names under 2750/, sorted (= torchvision's EuroSAT order).
EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)

# ChestX-ray14 as in the CD-FSL benchmark (datasets/Chest_few_shot.py): the images whose "Finding
# Labels" is exactly one of these findings ("Pneumonia" and "No Finding" are left out), labelled in
# this order.
CHESTX_CLASSES = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumothorax",
)

# ISIC 2018 task 3: the one-hot columns of ISIC2018_Task3_Training_GroundTruth.csv, in file order
# (melanoma, melanocytic nevus, basal cell carcinoma, actinic keratosis / Bowen's disease, benign
# keratosis, dermatofibroma, vascular lesion).
ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")

# DeepWeeds: the "Species" of each integer "Label" 0..8 of labels.csv.
DEEPWEEDS_CLASSES = (
    "Chinee apple",
    "Lantana",
    "Parkinsonia",
    "Parthenium",
    "Prickly acacia",
    "Rubber vine",
    "Siam weed",
    "Snake weed",
    "Negative",
)

# KaoKore (labels.csv: gender 0 male / 1 female, status 0 noble / 1 warrior / 2 incarnation /
# 3 commoner). As in Islam et al.'s code, the label is gender * 4 + status: 8 classes.
KAOKORE_GENDERS = ("male", "female")
KAOKORE_STATUSES = ("noble", "warrior", "incarnation", "commoner")
KAOKORE_CLASSES = tuple(f"{g}/{s}" for g in KAOKORE_GENDERS for s in KAOKORE_STATUSES)

# SVHN: the digit; the .mat files store digit 0 as label 10.
SVHN_CLASSES = tuple(str(i) for i in range(10))

# Oxford 102 Flowers: the names of imagelabels.mat's labels 1..102 (the archive has no names; the
# list is torchvision's Flowers102.classes).
FLOWERS102_CLASSES = (
    "pink primrose",
    "hard-leaved pocket orchid",
    "canterbury bells",
    "sweet pea",
    "english marigold",
    "tiger lily",
    "moon orchid",
    "bird of paradise",
    "monkshood",
    "globe thistle",
    "snapdragon",
    "colt's foot",
    "king protea",
    "spear thistle",
    "yellow iris",
    "globe-flower",
    "purple coneflower",
    "peruvian lily",
    "balloon flower",
    "giant white arum lily",
    "fire lily",
    "pincushion flower",
    "fritillary",
    "red ginger",
    "grape hyacinth",
    "corn poppy",
    "prince of wales feathers",
    "stemless gentian",
    "artichoke",
    "sweet william",
    "carnation",
    "garden phlox",
    "love in the mist",
    "mexican aster",
    "alpine sea holly",
    "ruby-lipped cattleya",
    "cape flower",
    "great masterwort",
    "siam tulip",
    "lenten rose",
    "barbeton daisy",
    "daffodil",
    "sword lily",
    "poinsettia",
    "bolero deep blue",
    "wallflower",
    "marigold",
    "buttercup",
    "oxeye daisy",
    "common dandelion",
    "petunia",
    "wild pansy",
    "primula",
    "sunflower",
    "pelargonium",
    "bishop of llandaff",
    "gaura",
    "geranium",
    "orange dahlia",
    "pink-yellow dahlia",
    "cautleya spicata",
    "japanese anemone",
    "black-eyed susan",
    "silverbush",
    "californian poppy",
    "osteospermum",
    "spring crocus",
    "bearded iris",
    "windflower",
    "tree poppy",
    "gazania",
    "azalea",
    "water lily",
    "rose",
    "thorn apple",
    "morning glory",
    "passion flower",
    "lotus",
    "toad lily",
    "anthurium",
    "frangipani",
    "clematis",
    "hibiscus",
    "columbine",
    "desert-rose",
    "tree mallow",
    "magnolia",
    "cyclamen",
    "watercress",
    "canna lily",
    "hippeastrum",
    "bee balm",
    "ball moss",
    "foxglove",
    "bougainvillea",
    "camellia",
    "mallow",
    "mexican petunia",
    "bromelia",
    "blanket flower",
    "trumpet creeper",
    "blackberry lily",
)

# Pascal VOC 2007: the 20 classes in the devkit's order (ImageSets/Main/<class>_<split>.txt).
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

assert len(FLOWERS102_CLASSES) == 102 and len(set(FLOWERS102_CLASSES)) == 102
assert len(VOC_CLASSES) == 20
