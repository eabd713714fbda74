"""dataset_fingerprint: what a cache or a study digest keyed on a dataset's content notices."""

import os
import time

from contrastive_det.data.fingerprint import dataset_fingerprint


def test_a_label_map_rewritten_in_place_changes_the_fingerprint(tmp_path):
    image, label = tmp_path / "a.jpg", tmp_path / "a.png"
    image.write_bytes(b"jpeg")
    label.write_bytes(b"png1")
    dicts = [{"file_name": str(image), "sem_seg_file_name": str(label)}]
    before = dataset_fingerprint(dicts)
    assert dataset_fingerprint(list(dicts)) == before
    time.sleep(0.01)
    label.write_bytes(b"png2")  # same size, same path: only its stamp changes
    os.utime(label, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert dataset_fingerprint(dicts) != before


def test_the_order_of_the_dicts_does_not_matter_their_content_does(tmp_path):
    a = [{"file_name": str(tmp_path / f"{i}.png"), "label": i % 2} for i in range(4)]
    assert dataset_fingerprint(a) == dataset_fingerprint(a[::-1])
    assert dataset_fingerprint(a) != dataset_fingerprint([dict(a[0], label=1)] + a[1:])
