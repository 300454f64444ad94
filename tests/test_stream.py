"""Streaming datasets: image folders, COCO and YOLO stay on disk (ImageFiles) and train through tf.data.

The pixels equal the in-memory decode; bad files are reported by path (at listing by their header, while
streaming when only the pixels are damaged); shuffling is seeded, complete and new every epoch; --cache
keeps decoded images (memory or files reused by a later run); a run records its split's files, and eval and
convert's calibration use those files even after the folder changes.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.data import files as files_module
from edgecnn.data import load_data, load_split
from edgecnn.data.files import ImageFiles
from edgecnn.data.images import image_header, load_image
from edgecnn.data.stream import cache_target, classify_stream, decoded, detect_stream
from edgecnn.data.yolo import load_yolo

pytestmark = pytest.mark.tf  # tf.data pipelines: not in the fast lane

PHOTOS = ("astronaut", "coffee", "chelsea")


def _crops(root: Path, per_class: int, seed: int = 0) -> None:
    """Real-photo crops (scikit-image samples) of varied sizes, one class per photo."""
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = getattr(skdata, name)()
        for i in range(per_class):
            side = int(rng.integers(60, 160))
            y, x = (int(rng.integers(0, n - side)) for n in photo.shape[:2])
            (root / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(root / name / f"{seed}_{i:02d}.jpg"), np.ascontiguousarray(photo[y : y + side, x : x + side, ::-1])
            )


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """3 classes x 8 photo crops, a file that is no image and a PNG whose header is fine but data cut short."""
    root = tmp_path / "photos"
    _crops(root, 8)
    (root / "coffee" / "notes.jpg").write_bytes(b"not an image")
    png = cv2.imencode(".png", np.full((40, 40, 3), 90, np.uint8))[1].tobytes()
    (root / "chelsea" / "cut.png").write_bytes(png[: len(png) // 2])
    return root


def _positions(stream_images: np.ndarray, reference: np.ndarray) -> list[int]:
    """Which reference image each streamed image is (by exact pixels)."""
    index = {image.tobytes(): i for i, image in enumerate(reference)}
    return [index[image.astype(np.uint8).tobytes()] for image in stream_images]


def test_folder_is_listed_not_decoded_and_reads_like_the_in_memory_path(folder: Path, capsys) -> None:
    data = load_data(str(folder), "classify", 32)
    x = data.x
    assert isinstance(x, ImageFiles) and x.shape == (25, 32, 32, 3) and len(data.y) == 25
    assert data.skipped == [f"skipped unreadable image: {folder / 'coffee' / 'notes.jpg'}"]  # by its header
    assert str(folder / "chelsea" / "cut.png") in x.paths  # header fine: listed, caught when decoded
    good = [i for i, p in enumerate(x.paths) if not p.endswith("cut.png")]
    loaded = np.stack([load_image(Path(x.paths[i]), 32, "rgb") for i in good])
    assert np.array_equal(x.take(np.asarray(good)), loaded) and np.array_equal(x[good[3]], loaded[3])
    assert np.array_equal(x[good[0], ..., 1], loaded[0, ..., 1]) and np.array_equal(x[:3], loaded[:3])
    assert np.array_equal(np.concatenate(list(x.subset(np.asarray(good)).batches(4))), loaded)
    assert x.keys()[0] == "astronaut/0_00.jpg"
    cut = x.paths.index(str(folder / "chelsea" / "cut.png"))
    assert not x[cut].any() and not x[cut].any()  # read as black (labels stay aligned), said once:
    err = capsys.readouterr().err
    assert err.count(f"warning: cannot decode {x.paths[cut]} (read as a black image); replace or remove") == 1
    gray = load_data(str(folder), "classify", 16, channels=1).x
    assert gray.shape == (25, 16, 16, 1) and gray[0].shape == (16, 16, 1)


def test_header_check_without_pillow_decodes_with_opencv(folder: Path, monkeypatch) -> None:
    """A bare runtime install has no Pillow: the check then decodes the file, with the same answers."""
    files = [folder / "astronaut" / "0_00.jpg", folder / "coffee" / "notes.jpg", folder / "chelsea" / "cut.png"]
    with_pillow = [image_header(f) for f in files]
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL fails
    assert [image_header(f) for f in files] == [with_pillow[0], None, None]
    assert with_pillow[0] is not None and with_pillow[2] is not None  # the cut PNG's header alone is fine


def test_classify_stream_equals_the_files_and_names_a_bad_file_once(folder: Path, capsys) -> None:
    data = load_data(str(folder), "classify", 32)
    cut = data.x.paths.index(str(folder / "chelsea" / "cut.png"))
    ds = classify_stream(data, 5, seed=0, augment=False, train=False)
    for _ in range(2):
        x, y = (np.concatenate(parts) for parts in zip(*((a.numpy(), b.numpy()) for a, b in ds), strict=True))
        assert x.dtype == np.float32 and x.shape == (24, 32, 32, 3)
        keep = np.asarray([i for i in range(25) if i != cut])
        assert np.array_equal(x.astype(np.uint8), data.x.take(keep)) and np.array_equal(y, data.y[keep])
    err = capsys.readouterr().err
    assert err.count(f"warning: cannot decode {folder / 'chelsea' / 'cut.png'} (skipped)") == 1


def test_shuffle_is_seeded_complete_and_new_every_epoch(folder: Path) -> None:
    (folder / "chelsea" / "cut.png").unlink()
    data = load_data(str(folder), "classify", 24)
    reference = np.asarray(data.x)

    def epochs(seed: int) -> list[list[int]]:
        ds = classify_stream(data, 6, seed, augment=False, train=True)
        orders = []
        for _ in range(2):
            batches = [(x.numpy(), y.numpy()) for x, y in ds]
            order = _positions(np.concatenate([b[0] for b in batches]), reference)
            assert np.array_equal(np.concatenate([b[1] for b in batches]), data.y[order])  # labels travel along
            orders.append(order)
        return orders

    first, second = epochs(3)
    assert sorted(first) == sorted(second) == list(range(24)) and first != second and first != sorted(first)
    assert epochs(3) == [first, second] and epochs(4)[0] != first


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cache_decodes_each_image_once(folder: Path, tmp_path: Path, cache: str, monkeypatch) -> None:
    """Across the pipelines of several epochs (edgecnn train builds one per epoch), and for a file cache
    across runs: each image is decoded once."""
    (folder / "chelsea" / "cut.png").unlink()
    prefix = "memory" if cache == "memory" else str(tmp_path / "c")
    train = load_split(str(folder), "classify", 24, cache=prefix).train
    decodes: list[Path] = []
    real = files_module.load_image
    monkeypatch.setattr(files_module, "load_image", lambda *args: decodes.append(args[0]) or real(*args))

    def epoch(data: object, seed: int) -> list[bytes]:
        images = np.concatenate([x.numpy() for x, _ in classify_stream(data, 4, seed, augment=False, train=True)])
        return sorted(image.astype(np.uint8).tobytes() for image in images)

    assert epoch(train, 0) == epoch(train, 1) == sorted(image.tobytes() for image in real_images(train.x))
    assert len(decodes) == len(set(decodes)) == len(train) == 18
    if cache == "file":
        print_ = train.x.fingerprint()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("c-")) == [
            f"c-{print_}.data-00000-of-00001",
            f"c-{print_}.index",
        ]
        later = load_split(str(folder), "classify", 24, cache=prefix).train  # another run on the same files
        assert epoch(later, 5) == epoch(train, 0) and len(decodes) == 18
        assert load_split(str(folder), "classify", 20, cache=prefix).train.x.fingerprint() != print_
        stale = [tmp_path / f"c-{print_}x_0.lockfile", tmp_path / f"c-{print_}x_0.data-00000-of-00001.tempstate1"]
        for path in stale:  # what a run killed while writing a cache leaves (no .index)
            path.write_text("")
        monkeypatch.setenv("TF_CONFIG", '{"task": {"type": "worker", "index": 1}}')
        monkeypatch.setattr(files_module.ImageFiles, "fingerprint", lambda self: print_ + "x")
        assert cache_target(train.x) == f"{prefix}-{print_}x-w1" and all(p.exists() for p in stale)
        monkeypatch.delenv("TF_CONFIG")
        assert cache_target(train.x) == f"{prefix}-{print_}x" and not any(p.exists() for p in stale)
        monkeypatch.setattr(files_module.ImageFiles, "fingerprint", lambda self: print_)
        (tmp_path / f"c-{print_}_0.lockfile").write_text("")  # beside a finished cache: another run reading it
        assert cache_target(train.x) == f"{prefix}-{print_}" and (tmp_path / f"c-{print_}_0.lockfile").exists()


def real_images(files: ImageFiles) -> list[np.ndarray]:
    return [load_image(Path(p), files.img_size, files.pixel_format) for p in files.paths]


def test_detect_stream_equals_the_array_pipeline(tmp_path: Path) -> None:
    from edgecnn.detection.anchors import anchor_config, generate_anchors
    from edgecnn.detection.loss import make_dataset
    from edgecnn.detection.targets import BOX_SCALE

    root = tmp_path / "yolo"
    _crops(root / "images", 3)
    for i, image in enumerate(sorted((root / "images").rglob("*.jpg"))):
        label = root / "labels" / image.relative_to(root / "images").with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"{i % 2} 0.3 0.5 0.4 0.6\n" if i % 4 else "")  # every 4th image a negative
    (root / "classes.txt").write_text("left\nright\n")
    data = load_yolo(root, 32, None)
    anchors = generate_anchors(anchor_config([(4, 4), (2, 2)]))
    stream = detect_stream(data, anchors, BOX_SCALE, 4, 0, augment=False, train=False)
    arrays = make_dataset(np.asarray(data.x), data.boxes, data.classes, anchors, BOX_SCALE, 2, 4, 0, False, False)
    for (sx, (sb, sc)), (ax, (ab, ac)) in zip(stream, arrays, strict=True):
        assert np.array_equal(sx, ax) and np.array_equal(sb, ab) and np.array_equal(sc, ac)
    mirrored = [np.stack([b[:, 0], 1 - b[:, 3], b[:, 2], 1 - b[:, 1]], 1) for b in data.boxes]
    flipped = make_dataset(np.asarray(data.x), mirrored, data.classes, anchors, BOX_SCALE, 2, 9, 0, False, False)
    plain = make_dataset(np.asarray(data.x), data.boxes, data.classes, anchors, BOX_SCALE, 2, 9, 0, False, False)
    (_, (plain_box, _)), (_, (flip_box, _)) = next(iter(plain)), next(iter(flipped))
    augmented = detect_stream(data, anchors, BOX_SCALE, 9, 0, augment=True, train=False)
    x, (box, _) = next(iter(augmented))
    chose_flip = [np.allclose(b, f) and not np.allclose(b, p) for b, p, f in zip(box, plain_box, flip_box, strict=True)]
    chose_plain = [np.allclose(b, p) for b, p in zip(box, plain_box, strict=True)]
    assert all(f or p for f, p in zip(chose_flip, chose_plain, strict=True)) and any(chose_flip)
    assert float(np.asarray(x).min()) >= 0 and float(np.asarray(x).max()) <= 255


def test_the_first_batch_decodes_a_few_batches_not_the_set(tmp_path: Path, monkeypatch) -> None:
    """Streaming, not loading: when the first batch arrives, most of the 600 images are still undecoded
    (what runs ahead is the prefetch of a few batches)."""
    for i in range(600):
        (tmp_path / "data" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / "ab"[i % 2] / f"{i}.png"), np.full((12, 12, 3), i % 251, np.uint8))
    data = load_data(str(tmp_path / "data"), "classify", 16)
    decodes: list[Path] = []
    real = files_module.load_image
    monkeypatch.setattr(files_module, "load_image", lambda *args: decodes.append(args[0]) or real(*args))
    x, _ = next(iter(classify_stream(data, 8, 0, augment=True, train=True)))
    assert x.shape == (8, 16, 16, 3) and 8 <= len(decodes) < 300


def test_decoded_order_without_cache_shuffles_positions_only(folder: Path) -> None:
    data = load_data(str(folder), "classify", 16)
    data.x.cache = None
    order = [int(i) for _, i in decoded(data.x, 0, shuffle=True)]
    assert sorted(order) == [i for i in range(25) if not data.x.paths[i].endswith("cut.png")]


def test_train_streams_a_folder_records_its_split_and_eval_and_calibration_use_it(
    folder: Path, tmp_path: Path, capsys
) -> None:
    """`edgecnn train --cache PREFIX`: cache files per split, split.json; later images added to the folder
    change nothing for eval or for the int8 calibration, which read the recorded files."""
    (folder / "chelsea" / "cut.png").unlink()
    run, prefix = tmp_path / "run", tmp_path / "cache" / "photos"
    prefix.parent.mkdir()
    code = main(
        ["train", "--data", str(folder), "--img", "32", "--epochs", "1", "--cache", str(prefix), "--out", str(run)]
    )
    assert code == 0
    record = json.loads((run / "split.json").read_text())
    assert record["made_by"] == "a seeded shuffle" and len(record["train"]) + len(record["val"]) == 24
    assert {key.split("/")[0] for key in record["val"]} == set(PHOTOS)  # stratified: every class validated
    assert set(record["train"]).isdisjoint(record["val"]) and record["val"] == sorted(record["val"])
    assert len(list(prefix.parent.glob("photos-*.index"))) == 2  # train and val, each by its fingerprint
    _crops(folder, 5, seed=1)  # the folder grows after training
    capsys.readouterr()
    assert main(["eval", str(run / "model.keras"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == len(record["val"])
    assert main(["convert", str(run / "model.keras"), "--int8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibration"] == f"{len(record['val'])} images from the run's validation images"
    assert report["accuracy"]["images"] == len(record["val"])
    shutil.move(run / "split.json", tmp_path / "split.json")  # without the record: the seeded split of today's folder
    assert main(["eval", str(run / "model.keras"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] > len(record["val"])


def test_bad_cache_is_one_line_and_exit_2(folder: Path, tmp_path: Path, capsys) -> None:
    for cache, expected in (
        (str(tmp_path / "nope" / "c"), f"--cache {tmp_path / 'nope' / 'c'}: folder {tmp_path / 'nope'} does not exist"),
        (str(tmp_path), "is not a file prefix; use --cache memory or --cache DIR/NAME"),
    ):
        code = main(["train", "--data", str(folder), "--cache", cache, "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0] and not (tmp_path / "r").exists()
