"""On-disk layouts the data layer reads and writes: ImageNet class folders and ``.classes.json``.

``ROOT/<class>/<image>``: one folder per class, labels 0..K-1 in sorted folder-name order.
``OUT_PREFIX.classes.json`` (written by :func:`a2gluon.data.pack`) records which name each label
stands for, so that a validation set packed later, an evaluation run or a deployed model uses the
same labels.  Its schema (version 1)::

    {
      "format": "a2gluon.classes",      # identifies the file
      "version": 1,
      "classes": ["n01440764", ...],    # label i is classes[i]; the only key readers need
      "num_classes": K,
      "counts": [n_0, ..., n_{K-1}],    # images packed per label
      "num_images": N,                  # records in the .rec
      "skipped": ["cls/bad.jpg", ...],  # images left out (paths relative to root, see printable_name)
      "empty_classes": ["n0..."],       # class folders that gave no image (kept: labels stay put)
      "root": "/abs/path/to/ROOT", "resize": 480, "quality": 95, "pass_through": false
    }
"""

import json
import os
from pathlib import Path

# Suffixes (lower-cased) taken as images, as im2rec's defaults; anything else is counted and
# reported as ignored, never silently dropped.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CLASSES_FORMAT = "a2gluon.classes"
CLASSES_VERSION = 1


class DataError(ValueError):
    """Bad data or bad data arguments; the message is one line: what is wrong, what to do."""


def classes_path(path):
    """The ``.classes.json`` path for a ``.rec`` path, a prefix, or the json path itself."""
    path = str(path)
    if path.endswith(".classes.json"):
        return Path(path)
    for suffix in (".rec", ".idx", ".lst"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return Path(path + ".classes.json")


def read_classes(path):
    """Class names in label order from the ``.classes.json`` beside a record file.

    ``path`` may be the ``.rec`` path, the ``OUT_PREFIX`` or the ``.classes.json`` itself.
    Returns ``None`` when there is no such file; raises :class:`DataError` when it is not a
    readable classes file.
    """
    json_path = classes_path(path)
    if not json_path.is_file():
        return None
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{json_path}: not a readable classes file ({err}); re-pack or fix it") from None
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{json_path}: no 'classes' list of names; re-pack or fix the file")
    if len(set(classes)) != len(classes):
        raise DataError(f"{json_path}: class names repeat; every name must appear once")
    return classes


def read_class_list(path):
    """Class names in label order from a file a user gives: a ``.classes.json`` (or any JSON with
    a "classes" list, or a plain JSON list) or a text file with one name per line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"class list {path} does not exist; pass an existing --classes file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read class list {path}: {err}") from None
    if not path.endswith(".json"):
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DataError(f"class list {path} is not valid JSON ({err})") from None
    classes = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(
            f'class list {path} has no "classes" list of names; expected {{"classes": ["name", ...]}}'
        )
    return classes


def write_classes(path, classes, **extra):
    """Write a ``.classes.json`` (schema in this module's docstring) to ``path``."""
    meta = {"format": CLASSES_FORMAT, "version": CLASSES_VERSION, "classes": list(classes)}
    meta["num_classes"] = len(meta["classes"])
    meta.update(extra)
    Path(path).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return path


def _is_hidden(name):
    return name.startswith(".")


def name_problem(name):
    """Why ``name`` (a path as ``os.listdir`` returns it) cannot go into a ``.lst``, or ``None``.

    The ``.lst`` is UTF-8 text, one ``index<TAB>label<TAB>path`` line per image: a name whose
    bytes are not UTF-8 (Python holds them as surrogate escapes) cannot be written, and a tab
    or line break inside a name would split its line.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if "\t" in name or name.splitlines() != [name]:
        return "name contains a tab or line break (a .lst line is tab-separated)"
    return None


def printable_name(name):
    """``name`` for messages and JSON: undecodable bytes and control characters as backslash escapes.

    ``b'caf\\xe9.jpg'`` (listed by Python as ``'caf\\udce9.jpg'``) becomes ``caf\\xe9.jpg``, a
    newline ``\\n``.
    """
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def class_folders(root, layout):
    """(the class folders of `root` sorted, its other entries), hidden ones left out; DataError
    (naming the expected `layout`) for a missing root or one without class folders."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; give the folder that holds one folder per class")
    entries = sorted(e for e in os.listdir(root) if not _is_hidden(e))
    folders = [e for e in entries if (root / e).is_dir()]
    if not folders:
        raise DataError(f"{root}: no class folders; expected {layout}")
    known = set(folders)
    return folders, [e for e in entries if e not in known]


def scan_image_folder(root, classes=None):
    """List the images of an ImageNet-layout folder ``root/<class>/<image>``.

    ``classes``: class names in label order to reuse (e.g. a training set's); every class folder
    must be one of them.  By default the sorted folder names.  Returns ``(classes, items,
    ignored)``: ``items`` is a sorted list of ``(relative_path, label)``, ``ignored`` the relative
    paths of files that are not images (by suffix) or not inside a class folder.  Hidden files and
    folders are skipped.  Raises :class:`DataError` for a missing root, no class folders, a
    folder not in ``classes``, or no images at all.
    """
    root = Path(root)
    folders, ignored = class_folders(root, "the ImageNet layout ROOT/<class>/<image>")
    if classes is None:
        classes = folders
    else:
        classes = list(classes)
        known = set(classes)
        for folder in folders:
            if folder not in known:
                raise DataError(
                    f"{root}: class folder {folder!r} is not in the given class list "
                    f"({len(classes)} classes); pack with the matching --classes file or remove it"
                )
    label_of = {name: label for label, name in enumerate(classes)}
    items = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            rel_dir = Path(dirpath).relative_to(root)
            for name in sorted(filenames):
                if _is_hidden(name):
                    continue
                rel = (rel_dir / name).as_posix()
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    items.append((rel, label_of[folder]))
                else:
                    ignored.append(rel)
    if not items:
        raise DataError(
            f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its {len(folders)} class folders"
        )
    items.sort()
    return classes, items, ignored
