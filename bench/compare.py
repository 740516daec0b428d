"""Side-by-side comparison: lrpnb, the toolbox's numpy algorithm, and zennit.

Runs every scenario of bench/README.md in one process, on the same inputs and
with the same rule, prints images/s, ratios, GFLOP/s and the share of the
measured GEMM rate, and checks that the relevance maps agree, so that a fast
wrong answer cannot pass. Usage (from the repository root):

    python bench/compare.py [--quick] [--skip-vgg] [--skip-compile]
    python bench/compare.py --threads 1,2,4,8,16 [--against DIR] [--rounds N]

zennit runs when torch and zennit are importable (pip install ".[peers]").
``--threads`` measures how lrpnb and zennit scale: one process per thread
count T (NUMBA_NUM_THREADS=T for lrpnb, torch.set_num_threads(T) for zennit,
T BLAS threads for the GEMM rate), on LeNet-5 at batch 256 and 4096, the MLP
at 4096 and VGG-16 at batch 4; it prints images/s side by side, the ratio,
the parallel efficiency against the smallest T and the share of the GEMM
rate at T threads. ``--against DIR`` runs the same lrpnb scenarios from
another checkout (e.g. a git worktree of the previous commit) in the same
run, for a before/after comparison; ``--rounds N`` runs each checkout N
times, taking turns, and keeps each figure's best.
"""
import json
import argparse
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lrpnb  # noqa: E402
import toolbox_numpy  # noqa: E402
from peers import import_zennit, zennit_explainer  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "formats"


def best_time(function, repeats):
    function()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_rate():
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    seconds = best_time(lambda: a @ a, 5)
    return 2 * 2048 ** 3 / seconds / 1e9


def forward_flops(net, input_shape):
    """Multiply-add FLOPs (2 per MAC) of one sample's forward pass."""
    flops, shape = 0, (1,) + tuple(input_shape[1:])
    for layer, out in zip(net.layers, net.output_shapes(shape)):
        if isinstance(layer, lrpnb.Convolution):
            h, w, d, n = layer.W.shape
            flops += 2 * out[1] * out[2] * n * h * w * d
        elif isinstance(layer, lrpnb.Linear):
            flops += 2 * layer.m * layer.n
    return flops


def lenet():
    path = SHARED / "models" / "LeNet-5.txt"
    if path.exists():
        return lrpnb.load(path), "the toolbox's LeNet-5"
    rng = np.random.default_rng(5)
    conv = lambda h, d, n: lrpnb.Convolution(rng.normal(0, 1 / np.sqrt(h * h * d), (h, h, d, n)),  # noqa: E731
                                             rng.normal(0, 0.01, n))
    return lrpnb.Network([conv(5, 1, 10), lrpnb.Rect(), lrpnb.SumPool(), conv(5, 10, 25), lrpnb.Rect(),
                          lrpnb.SumPool(), conv(4, 25, 100), lrpnb.Rect(), lrpnb.SumPool(),
                          conv(1, 100, 10), lrpnb.Flatten()]), "LeNet-5 geometry, random weights"


def digits(count):
    path = SHARED / "data" / "test_images.mat"
    if path.exists():
        images = lrpnb.read_data(path)[:count].reshape(-1, 28, 28, 1) / 127.5 - 1
    else:
        images = np.random.default_rng(6).uniform(-1, 1, (count, 28, 28, 1))
    X = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1)
    return X.astype(np.float32)


def vgg16(seed=16):
    """VGG-16 geometry without padding, random (He-scaled) weights."""
    rng = np.random.default_rng(seed)
    layers, d = [], 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if width == "M":
            layers.append(lrpnb.MaxPool((2, 2), (2, 2)))
            continue
        W = rng.normal(0, np.sqrt(2 / (9 * d)), (3, 3, d, width)).astype(np.float32)
        layers += [lrpnb.Convolution(W, np.zeros(width)), lrpnb.Rect()]
        d = width
    layers.append(lrpnb.Flatten())
    for m, n in ((512, 4096), (4096, 4096), (4096, 1000)):
        layers += [lrpnb.Linear(rng.normal(0, np.sqrt(2 / m), (m, n)).astype(np.float32), np.zeros(n)),
                   lrpnb.Rect()]
    return lrpnb.Network(layers[:-1])


def mlp(seed=7):
    rng = np.random.default_rng(seed)
    sizes = (784, 1000, 1000, 10)
    layers = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        layers += [lrpnb.Linear(rng.normal(0, np.sqrt(2 / m), (m, n)), np.zeros(n)), lrpnb.Rect()]
    return lrpnb.Network(layers[:-1])


def relative(a, b):
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def correlation(a, b):
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def report(rows):
    for row in rows:
        print("  " + row)


def run_lenet(args, gemm, zennit_ok):
    net, what = lenet()
    batch = 256 if args.quick else 1024
    X = digits(batch)
    flops = 2 * forward_flops(net, X.shape)  # forward + one relevance pass
    print(f"\nLeNet-5 ({what}), batch {batch}, float32, forward + LRP of the predicted class")
    times = {}
    for rule, param in (("epsilon", 0.01), ("alphabeta", 2.0)):
        R = net.explain(X, rule=rule, param=param)
        seconds = best_time(lambda: net.explain(X, rule=rule, param=param), 3 if args.quick else 5)
        times[rule] = seconds
        rows = [f"lrpnb   {rule:9s} {batch / seconds:9.0f} images/s  {flops * batch / seconds / 1e9:6.1f} GFLOP/s "
                f"({flops * batch / seconds / 1e9 / gemm:.0%} of GEMM)"]
        if rule == "epsilon":
            numpy_seconds = best_time(lambda: toolbox_numpy.explain(net, X, rule, param), 1)
            R_numpy = toolbox_numpy.explain(net, X, rule, param)
            rows.append(f"numpy   {rule:9s} {batch / numpy_seconds:9.0f} images/s  -> lrpnb is "
                        f"{numpy_seconds / seconds:.1f}x; max rel. difference {relative(R, R_numpy):.1e}")
        if zennit_ok:
            explain = zennit_explainer(net, X.shape, rule, param)
            z_seconds = best_time(lambda: explain(X), 3)
            rows.append(f"zennit  {rule:9s} {batch / z_seconds:9.0f} images/s  -> lrpnb is "
                        f"{z_seconds / seconds:.1f}x; correlation {correlation(R, explain(X)):.4f}")
        report(rows)
    print(f"  alpha-beta / epsilon time: {times['alphabeta'] / times['epsilon']:.2f}")


def run_vgg(args, gemm, zennit_ok):
    net = vgg16()
    X = np.random.default_rng(3).uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)
    flops = 2 * forward_flops(net, X.shape)
    print(f"\nVGG-16 geometry without padding, batch 2, float32, "
          f"{flops / 2e9:.1f} GFLOP forward per image; forward + LRP")
    times = {}
    for rule, param in (("epsilon", 0.01), ("alphabeta", 2.0)):
        R = net.explain(X[:1], rule=rule, param=param)
        seconds = best_time(lambda: net.explain(X, rule=rule, param=param), 1 if args.quick else 2)
        times[rule] = seconds
        rate = flops * 2 / seconds / 1e9
        rows = [f"lrpnb   {rule:9s} {2 / seconds:7.2f} images/s  {rate:6.1f} GFLOP/s ({rate / gemm:.0%} of GEMM)"]
        if zennit_ok:
            R = net.explain(X, rule=rule, param=param)
            explain = zennit_explainer(net, X.shape, rule, param)
            z_seconds = best_time(lambda: explain(X), 1)
            rows.append(f"zennit  {rule:9s} {2 / z_seconds:7.2f} images/s  -> lrpnb is "
                        f"{z_seconds / seconds:.1f}x; correlation {correlation(R, explain(X)):.4f}")
        report(rows)
    print(f"  alpha-beta / epsilon time: {times['alphabeta'] / times['epsilon']:.2f}")


def run_targets(args):
    """All 10 classes of LeNet-5 from one forward pass, against its parts and
    against 10 separate explanations."""
    net, what = lenet()
    X = digits(256)
    rule, param = "epsilon", 0.01
    scores = net.forward(X)
    start = np.zeros_like(scores)
    start[:, 3] = scores[:, 3]
    forward = best_time(lambda: net.forward(X), 5)
    net.forward(X)
    one_pass = best_time(lambda: net.lrp(start, rule, param), 5)
    every = best_time(lambda: net.explain(X, target="all", rule=rule, param=param), 5)
    separate = best_time(lambda: [net.explain(X, target=c, rule=rule, param=param) for c in range(10)], 3)
    parts = forward + 10 * one_pass
    print(f"\nAll 10 classes of LeNet-5 ({what}), batch 256, epsilon, float32, target='all'")
    report([f"explain(target='all')        {every * 1e3:7.1f} ms",
            f"one forward + 10 LRP passes  {parts * 1e3:7.1f} ms  (forward {forward * 1e3:.1f} ms, "
            f"LRP pass {one_pass * 1e3:.1f} ms) -> ratio {every / parts:.2f}",
            f"10 separate explain() calls  {separate * 1e3:7.1f} ms -> ratio {every / separate:.2f}"])


def run_mlp(args, gemm):
    net = mlp()
    X = np.random.default_rng(4).normal(size=(4096, 784)).astype(np.float32)
    flops = 2 * forward_flops(net, X.shape)
    seconds = best_time(lambda: net.explain(X, rule="epsilon", param=0.01), 3)
    rate = flops * 4096 / seconds / 1e9
    print("\nMLP 784-1000-1000-10, batch 4096, float32, forward + epsilon LRP")
    report([f"lrpnb   {4096 / seconds:9.0f} images/s  {rate:6.1f} GFLOP/s ({rate / gemm:.0%} of GEMM)"])


def run_memory():
    """Peak memory of the VGG case against its floor: the activations kept
    for the relevance pass plus the weights."""
    # after compiling every kernel on a tiny network of the same layer kinds,
    # a sampler thread follows the resident memory while the VGG case runs;
    # the peak above the start is what explaining adds (the weights and the
    # input were there before)
    probe = f"""
import sys, threading, time, numpy as np, psutil
sys.path.insert(0, {str(HERE)!r})
import compare, lrpnb
net = compare.vgg16()
X = np.random.default_rng(3).uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)
lrpnb.Network([lrpnb.Convolution(np.ones((3, 3, 3, 8), np.float32), np.ones(8)), lrpnb.Rect(),
               lrpnb.Convolution(np.ones((1, 1, 8, 8), np.float32), np.ones(8)), lrpnb.MaxPool(),
               lrpnb.Flatten(), lrpnb.Linear(np.ones((32, 2), np.float32), np.ones(2))]
              ).explain(np.ones((1, 6, 6, 3), np.float32), rule='epsilon', param=0.01)
process = psutil.Process()
start = process.memory_info().rss
peak = [start]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.001)
thread = threading.Thread(target=sample)
thread.start()
net.explain(X, rule='epsilon', param=0.01)
done.set()
thread.join()
print(peak[0] - start)
"""
    added = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                               check=True).stdout.split()[-1])
    net = vgg16()
    shapes = [(2, 224, 224, 3)] + net.output_shapes((2, 224, 224, 3))
    activations = sum(4 * int(np.prod(s)) for s in shapes)
    weights = sum(layer.W.size + layer.B.size for layer in net.layers if hasattr(layer, "W")) * 4
    floor = activations + weights
    added += weights
    print(f"\nVGG peak memory (batch 2, float32): weights + what explaining adds = {added / 2**20:.0f} MiB; "
          f"activations {activations / 2**20:.0f} MiB + weights {weights / 2**20:.0f} MiB = "
          f"{floor / 2**20:.0f} MiB; ratio {added / floor:.2f}")


def run_compile():
    import tempfile

    code = ("import time; t = time.perf_counter(); import numpy as np, lrpnb, sys; "
            "sys.path.insert(0, %r); import compare; net, _ = compare.lenet(); "
            "net.explain(compare.digits(8), rule='epsilon', param=0.01); "
            "print(time.perf_counter() - t)" % str(HERE))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold_all = ("import time; t = time.perf_counter(); import numpy as np, lrpnb, sys; "
                    "sys.path.insert(0, %r); import compare; net, _ = compare.lenet(); X = compare.digits(8); "
                    "[net.explain(x, rule=r, param=p) for x in (X, X.astype(np.float64)) "
                    "for r, p in (('simple', None), ('epsilon', .01), ('alphabeta', 2.), ('flat', None), ('ww', None))]; "
                    "lrpnb.Network([lrpnb.MaxPool(), lrpnb.Flatten(), lrpnb.Linear(np.ones((4, 2)), np.ones(2)), lrpnb.Tanh(), lrpnb.SoftMax()])"
                    ".explain(np.ones((1, 4, 4, 1)), rule='alphabeta', param=1.); "
                    "print(time.perf_counter() - t)" % str(HERE))
        run = lambda source: float(subprocess.run([sys.executable, "-c", source], env=env, capture_output=True,  # noqa: E731
                                                  text=True, check=True).stdout.split()[-1])
        cold = run(cold_all)
        warm = run(code)
    print(f"\nCompile: cold compile of the LeNet-5 kernels (float32 and float64, all five rules, "
          f"max pooling, dense, Tanh, SoftMax): {cold:.1f} s; first explain() of LeNet-5 in a fresh "
          f"process with a warm cache: {warm:.2f} s after the start of the import")


#: the scaling scenarios: name, network, batch, repeats
SCALING = (("LeNet-5 b256", "lenet", 256, 5), ("LeNet-5 b4096", "lenet", 4096, 3),
           ("MLP b4096", "mlp", 4096, 3), ("VGG-16 b4", "vgg", 4, 2))


def scaling_worker(threads, skip_vgg, skip_zennit):
    """One thread count's figures, as a JSON line (run in a process of its own:
    numba reads NUMBA_NUM_THREADS when it is first imported)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        gemm = gemm_rate()
    zennit = None if skip_zennit else import_zennit()
    if zennit is not None:
        import torch

        torch.set_num_threads(threads)
    rng = np.random.default_rng(4)
    out = {"threads": threads, "numba_threads": lrpnb.kernels.workers(), "gemm": gemm, "rows": {},
           "lrpnb": lrpnb.__file__}
    for name, kind, batch, repeats in SCALING:
        if kind == "vgg" and skip_vgg:
            continue
        if kind == "lenet":
            net, X = lenet()[0], digits(batch)
        elif kind == "mlp":
            net, X = mlp(), rng.normal(size=(batch, 784)).astype(np.float32)
        else:
            net, X = vgg16(), rng.uniform(0, 1, (batch, 224, 224, 3)).astype(np.float32)
        seconds = best_time(lambda: net.explain(X, rule="epsilon", param=0.01), repeats)
        row = {"lrpnb": batch / seconds, "gflops": 2 * forward_flops(net, X.shape) * batch / seconds / 1e9}
        if zennit is not None:
            explain = zennit_explainer(net, X.shape, "epsilon", 0.01)
            row["zennit"] = batch / best_time(lambda: explain(X), repeats)
        out["rows"][name] = row
    print("RESULT " + json.dumps(out))


def _scaling_run(label, path, threads, args):
    """One worker process's figures for ``threads`` threads, lrpnb taken from
    ``path`` (None: this checkout)."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    if path is not None:
        env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, str(HERE / "compare.py"), "--scaling-worker", str(threads)]
    command += ["--skip-vgg"] if args.skip_vgg else []
    command += ["--skip-zennit"] if path is not None else []
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"the {label} run with {threads} threads failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _best(first, second):
    """The faster of two runs' figures, scenario by scenario (a shared
    machine's noise only ever slows a run down)."""
    if first is None:
        return second
    best = dict(first, gemm=max(first["gemm"], second["gemm"]), rows={})
    for name, row in first["rows"].items():
        other = second["rows"][name]
        best["rows"][name] = {key: max(value, other[key]) for key, value in row.items()}
    return best


def run_scaling(args):
    counts = [int(t) for t in args.threads.split(",")]
    checkouts = [("lrpnb", None)] + ([("before", os.path.abspath(args.against))] if args.against else [])
    results = {}
    for threads in counts:
        # the checkouts take turns, round after round, so that a slow spell
        # of the machine falls on both
        for _ in range(args.rounds):
            for label, path in checkouts:
                results[label, threads] = _best(results.get((label, threads)),
                                                _scaling_run(label, path, threads, args))
                print(f"  measured {label} ({results[label, threads]['lrpnb']}) at {threads} threads",
                      file=sys.stderr)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; float32, "
          f"epsilon 0.01, predicted class; images/s; one process per thread count")
    names = list(results["lrpnb", counts[0]]["rows"])
    base = counts[0]
    for name in names:
        print(f"\n{name}")
        header = "  T   GEMM GFLOP/s   lrpnb      zennit     lrpnb/zennit  efficiency  share of GEMM"
        header += "   before   after/before" if args.against else ""
        print(header)
        for threads in counts:
            now = results["lrpnb", threads]
            row = now["rows"][name]
            first = results["lrpnb", base]["rows"][name]["lrpnb"]
            efficiency = row["lrpnb"] / first / (threads / base)
            zennit = row.get("zennit")
            zennit_text = f"{zennit:9.1f}" if zennit else "        -"
            ratio_text = f"{row['lrpnb'] / zennit:10.2f}x" if zennit else "          -"
            line = (f"  {threads:<3d} {now['gemm']:10.0f}   {row['lrpnb']:9.1f}  {zennit_text}  {ratio_text}  "
                    f"{efficiency:9.0%}   {row['gflops'] / now['gemm']:10.0%}")
            if args.against:
                before = results["before", threads]["rows"][name]["lrpnb"]
                line += f"   {before:8.1f}   {row['lrpnb'] / before:8.2f}x"
            print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer repeats")
    parser.add_argument("--skip-vgg", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--threads", help="comma-separated thread counts: the scaling table")
    parser.add_argument("--against", help="with --threads: another checkout's lrpnb, measured beside")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --threads: runs per checkout, taking turns; each figure the best of them")
    parser.add_argument("--scaling-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip-zennit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_worker:
        return scaling_worker(args.scaling_worker, args.skip_vgg, args.skip_zennit)
    if args.threads:
        return run_scaling(args)
    zennit = import_zennit()
    gemm = gemm_rate()
    peers = "available" if zennit else "not installed (pip install '.[peers]')"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"numpy float32 GEMM (2048^2): {gemm:.0f} GFLOP/s; zennit {peers}")
    run_lenet(args, gemm, zennit is not None)
    run_targets(args)
    run_mlp(args, gemm)
    if not args.skip_vgg:
        run_vgg(args, gemm, zennit is not None)
        run_memory()
    if not args.skip_compile:
        run_compile()


if __name__ == "__main__":
    main()
