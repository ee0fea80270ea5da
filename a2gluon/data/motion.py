"""A small real-video data set: camera motion over real photographs, classes defined by the motion.

Each video is a camera (a 4:3 window, bilinear resampling) moving over one photograph, encoded as
a real video file: MPEG-4 part 2 in ``.avi`` (as UCF-101 ships) and H.264 in ``.mp4`` (as
Kinetics downloads are), alternating.  The photographs are tiles of scikit-learn's two bundled
photographs (``load_sample_images``: a temple in China, a flower; 427 x 640 each, nothing is
downloaded), cut into non-overlapping tiles, each with its own colour change (gamma, saturation,
channel order) and optionally mirrored, so that held-out videos can come from *other*
photographs; textured tiles come first (:data:`TILE_ORDER`).  Each video sees its photograph
turned by a multiple of 90 degrees, maybe mirrored, with its own brightness curve
(:func:`photo_view`), so that many videos of a few photographs still show many scenes.

The classes (:data:`CLASSES`) are defined by the motion only: every frame of every class is a
window of the same size range at any place of a photograph, so no single frame tells the class,
and every class is its own mirror image, so the training pipeline's horizontal flip keeps labels
right (a pan to the left would become a pan to the right)::

    pan_up       window moves up;   pan_down  window moves down
    pan_sideways window moves left or right (either, at random)
    zoom_in      window shrinks;    zoom_out  window grows

The motion is made to be seen in short clips at small sizes: pans move 1-1.8 output pixels per
frame (:data:`PAN_SPEED`; the window may hang over the photograph's edge, which shows its mirror
image), zooms change the window's width 2.2-3.4x over the video at a constant rate.

Layouts (``layout=``)::

    "folders"  OUT/train/<class>/<class>_pPP_vVV.avi|.mp4, OUT/val/<class>/...   (Kinetics-style)
    "ucf101"   OUT/UCF-101/<Class>/v_<Class>_gPP_cVV.avi|.mp4 and OUT/ucfTrainTestlist/
               classInd.txt, trainlist01.txt, testlist01.txt (split 1: test = held-out photographs,
               the "group" gPP is the photograph, as UCF-101's groups are the actors)
    "kinetics" OUT/train/<class>/<id>_000000_000002.mp4 ..., OUT/val/... and OUT/train.csv,
               OUT/val.csv (label,youtube_id,time_start,time_end,split)

``OUT/motion.json`` records the settings; a second call with the same settings reuses the set.
"""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from .layout import DataError
from .video_decode import write_video

CLASSES = ("pan_up", "pan_down", "pan_sideways", "zoom_in", "zoom_out")
WINDOW = (0.22, 0.75)  # camera window widths, fractions of the photograph's: zooms go from one to the other
PAN_SPEED = (1.0, 1.8)  # output pixels per frame
MANIFEST = "motion.json"
TILE = 213  # 427 x 640 photographs give 2 x 3 tiles each
# (image, row, col) of the 12 tiles, textured ones first, mixing both photographs: motion is only
# visible where there is texture, and the flower photograph is mostly a smooth, blurred
# background (the fraction of 16 x 16 blocks with texture, measured at half size, is in the
# comments), so that the first 7 photographs -- the test's training and held-out ones -- all show it.
TILE_ORDER = (
    (0, 1, 0), (1, 1, 1), (0, 1, 1), (1, 0, 1),  # temple and trees 1.0, dahlia 1.0, temple 0.94, dahlia 0.67
    (0, 1, 2), (0, 0, 0), (0, 0, 1),  # trees and lake 0.97, temple and sky 0.42, 0.42
    (0, 0, 2), (1, 0, 0), (1, 0, 2), (1, 1, 0), (1, 1, 2),  # mostly sky / blurred background 0.11-0.25
)  # fmt: skip


def _camel(name):
    return "".join(part.capitalize() for part in name.split("_"))


def photographs(count, seed=0):
    """``count`` RGB photographs (TILE x TILE uint8): distinct tiles of scikit-learn's sample
    images, each with its own colour change; photograph i uses tile ``TILE_ORDER[i mod 12]``
    (textured tiles first), so up to 12 are distinct scenes (more repeat a scene with another
    colour change and a mirror)."""
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    tiles = [
        images[image][row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
        for image, row, col in TILE_ORDER
    ]
    rng = np.random.RandomState(seed)
    out = []
    for index in range(count):
        img = tiles[index % len(tiles)].astype(np.float32) / 255
        img = img ** rng.uniform(0.7, 1.4)  # gamma
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.6, 1.4)  # saturation
        img = img[:, :, rng.permutation(3)] if index >= len(tiles) or rng.rand() < 0.5 else img
        if index >= len(tiles) or rng.rand() < 0.5:
            img = img[:, ::-1]
        out.append(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
    return out


def _pan_start(distance, size, tile, rng):
    """(first centre, distance) of a pan of a window ``size`` wide along a photograph ``tile`` wide.

    Where the pan does not fit inside the photograph (large windows, long videos), the window may
    hang over its edges by up to half its size: :func:`render_video` shows the photograph's mirror
    image there, a still scene, so the whole window still moves at the pan's speed."""
    room = tile - size  # for the window's centre, with the window inside the photograph
    overhang = float(np.clip((distance / 0.95 - room) / 2, 0.0, size / 2))
    room += 2 * overhang
    distance = min(distance, 0.95 * room)
    return rng.uniform(size / 2 - overhang, size / 2 - overhang + room - distance), distance


def camera_path(motion, frames, rng, width, height, tile=TILE):
    """(centre x, centre y, window width) per frame for one video of class ``motion``.

    The motion has to be visible in a short clip at a small size: pans move the window by
    :data:`PAN_SPEED` output pixels per frame (hanging over the photograph's edge where it is too
    small for the pan, see :func:`_pan_start`), zooms change its width by a constant factor per
    frame, at least 2.2x over the video."""
    aspect = height / width
    small, large = WINDOW[0] * tile, WINDOW[1] * tile  # window widths every class uses
    t = np.linspace(0.0, 1.0, frames)
    if motion in ("zoom_in", "zoom_out"):
        start, end = rng.uniform(0.8, 1.0) * large, rng.uniform(1.0, 1.25) * small  # >= 2.2x zoom
        if motion == "zoom_out":
            start, end = end, start
        ww = start * (end / start) ** t  # geometric: the same zoom rate in every frame
        half = max(start, end) / 2
        cx = np.full(frames, rng.uniform(half, tile - half))
        cy = np.full(frames, rng.uniform(half * aspect, tile - half * aspect))
        return cx, cy, ww
    if motion not in ("pan_up", "pan_down", "pan_sideways"):
        raise DataError(f"unknown motion {motion!r}; one of {', '.join(CLASSES)}")
    w = rng.uniform(small, large)
    h = w * aspect
    ww = np.full(frames, w)
    speed = rng.uniform(*PAN_SPEED) * w / width  # photograph pixels per frame
    if motion == "pan_sideways":
        x0, distance = _pan_start(speed * (frames - 1), w, tile, rng)
        cx = x0 + distance * t
        if rng.rand() < 0.5:
            cx = cx[::-1]
        cy = np.full(frames, rng.uniform(h / 2, tile - h / 2))
        return cx, cy, ww
    y0, distance = _pan_start(speed * (frames - 1), h, tile, rng)
    cy = y0 + distance * t
    if motion == "pan_up":  # the camera moves up: the window's y decreases
        cy = cy[::-1]
    cx = np.full(frames, rng.uniform(w / 2, tile - w / 2))
    return cx, cy, ww


def photo_view(photo, rng):
    """The photograph as one video sees it: turned by a multiple of 90 degrees, maybe mirrored,
    with its own brightness curve, so that every video of a photograph shows another scene (the
    camera moves over the turned photograph: the class is unchanged)."""
    view = np.rot90(photo, rng.randint(4))
    if rng.rand() < 0.5:
        view = view[:, ::-1]
    gamma = rng.uniform(0.8, 1.25)
    lut = np.clip(255 * (np.arange(256) / 255) ** gamma + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(lut[view])


def render_video(photo, motion, frames, width, height, rng):
    """The frames (frames x height x width x 3 uint8) of a camera moving over ``photo``."""
    cx, cy, ww = camera_path(motion, frames, rng, width, height, tile=photo.shape[1])
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        scale = width / ww[i]  # output pixels per photograph pixel
        matrix = np.array(
            [[scale, 0, width / 2 - scale * cx[i]], [0, scale, height / 2 - scale * cy[i]]], np.float64
        )
        out[i] = cv2.warpAffine(
            photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    return out


def write_motion_set(
    out_dir,
    classes=CLASSES,
    train_photos=6,
    val_photos=3,
    videos_per_photo=1,
    val_videos_per_photo=None,
    frames=32,
    width=96,
    height=72,
    fps=25,
    formats=(".avi", ".mp4"),
    layout="folders",
    seed=0,
    force=False,
):
    """Write the motion set to ``out_dir`` (layouts in the module docstring) and return a dict:
    ``root``, ``train`` / ``val`` (class-folder roots; for "ucf101" both are the video root),
    ``list_dir`` ("ucf101": the ucfTrainTestlist folder), ``train_csv`` / ``val_csv``
    ("kinetics"), ``classes``, ``train_videos``, ``val_videos``, ``settings``.

    Training videos come from photographs 0..train_photos-1, validation videos from the next
    ``val_photos`` (other scenes while the total is at most 12), ``videos_per_photo`` videos per
    photograph and class (validation: ``val_videos_per_photo``, default the same), each with its
    own camera path.  ``formats`` alternate over the videos.
    Defaults: 5 classes x 9 photographs = 45 videos of 32 frames at 96 x 72, about 2 s.
    """
    if layout not in ("folders", "ucf101", "kinetics"):
        raise DataError(f"layout must be folders, ucf101 or kinetics, got {layout!r}")
    val_videos_per_photo = videos_per_photo if val_videos_per_photo is None else val_videos_per_photo
    counts = (train_photos, val_photos + 1, videos_per_photo, val_videos_per_photo)
    if frames < 1 or width < 8 or height < 8 or min(counts) < 1:
        raise DataError(
            "write_motion_set needs frames >= 1, width/height >= 8, train_photos >= 1, videos per photo >= 1"
        )
    if layout == "kinetics":
        formats = (".mp4",)
    for fmt in formats:
        if fmt not in (".avi", ".mp4", ".mkv", ".webm"):
            raise DataError(f"unknown video format {fmt!r}")
    if any(fmt in (".mp4", ".mkv", ".webm") for fmt in formats) and (width % 2 or height % 2):
        raise DataError("H.264 / VP8 need an even width and height")
    classes = list(classes)
    out = Path(out_dir)
    settings = dict(
        classes=classes, train_photos=train_photos, val_photos=val_photos, videos_per_photo=videos_per_photo,
        val_videos_per_photo=val_videos_per_photo, frames=frames, width=width, height=height, fps=fps,
        formats=list(formats), layout=layout, seed=seed,
    )  # fmt: skip
    manifest = out / MANIFEST
    if manifest.is_file() and not force:
        try:
            done = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            done = None
        if done and done.get("settings") == settings:
            return done
    if out.exists():
        for entry in ("train", "val", "UCF-101", "ucfTrainTestlist", "train.csv", "val.csv", MANIFEST):
            path = out / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    photos = photographs(train_photos + val_photos, seed=seed)
    rng = np.random.RandomState(seed + 1)
    result = dict(root=str(out), classes=classes, train_videos=0, val_videos=0, settings=settings)
    rows = {"train": [], "val": []}
    count = 0
    for photo_index, photo in enumerate(photos):
        split = "train" if photo_index < train_photos else "val"
        for label, motion in enumerate(classes):
            for clip in range(videos_per_photo if split == "train" else val_videos_per_photo):
                fmt = formats[count % len(formats)]
                count += 1
                video = render_video(photo_view(photo, rng), motion, frames, width, height, rng)
                if layout == "ucf101":
                    name = _camel(motion)
                    rel = f"{name}/v_{name}_g{photo_index + 1:02d}_c{clip + 1:02d}{fmt}"
                    path = out / "UCF-101" / rel
                elif layout == "kinetics":
                    youtube_id = f"mo{label}ph{photo_index:02d}cl{clip:02d}"  # 11 characters, as YouTube ids
                    rel = f"{motion}/{youtube_id}_{clip * 10:06d}_{clip * 10 + 2:06d}{fmt}"
                    path = out / split / rel
                else:
                    rel = f"{motion}/{motion}_p{photo_index:02d}_v{clip:02d}{fmt}"
                    path = out / split / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                write_video(path, video, fps=fps)
                rows[split].append((rel, motion, label, clip))
                result[f"{split}_videos"] += 1
    if layout == "ucf101":
        lists = out / "ucfTrainTestlist"
        lists.mkdir()
        names = sorted(_camel(c) for c in classes)  # classInd.txt is alphabetical, as UCF-101's
        (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
        (lists / "trainlist01.txt").write_text(
            "".join(f"{rel} {names.index(_camel(m)) + 1}\n" for rel, m, _, _ in rows["train"])
        )
        (lists / "testlist01.txt").write_text("".join(f"{rel}\n" for rel, _, _, _ in rows["val"]))
        result.update(train=str(out / "UCF-101"), val=str(out / "UCF-101"), list_dir=str(lists))
        result["classes"] = names
    else:
        result.update(train=str(out / "train"), val=str(out / "val") if rows["val"] else None)
    if layout == "kinetics":
        for split in ("train", "val"):
            lines = ["label,youtube_id,time_start,time_end,split"]
            for rel, motion, _, clip in rows[split]:
                youtube_id = rel.split("/")[1][:11]
                lines.append(f"{motion},{youtube_id},{clip * 10},{clip * 10 + 2},{split}")
            (out / f"{split}.csv").write_text("\n".join(lines) + "\n")
            result[f"{split}_csv"] = str(out / f"{split}.csv")
    manifest.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result
