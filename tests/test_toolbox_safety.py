"""``lrpnb toolbox`` with hostile files: symbolic links that lead results or
reads out of their folders, outputs that are inputs, and a second run into
the same results folder. Every file is made here, inside tmp_path."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import lrpnb
import lrpnb.batch
from conftest import ROOT
from lrpnb.failure import Failure
from lrpnb.toolbox_mode import LOCK_NAME, explain_filelist, read_rawhm
from lrpnb.writers import WriterLock
from test_cli_batch import TINY, toolbox_setup, write_digit_images


def _job(tmp_path, outpath="out"):
    """A config, a toolbox .txt model and images in tmp_path/job; a folder
    tmp_path/elsewhere outside it, empty. (config, image root, elsewhere)."""
    job = tmp_path / "job"
    job.mkdir()
    lrpnb.save(lrpnb.load(TINY), job / "model.txt")
    root = toolbox_setup(job, job / "model.txt", 8)
    config = job / "config.txt"
    config.write_text(config.read_text().replace("standalone_outpath\nout\n", f"standalone_outpath\n{outpath}\n"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return config, root, elsewhere


def _run(config, lines, prefix):
    (config.parent / "files.txt").write_text("".join(f"{line}\n" for line in lines))
    return explain_filelist(str(config), str(config.parent / "files.txt"), str(prefix))


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("outpath, link", [("out", "out"), ("a/out", "a")])
def test_a_symlinked_outpath_or_parent_leading_out_is_refused(tmp_path, outpath, link):
    config, root, elsewhere = _job(tmp_path, outpath)
    os.symlink(elsewhere, config.parent / link, target_is_directory=True)
    with pytest.raises(ValueError) as refused:
        _run(config, ["sub/img0.png -1"], root)
    message = str(refused.value)
    assert message.startswith(f"{config}:") and f"standalone_outpath {outpath!r} leads to " in message
    assert str(elsewhere.resolve() / ("out" if link == "a" else "")).rstrip(os.sep) in message
    assert "outside the config file's folder" in message
    assert _tree(elsewhere) == []


def test_a_symlinked_outpath_leading_inside_the_config_folder_is_followed(tmp_path):
    config, root, _ = _job(tmp_path)
    (config.parent / "results").mkdir()
    os.symlink(config.parent / "results", config.parent / "out", target_is_directory=True)
    assert _run(config, ["sub/img0.png -1"], root) == 1
    assert (config.parent / "results" / "sub" / "img0_rawhm.txt").is_file()


def test_links_below_the_outpath_may_not_lead_out_of_it(tmp_path, capsys):
    config, root, elsewhere = _job(tmp_path)
    out = config.parent / "out"
    (out / "inside").mkdir(parents=True)
    os.symlink(elsewhere, out / "sub", target_is_directory=True)  # a folder leading out
    write_digit_images(root, 2)  # img0.png, img1.png right below the root
    victim = elsewhere / "victim.txt"
    victim.write_bytes(b"not the toolbox's\n")
    os.symlink(victim, out / "img0_rawhm.txt")  # a file leading out
    os.symlink(out / "inside", out / "linked", target_is_directory=True)  # a folder leading inside
    (root / "linked").mkdir()
    write_digit_images(root / "linked", 1)
    with pytest.raises(Failure, match="2 of 3 entries failed"):
        _run(config, ["sub/img0.png -1", "img0.png -1", "linked/img0.png -1"], root)
    err = capsys.readouterr().err
    assert f"files.txt:1: {config}: {out / 'sub'} leads to {elsewhere.resolve()} through a symbolic link" in err
    assert f"files.txt:2: {config}: {out / 'img0_rawhm.txt'} leads to {victim.resolve()}" in err
    assert "outside " + str(out.resolve()) in err
    assert victim.read_bytes() == b"not the toolbox's\n" and _tree(elsewhere) == ["victim.txt"]
    assert not (out / "img0_heatmap.png").exists()  # refused before any file of the entry
    assert (out / "inside" / "img0_rawhm.txt").is_file()


def test_list_entries_may_not_lead_out_of_the_prefix(tmp_path, capsys):
    config, root, elsewhere = _job(tmp_path)
    write_digit_images(elsewhere, 1)
    os.symlink(elsewhere / "img0.png", root / "sub" / "link.png")
    os.symlink(elsewhere, root / "folder", target_is_directory=True)
    os.symlink(root / "sub" / "img1.png", root / "sub" / "alias.png")  # leads inside: read
    with pytest.raises(Failure, match="2 of 3 entries failed"):
        _run(config, ["sub/link.png -1", "folder/img0.png -1", "sub/alias.png -1"], root)
    err = capsys.readouterr().err
    real = elsewhere.resolve() / "img0.png"
    assert (f"files.txt:1: {root / 'sub' / 'link.png'} leads to {real} through a symbolic link, "
            f"outside the path prefix {root.resolve()}") in err
    assert f"files.txt:2: {root / 'folder' / 'img0.png'} leads to {real}" in err
    assert _tree(config.parent / "out") == ["sub", "sub/alias_as_inputted_into_the_dnn.png",
                                            "sub/alias_heatmap.png", "sub/alias_rawhm.txt",
                                            "sub/alias_toptenscores.txt"]


@pytest.mark.parametrize("victim", ["image", "class image", "model", "file list", "config"])
def test_an_output_that_is_an_input_is_refused(tmp_path, capsys, victim):
    """Results go next to the images (standalone_outpath: the image root);
    each case puts one input where an output of img0.png would go."""
    config, root, _ = _job(tmp_path, outpath="images")
    text, outpath = config.read_text(), config.parent / "images"
    lines, files = ["sub/img0.png -1"], config.parent / "files.txt"
    target = root / "sub" / {"image": "img0_heatmap.png", "class image": "img0_class0_heatmap.png",
                             "model": "img0_toptenscores.txt", "file list": "img0_rawhm.txt",
                             "config": "img0_toptenscores.txt"}[victim]
    if victim in ("image", "class image"):
        Image.open(root / "sub" / "img1.png").save(target)
        lines = [f"sub/img0.png {-2 if victim == 'class image' else -1}", f"sub/{target.name} -1"]
    elif victim == "model":
        os.replace(config.parent / "model.txt", target)
        text = text.replace(str(config.parent / "model.txt"), str(target))
    elif victim == "file list":
        files = target
    elif victim == "config":  # in the images' folder, writing into it
        text = text.replace("standalone_outpath\nimages\n", "standalone_outpath\n.\n")
        text = text.replace(f"standalone_rootpath\n{root}\n", "standalone_rootpath\n.\n")
        config.unlink()
        config, outpath = target, target.parent
    config.write_text(text)
    files.write_text("".join(f"{line}\n" for line in lines))
    before = target.read_bytes()
    with pytest.raises(Failure, match=f"1 of {len(lines)} entries failed"):
        explain_filelist(str(config), str(files), str(root))
    err = capsys.readouterr().err
    assert f":1: {config}: standalone_outpath {outpath}: " in err
    assert f"{target} is an input of this command" in err
    assert target.read_bytes() == before
    assert not (root / "sub" / "img0_as_inputted_into_the_dnn.png").exists()  # nothing of img0 written
    if len(lines) == 2:  # the other image is explained
        assert (root / "sub" / (target.stem + "_rawhm.txt")).is_file()


def test_the_lock_file_is_no_input_and_no_link(tmp_path):
    config, root, _ = _job(tmp_path)
    (config.parent / "out").mkdir()
    lock = config.parent / "out" / (LOCK_NAME + ".lock")
    model = config.parent / "model.txt"
    before = model.read_bytes()
    os.link(model, lock)  # written in place, it would truncate the model
    with pytest.raises(ValueError, match=re.escape(f"{config}: {lock}, the lock file of standalone_outpath, is a link")):
        _run(config, ["sub/img0.png -1"], root)
    os.remove(lock)
    os.symlink(model, lock)
    with pytest.raises(ValueError, match="is a link or not a file"):
        _run(config, ["sub/img0.png -1"], root)
    assert model.read_bytes() == before and _tree(config.parent / "out") == [lock.name]


def test_a_second_run_into_the_same_outpath_is_refused(tmp_path):
    config, root, _ = _job(tmp_path)
    out = config.parent / "out"
    out.mkdir()
    # the first run, holding the lock as lrpnb toolbox does, in another process
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from lrpnb.writers import WriterLock; "
                               f"lock = WriterLock({str(out / LOCK_NAME)!r}); print('held', flush=True); "
                               "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))))
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ValueError) as refused:
            _run(config, ["sub/img0.png -1"], root)
        message = str(refused.value)
        assert message.startswith(f"{config}: standalone_outpath {out}: ")
        assert f"another lrpnb run (pid {holder.pid}) is writing it" in message
        assert _tree(out) == [LOCK_NAME + ".lock"]
    finally:
        holder.communicate("", timeout=60)
    # once the first run has ended, the same run goes ahead; the lock is not left behind
    assert _run(config, ["sub/img0.png -1"], root) == 1
    assert (out / "sub" / "img0_rawhm.txt").is_file() and not (out / (LOCK_NAME + ".lock")).exists()


def test_the_normal_run_writes_and_overwrites_its_results(tmp_path):
    config, root, _ = _job(tmp_path)
    out = config.parent / "out" / "sub"
    out.mkdir(parents=True)
    (out / "img0_rawhm.txt").write_text("an earlier result\n")
    assert _run(config, ["sub/img0.png -1", "sub/img1.png -2"], root) == 2
    net = lrpnb.load(TINY)
    X = lrpnb.batch.load_image(root / "sub" / "img0.png", (8, 8), 1, (-1, 1))[None]
    expected = net.explain(X, composite=lrpnb.formula_type(2, epsstab=0.1))[0]
    np.testing.assert_allclose(read_rawhm(out / "img0_rawhm.txt"), expected, rtol=1e-8, atol=1e-12)
    assert sorted(p.name for p in out.glob("img1_class*_rawhm.txt")) == [
        f"img1_class{k}_rawhm.txt" for k in range(3)]
    assert _tree(config.parent / "out") == ["sub"] + sorted(
        f"sub/{name}" for name in ["img0_rawhm.txt", "img0_heatmap.png", "img0_as_inputted_into_the_dnn.png",
                                   "img0_toptenscores.txt", "img1_as_inputted_into_the_dnn.png",
                                   "img1_toptenscores.txt"]
        + [f"img1_class{k}_{kind}" for k in range(3) for kind in ("rawhm.txt", "heatmap.png")])


def test_a_hard_link_of_an_input_at_an_output_name_is_replaced_not_written_through(tmp_path):
    config, root, _ = _job(tmp_path)
    out = config.parent / "out" / "sub"
    out.mkdir(parents=True)
    model = config.parent / "model.txt"
    before = model.read_bytes()
    os.link(model, out / "img0_toptenscores.txt")
    assert _run(config, ["sub/img0.png -1"], root) == 1
    assert model.read_bytes() == before
    assert (out / "img0_toptenscores.txt").stat().st_ino != model.stat().st_ino
    assert len((out / "img0_toptenscores.txt").read_text().splitlines()) == 3  # the tiny model's 3 classes
