"""
Dataset registration: what each name in detectron2's ``DatasetCatalog`` / ``MetadataCatalog`` is and
where its files are. ``catalog.py``: the toy sets, ImageNet, ``DATASETS.CUSTOM`` (VOC, COCO, folder,
CSV and semantic segmentation layouts) and the shared ``register_dataset``; ``pretraining_sets.py``:
iNaturalist 2021 and Places365; ``downstream/``: the transfer sets in their real layouts (meta,
readers, splits, the builtin table); ``sem_seg_sets.py`` / ``voc_sem_seg.py``: VOC 2012 (+ SBD),
Cityscapes and ADE20K segmentation; ``toy_constants.py``: the toy benchmark's names and folders.
Loading images and building loaders live one level up, in :mod:`contrastive_det.data`.
"""
