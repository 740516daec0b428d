"""Cold start: the first ``lrpnb demo`` after installing, and the first use of
each other rule, with an empty compile cache.

    python bench/coldstart.py [--rules alphabeta:2 flat gradient zplus gamma ww]

Each figure is a fresh process with ``NUMBA_CACHE_DIR`` pointing at a new
empty folder, as after ``pip install``: the demo compiles what it needs; then,
with the demo's kernels cached, each rule's first ``explain`` on the embedded
LeNet-5 compiles what that rule adds. A second demo run shows the warm start
(everything loaded from the cache).
"""
import argparse
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

FIRST_USE = """
import sys, time
import lrpnb
from lrpnb.digits import synthetic_digits
net = lrpnb.load("lenet5_synthetic")
X = synthetic_digits(8).images
name, _, text = sys.argv[1].partition(":")
start = time.perf_counter()
net.explain(X, rule=name, param=float(text) if text else None)
print(time.perf_counter() - start)
"""


def run(command, cache, cwd):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="*", default=["alphabeta:2", "flat", "gradient", "zplus", "gamma",
                                                        "ww"])
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as work:
        demo = [sys.executable, "-m", "lrpnb", "demo", "--out", work]
        cold, _ = run(demo, cache, work)
        warm, _ = run(demo, cache, work)
        print(f"  first lrpnb demo (empty cache)     {cold:6.1f} s")
        print(f"  second lrpnb demo (cache filled)   {warm:6.1f} s")
        for rule in args.rules:
            seconds, out = run([sys.executable, "-c", FIRST_USE, rule], cache, work)
            print(f"  first explain with {rule:<15} {float(out):6.1f} s  (process {seconds:.1f} s)")


if __name__ == "__main__":
    main()
