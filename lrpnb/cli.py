"""The ``lrpnb`` command: explain, evaluate, demo, info, convert, toolbox."""
import argparse
import concurrent.futures
import os
import signal
import sys
import threading
import time

import numpy as np

from . import __version__

#: names --composite accepts (case-insensitive); formula:N is the toolbox's type N
COMPOSITE_NAMES = ("EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat",
                   "EpsilonGammaBox")


class Failure(Exception):
    """Some samples could not be explained; the others were written."""


def _composite(spec, input_range):
    from . import composites

    if spec.lower().startswith("formula:"):
        number = spec.split(":", 1)[1]
        if not number.lstrip("-").isdigit():
            raise ValueError(f"--composite formula:N needs an integer N, got {spec!r}")
        return composites.formula_type(int(number))
    for name in COMPOSITE_NAMES:
        if spec.lower() == name.lower():
            if name == "EpsilonGammaBox":
                return composites.EpsilonGammaBox(low=float(input_range[0]), high=float(input_range[1]))
            return getattr(composites, name)()
    raise ValueError(f"unknown composite {spec!r}; use one of {', '.join(COMPOSITE_NAMES)} or formula:N")


def _parameter(text, option="--param"):
    """A rule parameter from the command line: a number, or LOW,HIGH (zb)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} must be a number, or LOW,HIGH for the zb rule; got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _method(args, input_range):
    """Keyword arguments of explain() for --rule/--param or --composite."""
    from .rules import resolve

    if args.composite is not None:
        if args.rule is not None or args.param is not None:
            raise ValueError("give either --rule (with --param) or --composite, not both")
        return dict(composite=_composite(args.composite, input_range))
    param = _parameter(args.param)
    resolve(args.rule, param)  # fail before reading any data
    return dict(rule=args.rule, param=param)


def _method_text(args):
    if args.composite is not None:
        return f"the {args.composite} composite"
    param = "" if args.param is None else f" {args.param}"
    return f"the {args.rule or 'simple'}{param} rule"


def _input_range(values, option="--input-range"):
    low, high = (float(v) for v in values)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{option} needs LOW < HIGH, got {low:g} {high:g}")
    return low, high


def _targets(spec, count):
    """(kind, value) for --target: pred, label:FILE, K, all, top:K."""
    from .data_io import class_labels, read_data

    if spec == "pred":
        return "pred", None
    if spec == "all":
        return "all", None
    if spec.startswith("top:"):
        k = spec[4:]
        if not k.isdigit() or int(k) < 1:
            raise ValueError(f"--target top:K needs an integer K >= 1, got {spec!r}")
        return "top", int(k)
    if spec.startswith("label:"):
        path = spec[6:]
        return "label", class_labels(read_data(path), path, count)
    if spec.lstrip("-").isdigit():
        if int(spec) < 0:
            raise ValueError(f"--target class must be >= 0, got {spec}")
        return "class", int(spec)
    raise ValueError(f"--target must be pred, label:FILE, a class K, all or top:K; got {spec!r}")


def _target_argument(kind, value, kept):
    if kind == "pred":
        return None
    if kind == "all":
        return "all"
    if kind == "top":
        return ("topk", value)
    if kind == "label":
        return value[kept]
    return value


def _progress(total, description):
    from tqdm import tqdm

    # shown on a terminal only; the summary line says the same afterwards
    return tqdm(total=total, unit="samples", desc=description, disable=None, file=sys.stderr,
                dynamic_ncols=True)


def _png_names(source, count):
    """The PNG file name of every sample: the input's name with .png for
    images (with the input's extension kept where two inputs share a
    name, e.g. three_jpg.png beside three_png.png), else its row number."""
    if source.names is None:
        return [f"{index:06d}.png" for index in range(count)]
    stems = [os.path.splitext(name) for name in source.names]
    seen = {}
    for stem, _ in stems:
        seen[stem] = seen.get(stem, 0) + 1
    names = [f"{stem}.png" if seen[stem] == 1 else f"{stem}_{ext.lstrip('.').lower()}.png"
             for stem, ext in stems]
    if len(set(names)) < len(names):  # same stem and extension in two folders of a list
        names = [f"{index:06d}_{name}" for index, name in enumerate(names)]
    return names


def _check_pngs(folder, source, overwrite):
    """The PNG paths of every sample, refused before any work where the
    folder holds input images (whatever --overwrite says: a heatmap could
    replace one, and the next run would read the heatmaps as inputs) or a
    file exists (unless --overwrite)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--png folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"--png folder is not writable: {folder}")
    paths = [os.path.join(folder, name) for name in _png_names(source, len(source))]
    inputs = {os.path.realpath(path) for path in getattr(source, "paths", ())}
    if os.path.realpath(folder) in {os.path.dirname(path) for path in inputs}:
        # even new files there would be read as inputs by the next run
        raise ValueError(f"--png {folder} is the folder of the input images; write the heatmaps into "
                         f"another folder")
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not overwrite:
        raise ValueError(f"--png {folder}: {os.path.basename(existing[0])}"
                         f"{f' and {len(existing) - 1} more' if len(existing) > 1 else ''} exist; "
                         f"remove them or pass --overwrite")
    return paths


def _captions(scores, classes):
    """Captions of a labelled picture: the prediction and its softmax
    confidence over the input, the class explained over each map."""
    from .kernels.activations import softmax_forward

    confidence = softmax_forward(np.asarray(scores, dtype=np.float64))
    predicted = np.argmax(scores, axis=1)
    return [[f"predicted {p} ({c[p]:.0%})"] + [f"for class {t}" for t in row]
            for p, c, row in zip(predicted, confidence, classes)]


def _write_pngs(paths, kept, X, relevance, input_range, cmap, scores, classes):
    from . import render

    for row, (index, captions) in enumerate(zip(kept, _captions(scores, classes))):
        picture = render.labelled(X[row], relevance[row], captions, cmap=cmap, input_range=input_range)
        render.save_image(picture, paths[index], border=0)


def _normalisation(args):
    """The function that turns a batch as read (scaled to --input-range) into
    what the model takes: channels reversed with --channel-order bgr, then
    (x - mean) / std per channel. Checked here, before any file exists."""
    from .batch import normalise

    mean = np.asarray(args.mean if args.mean is not None else [0.0], dtype=np.float64)
    std = np.asarray(args.std if args.std is not None else [1.0], dtype=np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()) or np.any(std <= 0):
        raise ValueError(f"--std must be positive and --mean finite, got mean {mean.tolist()}, std {std.tolist()}")
    if args.mean is None and args.std is None and args.channel_order == "rgb":
        return lambda X: X
    return lambda X: normalise(X, mean, std, args.channel_order == "bgr")


def _data_note(command, net, source, input_range):
    """Check that the samples fit the model before any output exists, and
    say on stderr how they are converted (uint8 scaling, MNIST rows)."""
    from .batch import input_shape, model_input

    data = getattr(source, "data", None)
    dtype = data.dtype if data is not None else np.float32
    probe = np.zeros((1,) + tuple(source.sample_shape), dtype=dtype)
    converted = model_input(net, probe, input_range, source.name)
    notes = []
    if dtype == np.uint8:
        notes.append(f"uint8 values are scaled from 0..255 to {input_range[0]:g}..{input_range[1]:g} "
                     f"(--input-range)")
    if converted.shape[1:] != probe.shape[1:]:
        side = int(round(np.sqrt(probe.shape[1])))
        notes.append(f"rows of {probe.shape[1]} values become {side} x {side} images padded to "
                     f"{' x '.join(map(str, input_shape(net)))}")
    if notes:
        print(f"lrpnb {command}: {source.name}: {'; '.join(notes)}", file=sys.stderr)
    return tuple(converted.shape[1:])


def _explain(args):
    from .batch import HDF5Writer, NpyWriter, model_input, open_source, sample_shape
    from .data_io import write_data
    from .model_io import load
    from .network import target_classes

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    out_ext = os.path.splitext(args.out)[1].lower()
    if out_ext not in (".h5", ".hdf5", ".npy", ".npz", ".mat", ".txt"):
        raise ValueError(f"{args.out}: write .h5/.hdf5 (relevance, prediction, scores, target) or "
                         f".npy/.npz/.mat/.txt (relevance only)")
    input_range = _input_range(args.input_range)
    method = _method(args, input_range)
    normalise = _normalisation(args)
    if args.png is not None:
        from .render import colormap

        colormap(args.cmap)  # an unknown name fails now, not after the first batch
    model = _model_path(args.model)
    _check_outputs([args.out], [model, args.data], args.overwrite)
    net = load(model, device=args.device)
    source = open_source(args.data, args.dataset, sample_shape(net, args.size), input_range)
    N = len(source)
    shape = _data_note("explain", net, source, input_range)
    normalise(np.zeros((1,) + tuple(shape), dtype=np.float32))  # --mean/--std fit the channels
    png_paths = None
    if args.png is not None:
        if len(shape) != 3:
            raise ValueError(f"--png draws images (H, W, C); {source.name} holds samples of shape "
                             f"{tuple(source.sample_shape)}")
        png_paths = _check_pngs(args.png, source, args.overwrite)
    kind, value = _targets(args.target, N)
    if out_ext == ".txt" and (len(shape) > 1 or kind in ("all", "top")):
        raise ValueError(f"{args.out}: a .txt file holds at most 2 dimensions; write .h5 or .npy")
    # .npy/.npz/.mat/.txt hold the relevance alone: for images, a list of
    # the file of each row goes beside it (an unreadable image is left out)
    names_path = args.out + ".names.txt" if out_ext not in (".h5", ".hdf5") and source.names is not None \
        else None
    if names_path is not None:
        _check_outputs([names_path], [], args.overwrite)
    settings = dict(model=os.path.abspath(model), data=os.path.abspath(args.data),
                    method=_method_text(args), target=args.target, size=args.size,
                    input_range=input_range, dataset=args.dataset, mean=args.mean, std=args.std,
                    channel_order=args.channel_order)
    if args.compress and out_ext not in (".h5", ".hdf5"):
        raise ValueError(f"--compress applies to HDF5 output; {args.out} is {out_ext}")
    writer = HDF5Writer(args.out, N, settings, args.overwrite, args.compress, names=source.names) \
        if out_ext in (".h5", ".hdf5") else None
    # .npy results stream to the disk batch by batch; .npz, .mat and .txt
    # are written whole at the end (their formats cannot grow in place)
    stream = NpyWriter(args.out, N) if out_ext == ".npy" else None
    parts, failures, row_names = [], 0, []
    start = writer.done if writer is not None else 0
    if start:
        print(f"resuming {args.out}: {start} of {N} samples were done", file=sys.stderr)
    began, explained = time.perf_counter(), 0
    bar = _progress(N, "explaining")
    bar.update(start)
    # Ctrl-C sets a flag that is checked between batches: a KeyboardInterrupt
    # raised at a random point can land in a callback that Python ignores
    stop = []
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum)) \
        if in_main_thread else None
    writes = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lrpnb-hdf5")
    # the next batch is read (images decoded, files read) on a thread while
    # this one is explained: measured on 4,000 PNG digits, reading took half
    # as long as explaining
    reads = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lrpnb-read")
    firsts = range(start, N, args.batch_size)
    reading = reads.submit(source.batch, start, min(start + args.batch_size, N)) if len(firsts) else None
    pending = None
    try:
        for first in firsts:
            if stop:
                raise KeyboardInterrupt
            last = min(first + args.batch_size, N)
            X, problems, kept = reading.result()
            if last < N:
                reading = reads.submit(source.batch, last, min(last + args.batch_size, N))
            for index, message in problems:
                failures += 1
                print(f"lrpnb explain: skipped sample {index}: {message}", file=sys.stderr)
            results = None
            if len(kept):
                X = model_input(net, X, input_range, source.name)
                target = _target_argument(kind, value, kept)
                try:
                    relevance, scores = net.explain(normalise(X), target=target, return_scores=True, **method)
                except ValueError as error:
                    # explain() counts samples within the batch
                    raise ValueError(f"{source.name}, samples {first}..{last - 1}: {error}") from None
                relevance = np.asarray(relevance)
                chosen = target_classes(target, scores)
                if png_paths is not None:
                    _write_pngs(png_paths, kept, X, relevance, input_range, args.cmap, scores, chosen)
                results = dict(relevance=relevance, prediction=np.argmax(scores, axis=1), scores=scores,
                               target=chosen if kind in ("all", "top") else chosen[:, 0])
                explained += len(kept)
            if writer is not None:
                # the writer thread compresses and writes this batch while
                # the next one is explained (the kernels release the GIL)
                rows = _full_rows(results, kept, first, last, source)
                if pending is not None:
                    pending.result()
                pending = writes.submit(writer.write, first, rows)
            elif results is not None:
                if stream is not None:
                    stream.write(results["relevance"])
                else:
                    parts.append(results["relevance"])
                if names_path is not None:
                    row_names.extend(source.names[k] for k in kept)
            bar.update(last - first)
        if pending is not None:
            pending.result()
    except KeyboardInterrupt as stop:
        stop.reported = True  # said here: main() need not say it again
        bar.close()
        if writer is not None:
            _settle(pending)
            writer.close()
            if writer.done:
                print(f"lrpnb explain: interrupted after {writer.done} of {N} samples; they are kept in "
                      f"{writer.partial}; run the same command again to resume", file=sys.stderr)
            else:
                print("lrpnb explain: interrupted before the first batch was done; nothing written",
                      file=sys.stderr)
        else:
            if stream is not None:
                stream.close()
            print("lrpnb explain: interrupted; nothing written (write .h5 to keep finished batches)",
                  file=sys.stderr)
        raise
    except BaseException:
        bar.close()
        if writer is not None:
            _settle(pending)
            writer.close()
        if stream is not None:
            stream.close()
        raise
    finally:
        writes.shutdown()
        reads.shutdown(cancel_futures=True)
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    bar.close()
    if writer is not None:
        if explained == 0 and start == 0:
            writer.close()
            if os.path.exists(writer.partial):
                os.remove(writer.partial)
            raise ValueError(f"{args.data}: no sample could be explained")
        # rows of unreadable samples, from this run or an interrupted earlier one
        failures = writer.finish()
    else:
        if explained == 0:
            if stream is not None:
                stream.close()
            raise ValueError(f"{args.data}: no sample could be explained")
        if stream is not None:
            stream.finish()
        else:
            write_data(np.concatenate(parts), args.out)
        if names_path is not None:
            from ._atomic import atomic_path

            with atomic_path(names_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
                handle.write("".join(f"{name}\n" for name in row_names))
            print(f"the image of each row of {args.out}, one per line: {names_path}", file=sys.stderr)
    seconds = time.perf_counter() - began
    rate = explained / seconds if seconds > 0 else float("inf")
    print(f"explained {explained} samples with {_method_text(args)} in {seconds:.2f} s "
          f"({rate:,.0f} samples/s); results written to {args.out}")
    if failures:
        raise Failure(f"{failures} of {N} samples could not be read and were left out")


def _settle(pending):
    """Wait for a batch being written; a failed write has been reported by
    the error that stopped the run, or is lost with the batch."""
    if pending is not None:
        try:
            pending.result()
        except Exception:  # noqa: BLE001 - the run is ending with another error
            pass


def _full_rows(results, kept, first, last, source):
    """Rows first..last-1 for the HDF5 file: results where samples were
    read, zeros and ok=False where not."""
    count = last - first
    ok = np.zeros(count, dtype=bool)
    ok[np.asarray(kept, dtype=np.int64) - first] = True
    rows = {"ok": ok}
    if source.names is not None:
        rows["source"] = np.array(source.names[first:last], dtype=object)
    if results is None:  # nothing read: the rows stay empty and are dropped at the end
        return rows
    for name, array in results.items():
        full = np.zeros((count,) + array.shape[1:], dtype=array.dtype)
        full[ok] = array
        rows[name] = full
    return rows


# ---------------------------------------------------------------- info, convert
def _info(args):
    from .batch import input_shape
    from .model_io import load

    net = load(args.model)
    shape = input_shape(net)
    print(f"model: {args.model}")
    if shape is None:
        print("input: unknown (no layer fixes it)")
        shapes = [None] * len(net.layers)
    else:
        what = "vectors of" if len(shape) == 1 else "images of"
        print(f"input: {what} {' x '.join(map(str, shape))}")
        shapes = net.output_shapes((1,) + shape)
    graph = not net.is_sequential
    if graph:  # a graph: each node's name and the nodes it reads
        print(f"graph of {len(net.nodes)} nodes; the input is (N, {', '.join(map(str, shape or ('...',)))})")
    names = f"{'node':<24} " if graph else ""
    print(f"{'#':>3}  {names}{'layer':<36} {'output':<16} {'parameters':>10}" + ("  inputs" if graph else ""))
    total = 0
    for k, (node, out) in enumerate(zip(net.nodes, shapes)):
        layer = node.layer
        count = int(layer.W.size + layer.B.size) if hasattr(layer, "W") else 0
        total += count
        text = "" if out is None else " x ".join(map(str, out[1:]))
        name = f"{node.name:<24} " if graph else ""
        inputs = "  " + ", ".join(node.inputs) if graph else ""
        print(f"{k:>3}  {name}{layer.describe():<36} {text:<16} {count:>10,}{inputs}")
    print(f"total parameters: {total:,}")
    if shapes and shapes[-1] is not None:
        print(f"classes: {shapes[-1][-1]}")


def _convert(args):
    from .model_io import load, save

    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ValueError("convert needs two different files")
    _check_outputs([args.output], [_model_path(args.input)], args.overwrite)
    net = load(args.input)
    save(net, args.output)
    print(f"wrote {args.output}: {len(net.layers)} layers from {args.input}")


# ---------------------------------------------------------------- demo
def _demo(args):
    from . import render
    from .batch import input_shape, model_input, open_source
    from .digits import synthetic_digits
    from .kernels.activations import softmax_forward
    from .model_io import load

    started = time.perf_counter()
    model = _model_path(args.model) if args.model else _embedded_model()
    input_range = _input_range(args.input_range)
    method = _method(args, input_range)
    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    out = args.out or os.getcwd()
    path = os.path.join(out, "lrpnb_demo.png") if os.path.isdir(out) else out
    if not path.lower().endswith(".png"):
        raise ValueError(f"--out {out}: give a folder or a .png file")
    _check_outputs([path], [model, args.data, args.labels], overwrite=True)  # the demo's picture is replaced
    net = load(model)
    shape = input_shape(net)
    labels = None
    if args.data is None:
        digits = synthetic_digits(args.count, seed=args.seed)
        X, labels = digits.images, digits.labels
        origin = f"{args.count} synthetic digits (seed {args.seed})"
    else:
        source = open_source(args.data, None, shape, input_range)
        X, problems, _ = source.batch(0, min(args.count, len(source)))
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        X = model_input(net, X, input_range, args.data)
        origin = f"the first {len(X)} samples of {args.data}"
        if args.labels is not None:
            from .data_io import class_labels, read_data

            labels = class_labels(read_data(args.labels), args.labels)
            if len(labels) < len(X):
                raise ValueError(f"--labels {args.labels} has {len(labels)} labels for {len(X)} samples")
            labels = labels[:len(X)]
    if args.rule is None and args.composite is None:
        method = dict(rule="epsilon", param=0.01 if args.param is None else _parameter(args.param))
        args.rule, args.param = "epsilon", f"{method['param']:g}"
    X = X.astype(np.float32)
    before = time.perf_counter()
    relevance, scores = net.explain(X, return_scores=True, **method)
    seconds = time.perf_counter() - before
    probabilities = softmax_forward(scores)
    predicted = np.argmax(scores, axis=1)
    print(f"lrpnb demo: {os.path.basename(model)} on {origin}, explained with {_method_text(args)}")
    for n in range(len(X)):
        known = "" if labels is None else f"  (drawn: {labels[n]})" if args.data is None else \
            f"  (label: {labels[n]})"
        print(f"  sample {n:3d}: predicted {predicted[n]} with confidence {probabilities[n, predicted[n]]:6.1%}"
              f"{known}")
    if labels is not None:
        print(f"  {np.mean(predicted == labels[:len(X)]):.1%} right")
    drawn = min(len(X), DEMO_PICTURES)
    captions = _captions(scores[:drawn], predicted[:drawn, None])
    if labels is not None:
        captions = [[first, f"{second}, {'drawn' if args.data is None else 'label'} {label}"]
                    for (first, second), label in zip(captions, labels)]
    pictures = [render.labelled(X[n], relevance[n], captions[n], input_range=input_range,
                                panel=DEMO_PANEL_PIXELS) for n in range(drawn)]
    render.save_image(pictures, path, columns=min(4, len(pictures)), border=6)
    which = "each input" if drawn == len(X) else f"the first {drawn} inputs"
    print(f"wrote {path}: {which} (left) beside its relevance (red: for the prediction, "
          f"blue: against), with a colour scale")
    again = time.perf_counter()
    net.explain(X, **method)  # the kernels are compiled (or loaded from the cache) by now
    warm = time.perf_counter() - again
    print(f"explained {len(X)} samples in {seconds:.2f} s the first time (loading or compiling the "
          f"kernels), {warm * 1000:.1f} ms the second ({len(X) / warm:,.0f} samples/s); "
          f"{time.perf_counter() - started:.1f} s in all")


#: samples the demo draws at most (a picture of thousands would be too tall to open)
DEMO_PICTURES = 64
#: the demo's panels: wider than --png's, for the caption with the drawn label
DEMO_PANEL_PIXELS = 160


def _embedded_model():
    from .model_io import model_path

    return model_path("lenet5_synthetic")


def _model_path(name):
    from .model_io import model_path

    return model_path(name)


# ---------------------------------------------------------------- evaluate
#: what evaluate compares when neither --rule nor --relevance is given
EVALUATE_RULES = ("epsilon:0.01", "alphabeta:2", "flat", "gradient")


def _rule_spec(spec, input_range):
    """(label, explain() keywords) for an evaluate --rule NAME[:PARAM]
    (zb:LOW,HIGH), or a composite name."""
    from .rules import resolve

    name, _, text = spec.partition(":")
    if name.lower() == "formula" or any(spec.lower() == c.lower() for c in COMPOSITE_NAMES):
        return spec, dict(composite=_composite(spec, input_range))
    param = _parameter(text or None, f"--rule {spec!r}: the parameter after ':'")
    resolve(name, param)  # fails before any work
    return spec.replace(":", " "), dict(rule=name, param=param)


def _read_relevance(path, source, kept, shape):
    """(relevance, target) rows of an explain result for the samples ``kept``."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"--relevance {path}: not a readable HDF5 file ({error})") from None
    with handle:
        if "relevance" not in handle or "target" not in handle:
            raise ValueError(f"--relevance {path}: holds no 'relevance' and 'target' datasets "
                             f"(write it with lrpnb explain --out FILE.h5)")
        relevance, target = handle["relevance"], handle["target"]
        if target.ndim != 1:
            raise ValueError(f"--relevance {path}: explains {target.shape[1]} targets per sample; "
                             f"a perturbation curve follows one (explain with --target pred, K or label:FILE)")
        if "source" in handle and source.names is not None:
            rows = {os.path.basename(name.decode() if isinstance(name, bytes) else name): k
                    for k, name in enumerate(handle["source"][...])}
            names = [os.path.basename(source.names[k]) for k in kept]
            missing = [name for name in names if name not in rows]
            if missing:
                raise ValueError(f"--relevance {path}: holds no row for {missing[0]}"
                                 f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}")
            index = np.array([rows[name] for name in names])
        else:
            if len(relevance) != len(source):
                raise ValueError(f"--relevance {path}: holds {len(relevance)} rows for the "
                                 f"{len(source)} samples of {source.name}")
            index = np.asarray(kept)
        if tuple(relevance.shape[1:]) != tuple(shape):
            raise ValueError(f"--relevance {path}: maps of shape {tuple(relevance.shape[1:])} for "
                             f"samples of shape {tuple(shape)}")
        # h5py reads a slice fast, and a list of rows only if they increase
        rows, inverse = np.unique(index, return_inverse=True)
        if rows[-1] - rows[0] + 1 == len(rows):
            R = relevance[int(rows[0]):int(rows[-1]) + 1]
        else:
            R = relevance[rows]
        return R[inverse], target[...][index].astype(np.int64)


def _evaluate(args):
    from . import evaluate
    from .batch import model_input, open_source, sample_shape
    from .model_io import load
    from .network import target_classes

    input_range = _input_range(args.input_range)
    if args.relevance is not None and args.rule:
        raise ValueError("give --relevance (maps from lrpnb explain) or --rule, not both")
    if args.relevance is not None and args.target != "pred":
        raise ValueError("--relevance brings its own targets (the file's 'target'); leave out --target")
    methods = [] if args.relevance is not None else \
        [_rule_spec(spec, input_range) for spec in (args.rule or EVALUATE_RULES)]
    replace = _replacement_option(args.replace)
    if args.count is not None and args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    outputs = [path for path in (args.out, args.plot) if path is not None]
    for path, extensions in ((args.out, (".h5", ".hdf5")), (args.plot, (".png",))):
        if path is not None and os.path.splitext(path)[1].lower() not in extensions:
            raise ValueError(f"{path}: write {' or '.join(extensions)}")
    _check_outputs(outputs, [args.model, args.data, args.relevance], args.overwrite)

    model = _model_path(args.model) if args.model else _embedded_model()
    net = load(model, device=args.device)
    if args.data is None:
        if args.model is not None:
            raise ValueError("--data is needed with --model (synthetic digits fit the embedded LeNet-5 only)")
        from .digits import synthetic_digits

        count = args.count or 500
        X = synthetic_digits(count, seed=args.seed + 1000).images
        kept, source = list(range(count)), None
        # seeds from 1000 on: the embedded model was trained on seeds 1 and 2
        origin = f"{count} held-out synthetic digits (seed {args.seed + 1000})"
    else:
        source = open_source(args.data, args.dataset, sample_shape(net, args.size), input_range)
        _data_note("evaluate", net, source, input_range)
        count = len(source) if args.count is None else min(args.count, len(source))
        X, problems, kept = source.batch(0, count)
        for index, message in problems:
            print(f"lrpnb evaluate: skipped sample {index}: {message}", file=sys.stderr)
        if not len(kept):
            raise ValueError(f"{args.data}: no sample could be read")
        X = model_input(net, X, input_range, args.data)
        origin = f"{len(kept)} samples of {args.data}"
    kind, value = _targets(args.target, count)
    if kind in ("all", "top"):
        raise ValueError("--target: a perturbation curve follows one class per sample (pred, K or label:FILE)")
    target = _target_argument(kind, value, kept)
    if target is None or np.ndim(target) == 0:
        # the classes followed, once for the explanations, the curves and the file
        target = target_classes(target, np.asarray(net.scores(X)))[:, 0]

    if args.relevance is not None:
        if source is None:
            raise ValueError("--relevance needs the --data it was computed from")
        R, target = _read_relevance(args.relevance, source, kept, X.shape[1:])
        maps = {os.path.basename(args.relevance): R}
    else:
        maps = {}
        for label, keywords in methods:
            parts = []
            for first in range(0, len(X), args.batch_size):
                parts.append(np.asarray(net.explain(X[first:first + args.batch_size],
                                                    target=target[first:first + args.batch_size], **keywords)))
            maps[label] = np.concatenate(parts)
    settings = dict(region=tuple(args.region), steps=args.steps, replace=replace, seed=args.seed)
    (rows, columns), (rh, rw) = evaluate.regions(X.shape[1:], settings["region"])
    steps = args.steps if args.steps is not None else rows * columns
    began = time.perf_counter()
    curves = {}
    for label, R in maps.items():
        curves[label] = evaluate.perturbation_curve(net, X, R, target, order=args.order, **settings)
    curves["random"] = evaluate.perturbation_curve(net, X, None, target, order="random", **settings)
    seconds = time.perf_counter() - began

    what = {"morf": "most relevant first", "lerf": "least relevant first"}[args.order]
    replaced = f"{replace:g}" if isinstance(replace, float) else f"{replace} values"
    print(f"lrpnb evaluate: {os.path.basename(model)} on {origin}; {rh} x {rw} regions "
          f"({rows * columns}), {steps} steps, {what}, replaced by {replaced}, seed {args.seed}")
    baseline = evaluate.aopc(curves["random"])
    width = max(12, max(len(label) for label in curves))
    print(f"  {'method':<{width}}  {'AOPC':>9}  {'95% interval':>19}  {'minus random':>12}")
    for label, curve in curves.items():
        mean, low, high = evaluate.confidence_interval(evaluate.aopc(curve, per_sample=True))
        interval = f"{low:.4g} .. {high:.4g}"
        versus = "" if label == "random" else f"{mean - baseline:+.4g}"
        print(f"  {label:<{width}}  {mean:9.4g}  {interval:>19}  {versus:>12}")
    copies = len(curves) * len(X) * (steps + 1)
    print(f"{copies:,} perturbed inputs scored in {seconds:.2f} s ({copies / seconds:,.0f}/s); "
          f"AOPC: the mean fall of the class score over the steps (larger: the order finds what "
          f"the score rests on)")
    if args.out is not None:
        _write_curves(args.out, curves, target, kept, source,
                      dict(settings, steps=steps, order=args.order, model=os.path.abspath(model),
                           data=origin))
        print(f"wrote {args.out}")
    if args.plot is not None:
        from ._atomic import atomic_path

        with atomic_path(args.plot, suffix=".png") as tmp:
            evaluate.plot_curves(curves, tmp, title=f"{os.path.basename(model)}, {origin}: {rh} x {rw} "
                                                    f"regions, {what}")
        print(f"wrote {args.plot}")


def _replacement_option(text):
    from .evaluate import REPLACEMENTS

    if text in REPLACEMENTS:
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--replace must be one of {', '.join(REPLACEMENTS)} or a number, got {text!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"--replace must be finite, got {text!r}")
    return value


def _check_outputs(outputs, inputs, overwrite):
    """Refuse outputs that exist (unless ``overwrite``), that are inputs, or
    whose folder is missing, before any work is done."""
    # FILE.h5:DATASET reads FILE.h5
    inputs = [item if item is None or os.path.exists(item) else item.rpartition(":")[0] or item
              for item in inputs]
    seen = set()
    for path in outputs:
        real = os.path.realpath(path)
        if real in seen:
            raise ValueError(f"{path} is named for two outputs")
        seen.add(real)
        if any(item is not None and os.path.exists(item) and os.path.realpath(item) == real for item in inputs):
            raise ValueError(f"{path} is an input of this command; write the output elsewhere")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write {path}: folder {folder} is not writable")
        if os.path.exists(path) and not overwrite:
            raise ValueError(f"{path} exists; remove it or pass --overwrite")


def _write_curves(path, curves, target, kept, source, settings):
    """The curves as HDF5: curves (M, N, L+1), aopc (M, N), target (N,),
    index (N,), source names for images; the settings and method names as
    attributes."""
    import json

    import h5py

    from ._atomic import atomic_path
    from .evaluate import aopc

    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("curves", data=np.stack(list(curves.values())))
            handle.create_dataset("aopc", data=np.stack([aopc(c, per_sample=True) for c in curves.values()]))
            handle.create_dataset("target", data=np.asarray(target, dtype=np.int64))
            handle.create_dataset("index", data=np.asarray(kept, dtype=np.int64))
            if source is not None and source.names is not None:
                handle.create_dataset("source", data=np.array([source.names[k] for k in kept], dtype=object),
                                      dtype=h5py.string_dtype())
            handle.attrs["methods"] = json.dumps(list(curves))
            handle.attrs["settings"] = json.dumps(settings, sort_keys=True)


# ---------------------------------------------------------------- parser
def _add_method(parser, default_text="simple"):
    parser.add_argument("--rule", default=None,
                        help=f"LRP rule or gradient method (default {default_text}): simple, epsilon, "
                             "alphabeta, flat, ww, zplus, gamma, zb, gradient, sensitivity, "
                             "deconvnet, guided_backprop, gradient_x_input")
    parser.add_argument("--param", default=None,
                        help="the rule's parameter (epsilon for epsilon, alpha for alphabeta, gamma "
                             "for gamma)")
    parser.add_argument("--composite", default=None,
                        help=f"a rule per layer instead: {', '.join(COMPOSITE_NAMES)} (box bounds "
                             f"from --input-range), or formula:N (the Caffe toolbox's formula type N)")


def build_parser():
    from .toolbox_mode import add_parser as add_toolbox

    parser = argparse.ArgumentParser(
        prog="lrpnb", description="Layer-wise Relevance Propagation with compiled kernels.")
    parser.add_argument("--version", action="version", version=f"lrpnb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="explain digits with the embedded LeNet-5 and draw the heatmaps",
        description="Explain the predicted class of a few digits and write a PNG of the inputs "
                    "and heatmaps. By default: lrpnb's own LeNet-5 (trained on synthetic digits) "
                    "on freshly drawn synthetic digits; --model/--data give others, e.g. the "
                    "toolbox's LeNet-5.nn and test_images.mat.")
    demo.add_argument("--model", default=None, help="model file (default: the embedded LeNet-5)")
    demo.add_argument("--data", default=None,
                      help="data to explain instead of synthetic digits (784-pixel 0..255 rows, "
                           "as the toolbox's MNIST files, are reshaped and padded to 32 x 32)")
    demo.add_argument("--labels", default=None, help="labels of --data, to count the right answers")
    demo.add_argument("--count", type=int, default=8, help="how many samples (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic digits")
    _add_method(demo, "epsilon 0.01")
    demo.add_argument("--input-range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                      help="the model's input range (default -1 1)")
    demo.add_argument("--out", default=None,
                      help="PNG file or folder to write lrpnb_demo.png into (default: the current folder)")
    demo.set_defaults(run=_demo)

    explain = commands.add_parser(
        "explain", help="explain every sample of a data file or image folder",
        description="Explain the samples of a data file (.npy, .npz, .mat, .txt, .h5) or of "
                    "images (a folder, a .lst/.list file of paths, one .png/.jpg) batch by batch. "
                    "Writes HDF5 (relevance, prediction, scores, target; resumable) or the "
                    "relevance alone (.npy, .npz, .mat, .txt).")
    explain.add_argument("--model", required=True, help="model file (.txt, .nn, .pickle, .mat, .onnx)")
    explain.add_argument("--data", required=True,
                         help="data file, FILE.h5:DATASET, image folder, or .lst/.list file of images")
    explain.add_argument("--dataset", default=None, help="the dataset to read from an HDF5 --data file")
    explain.add_argument("--out", required=True, help="output: .h5/.hdf5, or .npy/.npz/.mat/.txt")
    _add_method(explain)
    explain.add_argument("--target", default="pred",
                         help="class to explain: pred (each sample's prediction, default), "
                              "label:FILE (labels from a data file), K (class K), all, top:K")
    explain.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                         help="where the kernels run (default cpu)")
    explain.add_argument("--batch-size", type=int, default=256, help="samples per pass (default 256)")
    explain.add_argument("--png", default=None, metavar="DIR",
                         help="also write a PNG per sample (input beside heatmaps) into DIR")
    explain.add_argument("--cmap", default="bwr", help="colormap of the PNG heatmaps (default bwr)")
    explain.add_argument("--input-range", type=float, nargs=2, default=(-1.0, 1.0),
                         metavar=("LOW", "HIGH"),
                         help="images' pixels 0..255 are scaled to this range (default -1 1)")
    explain.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                         help="resize images to H x W (default: the model's input size)")
    explain.add_argument("--mean", type=float, nargs="+", default=None, metavar="M",
                         help="subtracted from the samples after --input-range, one value or one per "
                              "channel (torchvision: --input-range 0 1 --mean 0.485 0.456 0.406 "
                              "--std 0.229 0.224 0.225)")
    explain.add_argument("--std", type=float, nargs="+", default=None, metavar="S",
                         help="the samples are divided by it after --mean, one value or one per channel")
    explain.add_argument("--channel-order", choices=("rgb", "bgr"), default="rgb",
                         help="channel order the model takes (bgr: Caffe's); images are read as RGB")
    explain.add_argument("--overwrite", action="store_true",
                         help="replace an existing output (and an unfinished earlier run's file)")
    explain.add_argument("--compress", action="store_true",
                         help="gzip-compress the HDF5 datasets (level 1, shuffled): about a sixth "
                              "smaller for float32 maps, and slower to write")
    explain.set_defaults(run=_explain)

    evaluate = commands.add_parser(
        "evaluate", help="compare explanations by region perturbation (AOPC)",
        description="Replace the regions of each input one after the other, the most relevant "
                    "first, and follow the class score (Samek et al., IEEE TNNLS 2017). Prints the "
                    "area over the perturbation curve (AOPC) of each method with a 95%% interval "
                    "over the samples, against a random order of the regions. By default: the "
                    "embedded LeNet-5 on held-out synthetic digits, comparing "
                    + ", ".join(EVALUATE_RULES) + ".")
    evaluate.add_argument("--model", default=None, help="model file (default: the embedded LeNet-5)")
    evaluate.add_argument("--data", default=None,
                          help="data file, FILE.h5:DATASET, image folder or list (default with the "
                               "embedded model: synthetic digits)")
    evaluate.add_argument("--dataset", default=None, help="the dataset to read from an HDF5 --data file")
    evaluate.add_argument("--relevance", default=None, metavar="R.h5",
                          help="evaluate the maps of an lrpnb explain result for --data (and its targets)")
    evaluate.add_argument("--rule", action="append", default=None, metavar="NAME[:PARAM]",
                          help="a rule or method to explain with and evaluate, repeatable: e.g. "
                               "epsilon:0.01, alphabeta:2, flat, gradient, zb:-1,1, or a composite name "
                               f"(default: {' '.join(EVALUATE_RULES)})")
    evaluate.add_argument("--target", default="pred",
                          help="class to follow: pred (each sample's prediction, default), K, label:FILE")
    evaluate.add_argument("--region", type=int, nargs=2, default=(4, 4), metavar=("H", "W"),
                          help="region size in pixels (default 4 4; vectors: 1 W)")
    evaluate.add_argument("--steps", type=int, default=None,
                          help="regions to replace (default: all of them)")
    evaluate.add_argument("--order", default="morf", choices=("morf", "lerf"),
                          help="most (default) or least relevant region first")
    evaluate.add_argument("--replace", default="uniform",
                          help="what replaces a region: uniform (values drawn in each sample's range, "
                               "default), mean, blur, or a number")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seeds the uniform values, the random order and the synthetic digits")
    evaluate.add_argument("--count", type=int, default=None,
                          help="evaluate the first COUNT samples (default: all; 500 synthetic digits)")
    evaluate.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                          help="where the kernels run (default cpu)")
    evaluate.add_argument("--batch-size", type=int, default=256,
                          help="samples per explain pass (default 256)")
    evaluate.add_argument("--input-range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                          help="images' pixels 0..255 are scaled to this range (default -1 1)")
    evaluate.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                          help="resize images to H x W (default: the model's input size)")
    evaluate.add_argument("--out", default=None, metavar="CURVES.h5",
                          help="write the curves, per-sample AOPC and settings as HDF5")
    evaluate.add_argument("--plot", default=None, metavar="CURVES.png", help="write a plot of the mean curves")
    evaluate.add_argument("--overwrite", action="store_true", help="replace existing --out/--plot files")
    evaluate.set_defaults(run=_evaluate)

    info = commands.add_parser("info", help="layers, shapes and parameter counts of a model",
                               description="Print the layers, output shapes, parameter counts and "
                                           "the input shape a model expects.")
    info.add_argument("model", help="model file (.txt, .nn, .pickle, .mat, .onnx)")
    info.set_defaults(run=_info)

    convert = commands.add_parser("convert", help="convert a model file to another format",
                                  description="Read a model (.txt, .nn, .pickle, .mat, .onnx) and write it "
                                              "as .txt or .nn/.pickle (the format from the extension).")
    convert.add_argument("input", help="model file to read")
    convert.add_argument("output", help="model file to write (.txt, .nn, .pickle)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    convert.set_defaults(run=_convert)

    add_toolbox(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
    except BrokenPipeError:
        # the reader went away (lrpnb info M | head): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Failure as failure:
        print(f"lrpnb {args.command}: {failure}", file=sys.stderr)
        return 1
    except (ValueError, OSError, TypeError, RuntimeError, ImportError) as error:
        print(f"lrpnb {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        if not getattr(stop, "reported", False):
            print(f"lrpnb {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
