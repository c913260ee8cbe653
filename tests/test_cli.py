"""The ``npmobilenet`` command: its output, and one line ``error: ...`` with status 2 for bad input.

``predict`` over several images reports an image it cannot read on its own ``error:`` line and
still classifies the others (status 1 then; 2 when none could be read or the arguments are
wrong); it takes folders, reads images in batches of at most ``MAX_BATCH``, and shows its
progress on stderr for more than a few images.

Expected predictions come from torchvision, run here on the same shared weights with its own
transforms; nothing compares the command with its own earlier output. Most cases call
``main([...])`` in-process (fast); a few run ``python -m npmobilenet`` in a subprocess to prove
what a user sees on the console. No test touches the network or the real ``~/.cache``: every
test gets an empty ``NPMOBILENET_HOME`` and a registry whose URLs point at a local port where
nothing listens.
"""

import dataclasses
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import require_module

import npmobilenet.prediction  # noqa: F401  (the module of ``npmobilenet.predict``, the function)
from npmobilenet import __version__
from npmobilenet.cli import main
from npmobilenet.models import weights

REPO = Path(__file__).resolve().parents[1]
CHELSEA = "examples/chelsea.jpg"  # relative to REPO: the tests run with REPO as the working dir
SHARED_PHOTO = "images/n02128925_jaguar.JPEG"  # relative to ../shared
predict_module = sys.modules["npmobilenet.prediction"]

# Printed probabilities are percentages with 2 decimals: 1e-4 of agreement, plus half the last digit.
TABLE_TOLERANCE = 1e-4 + 0.5e-4
JSON_TOLERANCE = 1e-4
ROW = re.compile(r"^\s+(\d+)\s+(\d+\.\d\d)%\s+(\d+)\s+(\S.*)$")


def run(*args, home=None, env_weights=None, timeout=120):
    """``python -m npmobilenet ARGS`` from the repository root, with its own cache folder."""
    env = dict(os.environ)
    env.pop("NPMOBILENET_WEIGHTS", None)
    if home is not None:
        env["NPMOBILENET_HOME"] = str(home)
    if env_weights is not None:
        env["NPMOBILENET_WEIGHTS"] = str(env_weights)
    return subprocess.run([sys.executable, "-m", "npmobilenet", *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


def run_main(capsys, *args):
    """``main([...])`` in-process: ``(status, stdout, stderr)``; a usage error's SystemExit counts as its status."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(status, stdout, stderr, *fragments):
    """Status 2, nothing on stdout, one ``error: `` line on stderr holding every fragment, no traceback."""
    assert "Traceback" not in stderr, stderr
    assert status == 2, (status, stdout, stderr)
    assert stdout == "", f"expected nothing on stdout, got {stdout!r}"
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


# --- isolation ----------------------------------------------------------------------------------


@pytest.fixture
def dead_port():
    """A port on 127.0.0.1 that is bound (so nothing else takes it) but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path, dead_port):
    """Every test: no cached model, no $NPMOBILENET_WEIGHTS, an empty cache folder, no reachable download URL."""
    predict_module._load_model.cache_clear()
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("NPMOBILENET_WEIGHTS", raising=False)
    home = tmp_path / "npmobilenet-home"
    home.mkdir()
    monkeypatch.setenv("NPMOBILENET_HOME", str(home))
    offline = {name: dataclasses.replace(spec, url=f"http://127.0.0.1:{dead_port}/{spec.file_name}")
               for name, spec in weights.WEIGHTS.items()}
    monkeypatch.setattr(weights, "WEIGHTS", types.MappingProxyType(offline))
    yield home
    predict_module._load_model.cache_clear()


# --- references from torchvision ---------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_path(shared_dir):
    return shared_dir / "weights" / "mobilenet_v2_imagenet_qat.pth"


@pytest.fixture(scope="module")
def shared_photo(shared_dir):
    return shared_dir / SHARED_PHOTO


@pytest.fixture(scope="module")
def torchvision_module(torch):
    return require_module("torchvision")


@pytest.fixture(scope="module")
def categories(torchvision_module):
    return torchvision_module.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.fixture(scope="module")
def reference(torch, torchvision_module, weights_path, shared_photo):
    """``{image path as given on the command line: torchvision's 1000 probabilities}``."""
    from torchvision import transforms

    model = torchvision_module.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    model.eval()
    preprocess = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    images = {CHELSEA: REPO / CHELSEA, str(shared_photo): shared_photo}
    result = {}
    with torch.no_grad():
        for name, path in images.items():
            with PIL.Image.open(path) as image:
                batch = preprocess(image.convert("RGB")).unsqueeze(0)
            result[name] = torch.softmax(model(batch), dim=1)[0].double().numpy()
    # the facts the brief states about the example photo, from torchvision
    assert list(np.argsort(-result[CHELSEA])[:3]) == [285, 282, 281]
    return result


def assert_matches_reference(rows, expected, categories, k, tolerance):
    """``rows`` = ``[(index, label, probability)]`` best first: torchvision's best class first, its
    label, probabilities within ``tolerance`` of torchvision's, descending, and a genuine top k."""
    assert len(rows) == k, rows
    best = int(np.argmax(expected))
    assert rows[0][0] == best and rows[0][1] == categories[best], (rows[0], best, categories[best])
    for index, label, probability in rows:
        assert label == categories[index], (index, label)
        assert abs(probability - expected[index]) <= tolerance, (index, probability, expected[index])
    probabilities = [p for _, _, p in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert len({index for index, _, _ in rows}) == k
    shown = {index for index, _, _ in rows}
    smallest_shown = min(expected[index] for index in shown)
    largest_hidden = max(p for index, p in enumerate(expected) if index not in shown)
    assert largest_hidden <= smallest_shown + 2 * tolerance, "a class left out is more likely than one shown"


def parse_table(stdout):
    """``{image: [(index, label, probability)]}`` from the table, checking its layout on the way."""
    blocks = stdout.rstrip("\n").split("\n\n")
    tables = {}
    for block in blocks:
        image, header, *rows = block.split("\n")
        assert header.split() == ["rank", "probability", "class", "label"], header
        parsed = []
        for rank, row in enumerate(rows, start=1):
            match = ROW.match(row)
            assert match, f"not a table row: {row!r}"
            assert int(match[1]) == rank
            parsed.append((int(match[3]), match[4], float(match[2]) / 100))
        tables[image] = parsed
    assert len(tables) == len(blocks), "an image appears twice"
    return tables


# --- existing checks: demo, help, version, usage errors -----------------------------------------


def test_demo_trains_and_passes_its_gradient_check():
    result = run("demo", "--steps", "10", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    losses = [float(line.split("loss")[1]) for line in result.stdout.splitlines() if "loss" in line and "step" in line]
    assert len(losses) == 3  # steps 1, 5 and 10
    assert losses[-1] < losses[0]
    assert "backward is correct" in result.stdout
    assert "Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=8, bias=False)" in result.stdout


def test_help_and_version():
    for args in (["--help"], ["demo", "--help"]):
        result = run(*args)
        assert result.returncode == 0 and "usage: npmobilenet" in result.stdout
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"npmobilenet {__version__}"


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "required: COMMAND"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["demo", "--steps", "0"], "expected a positive integer, got '0'"),
        (["demo", "--steps", "many"], "expected a positive integer, got 'many'"),
        (["demo", "--seed", "1.5"], "invalid int value: '1.5'"),
        (["demo", "--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_bad_arguments_give_one_error_line_and_status_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# --- help of every command ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--help"], ["usage: npmobilenet", "predict", "convert", "demo", "explain", "--version"]),
        (["predict", "--help"], ["usage: npmobilenet predict", "IMAGE", "--topk", "--weights", "--json",
                                 "NPMOBILENET_WEIGHTS", "IMAGENET1K_V1", "folders"]),
        (["explain", "--help"], ["usage: npmobilenet explain", "IMAGE", "--method", "gradcam++", "occlusion",
                                 "--target", "--layer", "features.18", "--out", "--weights"]),
        (["convert", "--help"], ["usage: npmobilenet convert", "IN", "OUT", ".npz", ".pth"]),
        (["demo", "--help"], ["usage: npmobilenet demo", "--steps", "--seed"]),
    ],
)
def test_help_of_each_command(capsys, args, mentions):
    status, stdout, stderr = run_main(capsys, *args)
    assert status == 0 and stderr == ""
    for text in mentions:
        assert text in stdout, f"{text!r} not in the help of {args}"


# --- predict: the table and JSON ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["--weights", "NPMOBILENET_WEIGHTS"])
def test_predict_table_agrees_with_torchvision(capsys, monkeypatch, how, weights_path, shared_photo, reference, categories):
    args = ["predict", CHELSEA, shared_photo, "--topk", "4"]
    if how == "--weights":
        args += ["--weights", weights_path]
    else:
        monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(weights_path))
    status, stdout, stderr = run_main(capsys, *args)
    assert status == 0 and stderr == "", stderr
    tables = parse_table(stdout)
    assert list(tables) == [CHELSEA, str(shared_photo)]  # each path as given, in order
    for image, rows in tables.items():
        assert_matches_reference(rows, reference[image], categories, 4, TABLE_TOLERANCE)
    assert tables[CHELSEA][0][:2] == (285, "Egyptian cat")


@pytest.mark.parametrize("k", [1, 7])
def test_predict_table_has_k_rows(capsys, k, weights_path, shared_photo, reference, categories):
    status, stdout, stderr = run_main(capsys, "predict", shared_photo, CHELSEA, "--topk", k, "--weights", weights_path)
    assert status == 0 and stderr == ""
    tables = parse_table(stdout)
    assert list(tables) == [str(shared_photo), CHELSEA]
    for image, rows in tables.items():
        assert_matches_reference(rows, reference[image], categories, k, TABLE_TOLERANCE)


@pytest.mark.parametrize("how", ["--weights", "NPMOBILENET_WEIGHTS"])
def test_predict_table_in_a_real_console(tmp_path, how, weights_path, shared_photo, reference, categories):
    args = ["predict", CHELSEA, shared_photo, "--topk", "3"]
    home = tmp_path / "home"
    if how == "--weights":
        result = run(*args, "--weights", weights_path, home=home)
    else:
        result = run(*args, home=home, env_weights=weights_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    tables = parse_table(result.stdout)
    assert list(tables) == [CHELSEA, str(shared_photo)]
    for image, rows in tables.items():
        assert_matches_reference(rows, reference[image], categories, 3, TABLE_TOLERANCE)
    assert not home.exists() or os.listdir(home) == [], "a local weights file needs no cache"


def test_predict_json_agrees_with_torchvision(capsys, weights_path, shared_photo, reference, categories):
    status, stdout, stderr = run_main(capsys, "predict", CHELSEA, shared_photo, "--json", "--topk", "5",
                                      "--weights", weights_path)
    assert status == 0 and stderr == ""
    document = json.loads(stdout)
    assert isinstance(document, list) and len(document) == 2
    assert [entry["image"] for entry in document] == [CHELSEA, str(shared_photo)]
    for entry in document:
        assert set(entry) == {"image", "predictions"}
        predictions = entry["predictions"]
        for p in predictions:
            assert set(p) == {"index", "label", "probability"}
            assert type(p["index"]) is int and isinstance(p["label"], str) and type(p["probability"]) is float
        rows = [(p["index"], p["label"], p["probability"]) for p in predictions]
        assert_matches_reference(rows, reference[entry["image"]], categories, 5, JSON_TOLERANCE)
    assert [p["index"] for p in document[0]["predictions"][:3]] == [285, 282, 281]


def test_predict_json_with_weights_from_the_environment(capsys, monkeypatch, weights_path, reference, categories):
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(weights_path))
    status, stdout, stderr = run_main(capsys, "predict", "--json", CHELSEA, "--topk", "2")
    assert status == 0 and stderr == ""
    (entry,) = json.loads(stdout)
    rows = [(p["index"], p["label"], p["probability"]) for p in entry["predictions"]]
    assert_matches_reference(rows, reference[CHELSEA], categories, 2, JSON_TOLERANCE)


# --- predict: bad images ------------------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "no-such-photo.jpg"


def _text_as_jpeg(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("<html><body>404 Not Found</body></html>\n")
    return path


def _truncated_jpeg(tmp_path):
    data = (REPO / CHELSEA).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def _empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    return path


def _directory(tmp_path):
    path = tmp_path / "folder.jpg"
    path.mkdir()
    return path


BAD_IMAGES = {
    "missing": (_missing, "no such file"),
    "text named photo.jpg": (_text_as_jpeg, "not an image"),
    "truncated jpeg": (_truncated_jpeg, "truncated"),
    "empty file": (_empty_file, "empty"),
    "directory": (_directory, "directory"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_alone_gives_one_error_line_and_no_output(capsys, tmp_path, weights_path, case):
    make, words = BAD_IMAGES[case]
    bad = make(tmp_path)
    for extra in ([], ["--json"]):
        status, stdout, stderr = run_main(capsys, "predict", bad, "--weights", weights_path, *extra)
        assert_one_error_line(status, stdout, stderr, bad, words)


def assert_good_ones_predicted(status, stdout, stderr, good, bad, words, json_output=False):
    """Status 1; the good images' results on stdout, in order; one ``error:`` line per bad image, naming it."""
    assert "Traceback" not in stderr
    assert status == 1, (status, stdout, stderr)
    if json_output:
        assert [entry["image"] for entry in json.loads(stdout)] == [str(image) for image in good]
    else:
        assert list(parse_table(stdout)) == [str(image) for image in good]
    lines = stderr.splitlines()
    assert len(lines) == len(bad) and all(line.startswith("error: ") for line in lines), stderr
    for line, image in zip(lines, bad):
        assert str(image) in line and words in line, line


# Changed with the "many images" issue: a bad image among good ones used to stop the whole run
# (status 2, nothing on stdout); now it gets its own error line and the others are classified.
@pytest.mark.parametrize("case", [case for case in BAD_IMAGES if case != "directory"])
def test_bad_image_among_good_ones_is_reported_and_the_others_predicted(capsys, tmp_path, weights_path, shared_photo,
                                                                        case):
    make, words = BAD_IMAGES[case]
    bad = make(tmp_path)
    for extra in ([], ["--json"]):
        status, stdout, stderr = run_main(capsys, "predict", CHELSEA, bad, shared_photo, "--weights", weights_path, *extra)
        assert_good_ones_predicted(status, stdout, stderr, [CHELSEA, shared_photo], [bad], words, bool(extra))


def test_a_folder_without_images_is_a_wrong_argument(capsys, tmp_path, weights_path):
    """An empty folder (here one named folder.jpg) among good images: status 2 before any work, nothing on stdout."""
    bad = _directory(tmp_path)
    (bad / "notes.txt").write_text("no photos here\n")
    for images in ([bad], [CHELSEA, bad]):
        status, stdout, stderr = run_main(capsys, "predict", *images, "--weights", weights_path)
        assert_one_error_line(status, stdout, stderr, bad, "directory", "no image files", ".jpeg")


def _small_png(tmp_path, shared_photo):
    """A good 20 x 20 photo, far below any pixel limit."""
    with PIL.Image.open(shared_photo) as image:
        small = image.convert("RGB").resize((20, 20))
    path = tmp_path / "small.png"
    small.save(path)
    return path


# chelsea.jpg is 451 x 300 = 135,300 pixels: over 2 * 60,000 (Pillow raises) and over 100,000 (Pillow
# only warns). Both limits stay above 224 * 224 = 50,176, the crop every image goes through.
@pytest.mark.parametrize("limit", [60_000, 100_000], ids=["over-twice-the-limit", "over-the-limit"])
@pytest.mark.parametrize("after_good_image", [False, True], ids=["alone", "after-a-good-image"])
def test_decompression_bomb_is_refused(capsys, monkeypatch, tmp_path, weights_path, shared_photo, limit, after_good_image):
    with PIL.Image.open(REPO / CHELSEA) as image:
        assert limit < image.width * image.height
    good = _small_png(tmp_path, shared_photo)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", limit)
    images = [good, CHELSEA] if after_good_image else [CHELSEA]
    status, stdout, stderr = run_main(capsys, "predict", *images, "--weights", weights_path)
    if after_good_image:  # changed with the "many images" issue: the good image is still classified
        assert_good_ones_predicted(status, stdout, stderr, [good], [CHELSEA], "MAX_IMAGE_PIXELS")
    else:
        assert_one_error_line(status, stdout, stderr, CHELSEA, "MAX_IMAGE_PIXELS")


def test_small_image_under_a_small_pixel_limit(capsys, monkeypatch, tmp_path, weights_path, shared_photo):
    good = _small_png(tmp_path, shared_photo)  # 400 pixels: within the limit
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    status, stdout, stderr = run_main(capsys, "predict", good, "--weights", weights_path, "--topk", "1")
    assert status == 0 and stderr == "", stderr
    assert parse_table(stdout).keys() == {str(good)}


def test_missing_image_in_a_real_console(tmp_path, weights_path):
    missing = tmp_path / "no-such-photo.jpg"
    result = run("predict", missing, "--weights", weights_path, home=tmp_path / "home")
    assert_one_error_line(result.returncode, result.stdout, result.stderr, missing, "no such file")
    # changed with the "many images" issue: after a good image, that one is still classified (status 1)
    result = run("predict", CHELSEA, missing, "--weights", weights_path, home=tmp_path / "home")
    assert_good_ones_predicted(result.returncode, result.stdout, result.stderr, [CHELSEA], [missing], "no such file")


# --- predict: folders, many images, bounded batches, progress -----------------------------------


@pytest.fixture
def photo_folder(tmp_path, shared_dir):
    """A folder of 5 photos of ../shared (symbolic links), a text file and a subfolder; names not in sorted order."""
    folder = tmp_path / "photos"
    folder.mkdir()
    sources = sorted((shared_dir / "images").glob("*.JPEG"))[:5]
    for number, source in zip([3, 1, 4, 0, 2], sources):
        (folder / f"{number}-{source.name}").symlink_to(source)
    (folder / "labels.txt").write_text("not an image\n")
    (folder / "inner").mkdir()
    return folder


def test_a_folder_is_its_image_files_sorted(capsys, photo_folder, weights_path):
    status, stdout, stderr = run_main(capsys, "predict", photo_folder, CHELSEA, "--topk", "2", "--weights", weights_path)
    assert status == 0 and stderr == "", stderr
    names = sorted(path.name for path in photo_folder.glob("*.JPEG"))
    assert list(parse_table(stdout)) == [os.path.join(str(photo_folder), name) for name in names] + [CHELSEA]
    status, stdout, _ = run_main(capsys, "predict", photo_folder, "--topk", "1", "--weights", weights_path, "--json")
    assert status == 0 and [entry["image"] for entry in json.loads(stdout)] == [
        os.path.join(str(photo_folder), name) for name in names]


def test_images_are_read_and_classified_in_bounded_batches(capsys, monkeypatch, photo_folder, tmp_path, weights_path):
    """At most MAX_BATCH images are read before a forward pass; each table is printed when its batch is done."""
    monkeypatch.setattr(predict_module, "MAX_BATCH", 2)
    events = []
    original_preprocess, original_forward = predict_module.preprocess, type(predict_module.load_model(weights_path)).forward
    monkeypatch.setattr(predict_module, "preprocess", lambda image, **k: events.append("read") or original_preprocess(image, **k))
    monkeypatch.setattr(type(predict_module.load_model(weights_path)), "forward",
                        lambda self, x, **k: events.append(len(x)) or original_forward(self, x, **k))
    bad = _text_as_jpeg(tmp_path)
    status, stdout, stderr = run_main(capsys, "predict", photo_folder, bad, CHELSEA, "--topk", "1", "--weights", weights_path)
    assert events == ["read", "read", 2, "read", "read", 2, "read", "read", 1, "read", 1]
    assert status == 1 and len(parse_table(stdout)) == 6 and stderr.count("error: ") == 1


def test_many_images_show_progress_on_stderr_only(capsys, monkeypatch, photo_folder, weights_path):
    monkeypatch.setattr(predict_module, "MAX_BATCH", 4)
    images = [photo_folder, CHELSEA, CHELSEA, CHELSEA, CHELSEA]  # 9 images: more than a few
    status, stdout, stderr = run_main(capsys, "predict", *images, "--topk", "1", "--weights", weights_path)
    assert status == 0
    assert stdout.count("rank  probability") == 9 and "predicted" not in stdout
    assert [line.split(",")[0] for line in stderr.splitlines()] == ["predicted 4/9 images", "predicted 8/9 images",
                                                                    "predicted 9/9 images"]
    status, _, stderr = run_main(capsys, "predict", *images[:2], "--topk", "1", "--weights", weights_path)
    assert status == 0 and stderr.count("predicted") == 0  # 6 images: no progress display off a terminal


def test_progress_on_a_terminal_is_one_line_redrawn(capsys, monkeypatch, weights_path, tmp_path, shared_photo):
    """On a terminal (here a fake one): redrawn with a carriage return, wiped before an error line."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("TERM", "xterm")
    bad = _missing(tmp_path)
    status, stdout, _ = run_main(capsys, "predict", CHELSEA, bad, shared_photo, "--topk", "1", "--weights", weights_path)
    assert status == 1 and list(parse_table(stdout)) == [CHELSEA, str(shared_photo)]
    text = terminal.getvalue()
    assert "\r\x1b[Kpredicted 1/3 images" in text and "\r\x1b[Kerror: " in text and str(bad) in text
    assert text.endswith("\n") and "predicted 3/3 images" in text.splitlines()[-1]
    assert text.count("\n") == 2  # the error line and the last progress line


def test_every_image_bad_is_status_2_with_one_line_each(capsys, tmp_path, weights_path):
    bad = [_missing(tmp_path), _text_as_jpeg(tmp_path)]
    status, stdout, stderr = run_main(capsys, "predict", *bad, "--weights", weights_path, "--json")
    assert status == 2 and stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 2 and str(bad[0]) in lines[0] and str(bad[1]) in lines[1]


# --- predict: bad weights -----------------------------------------------------------------------


class Exploit:
    """Unpickling this runs ``touch <marker>``: a checkpoint must be refused before that happens."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + str(self.marker),))


@pytest.fixture(scope="module")
def torchvision_state_dict(torch, torchvision_module):
    return torchvision_module.models.mobilenet_v2().state_dict()


def _missing_key(torch, state_dict, path):
    broken = dict(state_dict)
    del broken["features.5.conv.1.0.weight"]
    torch.save(broken, path)
    return "features.5.conv.1.0.weight"


def _transposed(torch, state_dict, path):
    broken = dict(state_dict)
    broken["classifier.1.weight"] = broken["classifier.1.weight"].t().contiguous()
    torch.save(broken, path)
    return "classifier.1.weight"


def _resized(torch, state_dict, path):
    broken = dict(state_dict)
    broken["features.0.0.weight"] = broken["features.0.0.weight"][:16].clone()
    torch.save(broken, path)
    return "features.0.0.weight"


NOT_FITTING = {"missing key": _missing_key, "transposed tensor": _transposed, "resized tensor": _resized}


@pytest.mark.parametrize("via_env", [False, True], ids=["--weights", "NPMOBILENET_WEIGHTS"])
@pytest.mark.parametrize("case", list(NOT_FITTING))
def test_checkpoint_that_does_not_fit(capsys, monkeypatch, tmp_path, torch, torchvision_state_dict, case, via_env):
    path = tmp_path / "broken.pth"
    key = NOT_FITTING[case](torch, torchvision_state_dict, path)
    if via_env:
        monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(path))
        status, stdout, stderr = run_main(capsys, "predict", CHELSEA)
    else:
        status, stdout, stderr = run_main(capsys, "predict", CHELSEA, "--weights", path)
    assert_one_error_line(status, stdout, stderr, key)


@pytest.mark.parametrize("case", list(NOT_FITTING))
def test_checkpoint_that_does_not_fit_names_the_file(capsys, tmp_path, torch, torchvision_state_dict, case):
    path = tmp_path / "broken.pth"
    NOT_FITTING[case](torch, torchvision_state_dict, path)
    status, stdout, stderr = run_main(capsys, "predict", CHELSEA, "--weights", path)
    assert_one_error_line(status, stdout, stderr, path)


def _unsafe_torch_save(path, marker):
    require_module("torch").save(Exploit(marker), path)


def _unsafe_torch_save_wrapped(path, marker):
    require_module("torch").save({"state_dict": Exploit(marker)}, path)


def _plain_pickle(protocol):
    def write(path, marker):
        with open(path, "wb") as file:
            pickle.dump(Exploit(marker), file, protocol=protocol)
    return write


UNSAFE = {
    "torch.save": _unsafe_torch_save,
    "torch.save, wrapped": _unsafe_torch_save_wrapped,
    "pickle protocol 0": _plain_pickle(0),
    "pickle protocol 2": _plain_pickle(2),
    "pickle default protocol": _plain_pickle(pickle.DEFAULT_PROTOCOL),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_checkpoint_is_refused_without_running_it(capsys, tmp_path, case):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    UNSAFE[case](path, marker)
    status, stdout, stderr = run_main(capsys, "predict", CHELSEA, "--weights", path)
    assert_one_error_line(status, stdout, stderr, path)
    assert not marker.exists(), "the checkpoint's code ran"


def test_unsafe_checkpoint_in_a_real_console(tmp_path, torch):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(Exploit(marker), path)
    for result in (run("predict", CHELSEA, "--weights", path, home=tmp_path / "home"),
                   run("predict", CHELSEA, home=tmp_path / "home", env_weights=path)):
        assert_one_error_line(result.returncode, result.stdout, result.stderr, path, "allow-list")
        assert not marker.exists(), "the checkpoint's code ran"


@pytest.mark.parametrize("via_env", [False, True], ids=["--weights", "NPMOBILENET_WEIGHTS"])
def test_unknown_weights_name_lists_the_known_ones(capsys, monkeypatch, isolated, via_env):
    if via_env:
        monkeypatch.setenv("NPMOBILENET_WEIGHTS", "IMAGENET1K_V9")
        status, stdout, stderr = run_main(capsys, "predict", CHELSEA)
    else:
        status, stdout, stderr = run_main(capsys, "predict", CHELSEA, "--weights", "IMAGENET1K_V9")
    assert_one_error_line(status, stdout, stderr, "IMAGENET1K_V9", "IMAGENET1K_V1", "IMAGENET1K_V2")
    assert os.listdir(isolated) == []


def test_weights_that_cannot_be_downloaded(capsys, isolated, dead_port):
    for args in ([], ["--weights", "IMAGENET1K_V1"], ["--weights", "IMAGENET1K_V2"], ["--weights", "DEFAULT"]):
        predict_module._load_model.cache_clear()
        status, stdout, stderr = run_main(capsys, "predict", CHELSEA, *args)
        spec = weights.get_weights_spec(args[1] if args else "DEFAULT")
        url = f"http://127.0.0.1:{dead_port}/{spec.file_name}"
        assert spec.url == url  # the registry the command sees is the offline one
        assert_one_error_line(status, stdout, stderr, url, "--weights", "NPMOBILENET_WEIGHTS")
        assert os.listdir(isolated) == [], "a failed download left files in the cache"


# --- predict: usage errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", CHELSEA, "--topk", "0"], "expected a positive integer, got '0'"),
        (["predict", CHELSEA, "--topk", "-3"], "expected a positive integer, got '-3'"),
        (["predict", CHELSEA, "--topk", "x"], "expected a positive integer, got 'x'"),
        (["predict"], "IMAGE"),
        (["predict", CHELSEA, "--bogus"], "unrecognized arguments: --bogus"),
        (["--bogus", "demo"], "unrecognized arguments: --bogus"),
        ([], "required: COMMAND"),
        (["convert", "only-one.pth"], "OUT"),
    ],
)
def test_usage_errors_in_process(capsys, isolated, args, message):
    status, stdout, stderr = run_main(capsys, *args)
    assert_one_error_line(status, stdout, stderr, message)
    assert os.listdir(isolated) == []


def test_topk_above_the_number_of_classes(capsys, weights_path):
    status, stdout, stderr = run_main(capsys, "predict", CHELSEA, "--topk", "1001", "--weights", weights_path)
    assert_one_error_line(status, stdout, stderr, "1001", "1000")


# --- predict loads its weights once -------------------------------------------------------------


def test_weights_are_loaded_once_per_process(capsys, monkeypatch, tmp_path, weights_path):
    calls = []
    original = predict_module.resolve_weights

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(predict_module, "resolve_weights", counting)
    predict_module._load_model.cache_clear()
    for args in (["--weights", weights_path], ["--weights", weights_path, "--json"]):
        status, _, stderr = run_main(capsys, "predict", CHELSEA, "--topk", "1", *args)
        assert status == 0, stderr
    assert len(calls) == 1

    # the same file by a relative path is the same weights
    relative = os.path.relpath(weights_path, REPO)
    assert run_main(capsys, "predict", CHELSEA, "--topk", "1", "--weights", relative)[0] == 0
    assert len(calls) == 1

    # by the environment variable: once for it, and again only when it changes
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(weights_path))
    for _ in range(2):
        assert run_main(capsys, "predict", CHELSEA, "--topk", "1")[0] == 0
    assert len(calls) == 2
    copy = tmp_path / "copy.npz"
    assert run_main(capsys, "convert", weights_path, copy)[0] == 0
    monkeypatch.setenv("NPMOBILENET_WEIGHTS", str(copy))
    assert run_main(capsys, "predict", CHELSEA, "--topk", "1")[0] == 0
    assert len(calls) == 3


# --- convert ------------------------------------------------------------------------------------


def test_convert_pth_to_npz_and_back(capsys, torch, tmp_path, weights_path):
    expected = torch.load(weights_path, weights_only=True)
    assert len(expected) == 314

    npz = tmp_path / "weights.npz"
    status, stdout, stderr = run_main(capsys, "convert", weights_path, npz)
    assert status == 0 and stderr == ""
    assert "314" in stdout and str(npz) in stdout
    with np.load(npz, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(expected)
        for name, tensor in expected.items():
            array = archive[name]
            assert array.dtype == tensor.numpy().dtype and array.shape == tuple(tensor.shape), name
            assert np.array_equal(array, tensor.numpy()), name

    for suffix in (".pth", ".pt"):
        back = tmp_path / f"back{suffix}"
        status, stdout, stderr = run_main(capsys, "convert", npz, back)
        assert status == 0 and stderr == ""
        loaded = torch.load(back, weights_only=True)
        assert list(loaded) == list(expected)
        for name, tensor in expected.items():
            assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
            assert torch.equal(loaded[name], tensor), name
    assert sorted(os.listdir(tmp_path)) == sorted(["npmobilenet-home", "weights.npz", "back.pth", "back.pt"])


def _convert_missing_in(tmp_path, out_dir):
    return tmp_path / "no-such.pth", out_dir / "out.npz", "does not exist"


def _convert_text_in(tmp_path, out_dir):
    source = tmp_path / "notes.pth"
    source.write_text("these are not weights\n")
    return source, out_dir / "out.npz", "expected a PyTorch checkpoint"


def _convert_directory_in(tmp_path, out_dir):
    source = tmp_path / "folder.pth"
    source.mkdir()
    return source, out_dir / "out.npz", "directory"


def _convert_unsafe_in(tmp_path, out_dir):
    source = tmp_path / "evil.pth"
    _plain_pickle(2)(source, tmp_path / "pwned")
    return source, out_dir / "out.npz", "allow-list"


def _convert_unsafe_torch_in(tmp_path, out_dir):
    source = tmp_path / "evil-torch.pth"
    _unsafe_torch_save(source, tmp_path / "pwned")
    return source, out_dir / "out.pth", "allow-list"


CONVERT_BAD_INPUT = {
    "missing IN": _convert_missing_in,
    "IN is text": _convert_text_in,
    "IN is a directory": _convert_directory_in,
    "IN is an unsafe pickle": _convert_unsafe_in,
    "IN is an unsafe torch.save": _convert_unsafe_torch_in,
}


@pytest.mark.parametrize("old_out", [False, True], ids=["no-old-OUT", "over-an-old-OUT"])
@pytest.mark.parametrize("case", list(CONVERT_BAD_INPUT))
def test_convert_bad_input(capsys, tmp_path, case, old_out):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    source, target, words = CONVERT_BAD_INPUT[case](tmp_path, out_dir)
    old = b"PK\x05\x06" + bytes(18)  # an empty zip: the earlier OUT, which must survive
    if old_out:
        target.write_bytes(old)
    status, stdout, stderr = run_main(capsys, "convert", source, target)
    assert_one_error_line(status, stdout, stderr, source, words)
    assert not (tmp_path / "pwned").exists(), "the checkpoint's code ran"
    assert os.listdir(out_dir) == ([target.name] if old_out else []), "a temporary or partial file was left"
    if old_out:
        assert target.read_bytes() == old


@pytest.mark.parametrize("old_out", [False, True], ids=["no-old-OUT", "over-an-old-OUT"])
def test_convert_to_a_bad_suffix(capsys, tmp_path, weights_path, old_out):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "weights.txt"
    if old_out:
        target.write_text("keep me\n")
    status, stdout, stderr = run_main(capsys, "convert", weights_path, target)
    assert_one_error_line(status, stdout, stderr, target, ".npz", ".pth")
    assert os.listdir(out_dir) == (["weights.txt"] if old_out else [])
    if old_out:
        assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("suffix", [".npz", ".pth"])
def test_convert_into_a_missing_folder(capsys, tmp_path, weights_path, suffix):
    target = tmp_path / "no-such-folder" / f"weights{suffix}"
    status, stdout, stderr = run_main(capsys, "convert", weights_path, target)
    assert_one_error_line(status, stdout, stderr, target.parent)
    assert not target.parent.exists()
    assert sorted(os.listdir(tmp_path)) == ["npmobilenet-home"]


def test_convert_onto_a_directory(capsys, tmp_path, weights_path):
    out_dir = tmp_path / "out"
    target = out_dir / "weights.npz"
    target.mkdir(parents=True)
    status, stdout, stderr = run_main(capsys, "convert", weights_path, target)
    assert_one_error_line(status, stdout, stderr, target)
    assert os.listdir(out_dir) == ["weights.npz"] and target.is_dir() and os.listdir(target) == []


def test_convert_onto_a_directory_message_names_no_temporary_file(capsys, tmp_path, weights_path):
    target = tmp_path / "weights.npz"
    target.mkdir()
    status, stdout, stderr = run_main(capsys, "convert", weights_path, target)
    line = assert_one_error_line(status, stdout, stderr, target)
    assert ".tmp" not in line and "Errno" not in line


def test_convert_unsafe_pickle_in_a_real_console(tmp_path):
    marker = tmp_path / "pwned"
    source = tmp_path / "evil.pth"
    _plain_pickle(2)(source, marker)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("convert", source, out_dir / "out.npz", home=tmp_path / "home")
    assert_one_error_line(result.returncode, result.stdout, result.stderr, source, "allow-list")
    assert not marker.exists(), "the checkpoint's code ran"
    assert os.listdir(out_dir) == []
