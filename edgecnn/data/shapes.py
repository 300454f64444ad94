"""Built-in synthetic data: filled circles, squares and triangles on crops of real photos.

``shapes`` (detection) and ``shapes-seg`` (segmentation) come from one generator, so image ``i`` is
the same picture in both, at any ``count``. Each image is a random crop of a scikit-image sample
photo (bundled with scikit-image: no download) with 1 to 3 shapes drawn anti-aliased by OpenCV at
the target size. Each shape gets a saturated colour chosen to stand out from the photo under it and
a dark or light outline, is 15-45% of the image side, lies fully inside the image, and neither
touches another shape nor overlaps another's box by IoU 0.1 or more.

A pixel belongs to a shape when the shape (outline included) covers at least half of it; boxes are
the tight bounding boxes of those pixels, and the masks are exactly those pixels. The content
depends only on ``img_size`` and :data:`CONTENT_SEED` (not on the split seed); it is cached, and
every call returns fresh copies that callers may modify.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.base import DetectionData, SegmentationData

CLASSES = ["circle", "square", "triangle"]
CONTENT_SEED = 20240611  # fixed: the pictures never depend on a training run's --seed
MAX_IOU = 0.1  # between any two boxes of one image
SIZE_RANGE = (0.15, 0.45)  # shape extent as a fraction of the image side
MIN_IMG_SIZE = 16
PHOTOS = (  # scikit-image samples stored in its wheel (no pooch download); gray ones are used as gray RGB
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "camera", "brick", "grass", "gravel", "coins", "moon",
)  # fmt: skip
_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel positions, smooth anti-aliased edges
_ATTEMPTS = 25  # placements tried per shape before the image keeps fewer shapes


@dataclass(frozen=True)
class _Shape:
    cls: int  # index into CLASSES
    center: np.ndarray  # (2,) x, y in pixel coordinates (pixel centres are integers, as in cv2)
    radius: float  # circle radius, or the polygon's circumradius
    points: np.ndarray | None  # (P, 2) polygon vertices x, y; None for a circle

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min x, min y), (max x, max y) of the geometry."""
        if self.points is None:
            return self.center - self.radius, self.center + self.radius
        return self.points.min(axis=0), self.points.max(axis=0)

    def inset(self, width: float) -> _Shape | None:
        """The same shape with every edge moved ``width`` pixels inwards (None when nothing is left)."""
        if self.points is None:
            return _Shape(self.cls, self.center, self.radius - width, None) if self.radius > width + 0.5 else None
        centre, inradius = _incircle(self.points)
        if inradius <= width + 0.5:
            return None
        points = centre + (self.points - centre) * ((inradius - width) / inradius)  # homothety about the incentre
        return _Shape(self.cls, self.center, self.radius, points)


def _incircle(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and radius of the inscribed circle of a triangle or a square."""
    if len(points) == 4:
        return points.mean(axis=0), float(np.linalg.norm(points[1] - points[0])) / 2
    a, b, c = (float(np.linalg.norm(points[(i + 1) % 3] - points[(i + 2) % 3])) for i in range(3))
    perimeter = a + b + c
    (x1, y1), (x2, y2) = points[1] - points[0], points[2] - points[0]
    area = abs(x1 * y2 - x2 * y1) / 2
    return (a * points[0] + b * points[1] + c * points[2]) / perimeter, 2 * area / perimeter


# -- drawing ----------------------------------------------------------------------------------------------


def _random_shape(rng: np.random.Generator, size: int) -> _Shape:
    """A shape of random class, size, rotation and position, fully inside a 1-pixel margin."""
    u_cls, u_extent, u_angle, u_x, u_y, *jitter = rng.random(8).tolist()  # fixed draws per shape
    cls = min(int(u_cls * len(CLASSES)), len(CLASSES) - 1)
    extent = (SIZE_RANGE[0] + u_extent * (SIZE_RANGE[1] - SIZE_RANGE[0])) * size
    angle = u_angle * 2 * math.pi
    if cls == 0:
        radius, offsets = extent / 2, [(-extent / 2, -extent / 2), (extent / 2, extent / 2)]
    else:
        if cls == 1:  # a square whose side is 0.8 extent: its box is 0.8 to 1.13 extent as it turns
            radius, angles = 0.8 * extent / math.sqrt(2), [angle + k * math.pi / 2 for k in range(4)]
        else:  # a roughly equilateral triangle, vertex angles jittered so triangles differ
            radius = 0.55 * extent
            angles = [angle + k * 2 * math.pi / 3 + 0.5 * (j - 0.5) for k, j in enumerate(jitter[:3])]
        offsets = [(radius * math.cos(a), radius * math.sin(a)) for a in angles]
    lo = [min(o[axis] for o in offsets) for axis in (0, 1)]
    hi = [max(o[axis] for o in offsets) for axis in (0, 1)]
    center = [1 - lo[axis] + u * (size - 3 - hi[axis] + lo[axis]) for axis, u in ((0, u_x), (1, u_y))]
    points = None if cls == 0 else np.array([(center[0] + dx, center[1] + dy) for dx, dy in offsets])
    return _Shape(cls, np.array(center), radius, points)


def _window(shape: _Shape, size: int) -> tuple[slice, slice]:
    """The part of the image (rows, columns) that the shape and its anti-aliased edge can touch."""
    (x0, y0), (x1, y1) = shape.bounds()
    rows = slice(max(math.floor(y0) - 3, 0), min(math.ceil(y1) + 4, size))
    cols = slice(max(math.floor(x0) - 3, 0), min(math.ceil(x1) + 4, size))
    return rows, cols


def _coverage(shape: _Shape | None, window: tuple[slice, slice]) -> np.ndarray:
    """How much of each pixel of ``window`` the shape covers, uint8 0..255 (anti-aliased)."""
    rows, cols = window
    canvas = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.uint8)
    if shape is None:
        return canvas
    one, origin = 1 << _SHIFT, np.array([cols.start, rows.start])
    if shape.points is None:
        centre = tuple(int(round(v * one)) for v in shape.center - origin)
        cv2.circle(canvas, centre, int(round(shape.radius * one)), 255, -1, cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillPoly(canvas, [np.round((shape.points - origin) * one).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    return canvas


def _pixel_box(pixels: np.ndarray, window: tuple[slice, slice]) -> tuple[int, int, int, int] | None:
    """Tight image box (ymin, xmin, ymax, xmax), max exclusive, of the True ``pixels`` of ``window``."""
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if rows.size == 0:
        return None
    y, x = window[0].start, window[1].start
    return y + int(rows[0]), x + int(cols[0]), y + int(rows[-1]) + 1, x + int(cols[-1]) + 1


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def _colours(rng: np.random.Generator, region: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fill, outline) RGB for a shape over the ``pixels`` of the image ``region``.

    The fill is a saturated hue turned until it is far from the background's mean colour; the
    outline is near-black on light backgrounds and near-white on dark ones.
    """
    local = cv2.mean(region, mask=pixels.view(np.uint8))[:3]
    hue, saturation, value = rng.random(3).tolist()
    saturation, value = 0.65 + 0.35 * saturation, 0.65 + 0.35 * value
    best, best_distance = (0.0, 0.0, 0.0), -1.0
    for turn in range(4):
        r, g, b = colorsys.hsv_to_rgb((hue + turn / 4) % 1.0, saturation, value)
        rgb = (255 * r, 255 * g, 255 * b)
        distance = math.dist(rgb, local)
        if distance > best_distance:
            best, best_distance = rgb, distance
        if distance >= 120:
            break
    luma = 0.299 * local[0] + 0.587 * local[1] + 0.114 * local[2]
    outline = (20.0,) * 3 if luma > 96 else (235.0,) * 3
    return np.array(best, np.float32), np.array(outline, np.float32)


def _paint(region: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> None:
    """Blend ``colour`` into the image ``region`` in place, weighted by ``coverage``."""
    alpha = coverage[:, :, None].astype(np.float32) * (1 / 255)
    pixels = region.astype(np.float32)
    region[:] = np.rint(pixels + (colour - pixels) * alpha).astype(np.uint8)


# -- scenes ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The background photos as RGB uint8, as scikit-image ships them."""
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise EdgecnnError(
            "the shapes datasets need scikit-image for their background photos: pip install 'edgecnn[train]'"
        ) from exc
    photos = []
    for name in PHOTOS:
        try:
            image = np.asarray(getattr(skdata, name)())
        except Exception as exc:  # a trimmed or broken scikit-image install
            raise EdgecnnError(
                f"scikit-image sample photo {name!r} is not available ({exc}); reinstall: pip install 'edgecnn[train]'"
            ) from exc
        image = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
        photos.append(np.ascontiguousarray(image, np.uint8))
    return tuple(photos)


@functools.lru_cache(maxsize=4)
def _scaled_photos(size: int) -> tuple[np.ndarray, ...]:
    """The photos shrunk so that their short side is at most 2 x ``size``: crops then resize cheaply."""
    scaled = []
    for photo in _photos():
        scale = 2 * size / min(photo.shape[:2])
        if scale < 1:
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        scaled.append(photo)
    return tuple(scaled)


def _background(rng: np.random.Generator, photos: tuple[np.ndarray, ...], size: int) -> np.ndarray:
    """A square crop of a random photo, at a random position and scale, resized to (size, size, 3)."""
    u_photo, u_side, u_y, u_x = rng.random(4).tolist()
    photo = photos[min(int(u_photo * len(photos)), len(photos) - 1)]
    h, w = photo.shape[:2]
    side = max(int((0.3 + 0.7 * u_side) * min(h, w)), 8)
    y, x = int(u_y * (h - side + 1)), int(u_x * (w - side + 1))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(photo[y : y + side, x : x + side], (size, size), interpolation=interpolation)


def _scene(size: int, index: int, photos: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Image ``index``: (RGB image, class mask with 0 = background, pixel boxes, class ids)."""
    rng = np.random.default_rng([CONTENT_SEED, size, index])
    image = _background(rng, photos, size)
    mask = np.zeros((size, size), np.uint8)
    taken = np.zeros((size, size), np.uint8)  # earlier shapes' pixels grown by 1: shapes never touch
    boxes: list[tuple[int, int, int, int]] = []
    classes: list[int] = []
    outline_width = 1 if size < 96 else 2
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(_ATTEMPTS):
            shape = _random_shape(rng, size)
            window = _window(shape, size)
            outer = _coverage(shape, window)
            pixels = outer >= 128
            box = _pixel_box(pixels, window)
            if box and not taken[window][pixels].any() and all(_iou(box, other) < MAX_IOU for other in boxes):
                break
        else:
            continue  # no room left: this image keeps fewer shapes
        region = image[window]  # a view: painting it paints the image
        fill, outline = _colours(rng, region, pixels)
        _paint(region, outer, outline)
        _paint(region, _coverage(shape.inset(outline_width), window), fill)
        mask[window][pixels] = shape.cls + 1  # a later shape owns the pixels it is drawn over
        grown: np.ndarray = cv2.dilate(pixels.view(np.uint8), np.ones((3, 3), np.uint8))
        taken[window] |= grown
        boxes.append(box)
        classes.append(shape.cls)
    return image, mask, boxes, classes


@functools.lru_cache(maxsize=2)  # 1200 images at 128 px hold about 80 MB
def _generate(size: int, count: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(images, masks, normalized boxes, class ids) for images 0..count-1; cached, read-only."""
    photos = _scaled_photos(size)
    scenes = [_scene(size, i, photos) for i in range(count)]
    x = np.stack([s[0] for s in scenes])
    masks = np.stack([s[1] for s in scenes])
    boxes = tuple(np.asarray(s[2], np.float32).reshape(-1, 4) / np.float32(size) for s in scenes)
    classes = tuple(np.asarray(s[3], np.int32) for s in scenes)
    for array in (x, masks, *boxes, *classes):
        array.setflags(write=False)
    return x, masks, boxes, classes


def _check(img_size: int, count: int) -> None:
    if img_size < MIN_IMG_SIZE:
        raise EdgecnnError(f"--img must be {MIN_IMG_SIZE} or more pixels for the shapes datasets, got {img_size}")
    if count < 2:
        raise EdgecnnError(f"the shapes datasets need a count of 2 or more images, got {count}")


def shapes(img_size: int = 128, count: int = 1200) -> DetectionData:
    """The built-in detection set: ``count`` images, classes circle / square / triangle, 1-3 objects each."""
    _check(img_size, count)
    x, _, boxes, classes = _generate(img_size, count)
    return DetectionData(x.copy(), [b.copy() for b in boxes], [c.copy() for c in classes], list(CLASSES), "rgb")


def shapes_seg(img_size: int = 128, count: int = 1200) -> SegmentationData:
    """The built-in segmentation set: the same pictures as :func:`shapes`, masks 0 background, 1 circle,
    2 square, 3 triangle."""
    _check(img_size, count)
    x, masks, _, _ = _generate(img_size, count)
    return SegmentationData(x.copy(), masks.copy(), ["background", *CLASSES], "rgb")
