"""``lrpnb explain`` on Dask against the local run, and how far the scheduler scales.

    python bench/distributed.py [--count 20000] [--batch-size 256] [--skip-simulation]

1. Samples/s of the local run (the kernels on every core) against Dask runs
   of 1 and 2 worker processes (``workers=N``: the cores shared out, one
   kernel thread each on this 2-core machine), LeNet-5 on synthetic digits,
   epsilon 0.01, written to .h5 and .zarr; each run once to warm up (numba's
   cache loaded, workers started), then best of --repeats. The results are
   checked bit for bit against the local run's.
2. The scheduler's own cost per task: no-op tasks through the 2-worker
   cluster, tasks/s; and what 1 and 2 plain processes of one kernel thread
   each reach without Dask, explaining chunks at once
   (``lrpnb.distributed.tasks.chunk_rows``, timed together): the ceiling
   of the workers.
3. A simulation of many workers: an in-process cluster of W workers fed
   4 x W tasks that only sleep for the duration of a chunk; parallel
   efficiency = (tasks x duration / W) / wall time, for W = 8, 32, 128 and
   chunk durations from LeNet-5's (tens of ms) to 2 s.
4. ``--vgg``: the same, run at 128 worker threads (16 processes of 8) with tasks as long as
   the largest default chunk of VGG-16 on ImageNet (``plan_chunks`` of
   1,281,167 images, batch 64, 128 workers: 8 batches) at VGG-16's measured
   rate on one core (bench/README: 2.49 images/s on this 2-core machine,
   1.245 per core): 411 s per task, 512 tasks, about half an hour (not
   measured in this form; bench/README).
5. ``--vgg-plan [--scale S]``: the whole default plan of chunks (shrinking
   towards the end) of a data set of 4 x 128 x 512 images at 128 workers,
   each task sleeping for its chunk's VGG-16 time divided by S (default
   10: shorter tasks make the scheduler's share larger, so the efficiency
   measured is a lower bound of the unscaled one).
"""
import argparse
import logging
import os
import platform
import sys
import tempfile
import time

import numpy as np

# this file's name is the package's: its folder must not hide dask.distributed
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]


def _explain(data, out, batch_size, **cluster):
    import lrpnb

    began = time.perf_counter()
    summary = lrpnb.explain_dataset("lenet5_synthetic", data, out, batch_size=batch_size, rule="epsilon",
                                    param=0.01, overwrite=True, verbose=False, **cluster)
    return summary.explained / (time.perf_counter() - began)


def _best(repeats, run):
    return max(run() for _ in range(repeats))


def _same(a, b):
    import h5py
    import zarr

    def read(path):
        if path.endswith(".zarr"):
            group = zarr.open_group(path, mode="r")
            return {name: group[name][...] for name in group.array_keys()}
        with h5py.File(path, "r") as handle:
            return {name: handle[name][...] for name in handle}

    a, b = read(a), read(b)
    return sorted(a) == sorted(b) and all(a[name].tobytes() == b[name].tobytes() for name in a)


def throughput(count, batch_size, repeats, folder):
    """Samples/s of the local run and of Dask runs on 1 and 2 workers."""
    from distributed import Client, LocalCluster

    from lrpnb.digits import synthetic_digits

    data = os.path.join(folder, "digits.npy")
    np.save(data, synthetic_digits(count, seed=7).images)
    local = os.path.join(folder, "local.h5")
    _explain(data, local, batch_size)
    rows = [("local run, 2 kernel threads, .h5", _best(repeats, lambda: _explain(data, local, batch_size)), True)]
    for workers in (1, 2):
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.CRITICAL, env={"NUMBA_NUM_THREADS": threads}) as cluster, \
                Client(cluster) as client:
            for suffix in (".h5", ".zarr"):
                out = os.path.join(folder, f"dask{workers}{suffix}")
                _explain(data, out, batch_size, client=client)
                rate = _best(repeats, lambda: _explain(data, out, batch_size, client=client))
                rows.append((f"Dask, {workers} worker(s) x {threads} kernel thread(s), {suffix}", rate,
                             _same(local, out)))
            if workers == 2:
                overhead = scheduler_overhead(client)
    return rows, overhead


def _chunk_rate(data, batch_size, chunk, ready, go):
    """Samples/s of lrpnb.distributed.tasks.chunk_rows in this process,
    without Dask: warmed up, then ``ready`` is made and the timing starts
    when ``go`` exists (every process measured at the same time)."""
    from lrpnb.distributed.run import _spec
    from lrpnb.distributed.tasks import chunk_rows
    from lrpnb.pipeline.explain import _plan

    plan = _plan("lenet5_synthetic", data, data + ".unused.h5", dataset=None, rule="epsilon", param=0.01,
                 composite=None, target="pred", device=None, batch_size=batch_size, png=None, cmap="bwr",
                 input_range=(-1.0, 1.0), size=None, resize=None, crop=None, mean=None, std=None,
                 channel_order="rgb", overwrite=True, compress=False, class_names=None, weights=None, mask=None,
                 dtype=None, position=None)
    spec = _spec(plan, "lenet5_synthetic")
    chunk_rows(spec, 0, chunk)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    began, done = time.perf_counter(), 0
    count = len(plan.source)
    for first in range(0, count - chunk + 1, chunk):  # the chunks of the data, as a worker would
        chunk_rows(spec, first, first + chunk)
        done += chunk
    return done / (time.perf_counter() - began)


def _plain_environment():
    """This process's environment for a plain process of one kernel thread,
    without the MALLOC_TRIM_THRESHOLD_ that starting a Dask cluster leaves
    in it (Dask's nanny sets it in its parent's os.environ: the plain
    processes measured after a cluster ran had inherited it, and ran at
    half speed)."""
    environment = {name: value for name, value in os.environ.items() if name != "MALLOC_TRIM_THRESHOLD_"}
    return dict(environment, NUMBA_NUM_THREADS="1")


def ceiling(count, batch_size, folder, processes=2):
    """Samples/s of ``processes`` plain processes (one kernel thread each, no
    Dask) each explaining the data's chunks, timed together: what N
    single-thread workers can reach on this machine whatever the engine."""
    import subprocess
    import sys

    from lrpnb.digits import synthetic_digits

    data = os.path.join(folder, "digits.npy")
    if not os.path.exists(data):
        np.save(data, synthetic_digits(count, seed=7).images)
    go = os.path.join(folder, f"go{processes}")
    readies = [os.path.join(folder, f"ready{processes}-{k}") for k in range(processes)]
    running = []
    for ready in readies:
        code = (f"import sys; sys.path[:] = [e for e in sys.path if e != {_HERE!r}]; "
                f"import runpy; bench = runpy.run_path({os.path.abspath(__file__)!r}); "
                f"print(bench['_chunk_rate']({data!r}, {batch_size}, {8 * batch_size}, {ready!r}, {go!r}))")
        running.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                        env=_plain_environment()))
    while not all(os.path.exists(ready) for ready in readies):
        time.sleep(0.01)
    open(go, "w").close()
    return [float(process.communicate()[0].split()[-1]) for process in running]


def _noop(index):
    return index


def scheduler_overhead(client, tasks=2000):
    """Seconds per no-op task through the scheduler to the workers and back."""
    client.gather(client.map(_noop, range(100), pure=False))  # warm
    began = time.perf_counter()
    client.gather(client.map(_noop, range(tasks), pure=False))
    return (time.perf_counter() - began) / tasks


def simulate(workers_list, durations):
    """Parallel efficiency of W in-process workers running 4 x W sleeping tasks."""
    from distributed import Client, LocalCluster

    for workers in workers_list:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None,
                          silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
            client.wait_for_workers(workers)
            for duration in durations:
                tasks = 4 * workers
                began = time.perf_counter()
                client.gather(client.map(time.sleep, [duration] * tasks, pure=False))
                wall = time.perf_counter() - began
                yield workers, duration, tasks, wall, tasks * duration / workers / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-simulation", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--vgg", action="store_true", help="only the run of VGG-16's default chunks at 128 workers")
    parser.add_argument("--vgg-plan", action="store_true", help="only the run of a whole default plan at 128 workers")
    parser.add_argument("--scale", type=float, default=10.0, help="--vgg-plan's durations divided by this")
    args = parser.parse_args()
    if args.vgg:
        vgg()
        return
    if args.vgg_plan:
        vgg_plan(args.scale)
        return
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; LeNet-5, {args.count} "
          f"synthetic digits, epsilon 0.01, batch {args.batch_size}")
    if not args.skip_throughput:
        with tempfile.TemporaryDirectory() as folder:
            rows, overhead = throughput(args.count, args.batch_size, args.repeats, folder)
        local = rows[0][1]
        print(f"| run | samples/s | of the local run | bit-identical |\n|---|---:|---:|---|")
        for name, rate, same in rows:
            print(f"| {name} | {rate:,.0f} | {rate / local:.0%} | {'yes' if same else 'NO'} |")
        print(f"scheduler: {overhead * 1e3:.2f} ms per no-op task ({1 / overhead:,.0f} tasks/s) on this machine")
        with tempfile.TemporaryDirectory() as folder:
            for processes in (1, 2):
                rates = ceiling(args.count, args.batch_size, folder, processes)
                print(f"without Dask, {processes} process(es) x 1 kernel thread explaining chunks at once: "
                      f"{sum(rates):,.0f} samples/s ({', '.join(f'{rate:,.0f}' for rate in rates)}), "
                      f"{sum(rates) / local:.0%} of the local run")
    if args.skip_simulation:
        return
    print("| workers | task (s) | tasks | wall (s) | efficiency |\n|---:|---:|---:|---:|---:|")
    for workers, duration, tasks, wall, efficiency in simulate((8, 32, 128), (0.02, 0.2, 2.0)):
        print(f"| {workers} | {duration:g} | {tasks} | {wall:.2f} | {efficiency:.0%} |", flush=True)


#: VGG-16's images/s on one core of this machine (epsilon, float32; bench/README: 2.49 on both cores)
VGG_RATE = 2.49 / 2


def vgg(workers=128, images=1281167, batch_size=64):
    """128 workers, 4 x 128 tasks as long as VGG-16's default chunk of ImageNet."""
    from lrpnb.distributed.run import plan_chunks

    first, last = plan_chunks([(0, images)], batch_size, workers)[0]
    batches = -(-(last - first) // batch_size)
    duration = batches * batch_size / VGG_RATE
    print(f"VGG-16 on {images:,} images, batch {batch_size}, {workers} workers: default chunk {batches} batches "
          f"= {batches * batch_size} images = {duration:.0f} s at {VGG_RATE:g} images/s per worker")
    from distributed import Client

    tasks = 4 * workers
    with _threads_in_processes(workers) as cluster, Client(cluster) as client:
        client.wait_for_workers(len(cluster.workers))
        began = time.perf_counter()
        client.gather(client.map(time.sleep, [duration] * tasks, pure=False))
        wall = time.perf_counter() - began
    print(f"| workers | task (s) | tasks | wall (s) | efficiency |\n|---:|---:|---:|---:|---:|\n"
          f"| {workers} | {duration:.0f} | {tasks} | {wall:.1f} | {tasks * duration / workers / wall:.1%} |")


def _threads_in_processes(workers, processes=16):
    """A local cluster of ``workers`` worker threads in ``processes`` worker
    processes: 128 in-process workers share one event loop with the
    scheduler, which then became the bottleneck itself."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=processes, threads_per_worker=workers // processes, processes=True,
                        dashboard_address=None, silence_logs=logging.CRITICAL)


def _sleeping_chunk(seconds_per_sample, first, last):
    """A chunk of work that only sleeps for its samples' time."""
    time.sleep((last - first) * seconds_per_sample)
    return dict(first=first, last=last)


def vgg_plan(scale, workers=128, batch_size=64):
    """The default plan of chunks of 4 x 128 x 512 images on 128 workers,
    each task sleeping for its chunk's VGG-16 time / ``scale``, handed out
    by the client's loop of a run (lrpnb.distributed.run.hand_out: a
    window of 2 x workers + 2 chunks, results taken in order)."""
    from distributed import Client

    from lrpnb.distributed.run import hand_out, plan_chunks

    images = 4 * workers * 8 * batch_size
    chunks = plan_chunks([(0, images)], batch_size, workers)
    durations = [(last - first) / VGG_RATE / scale for first, last in chunks]
    ideal = sum(durations) / workers
    print(f"{images:,} images, batch {batch_size}, {workers} workers: {len(durations)} chunks of "
          f"{max(durations):.1f} s down to {min(durations):.1f} s (VGG-16 at {VGG_RATE:g} images/s per worker, "
          f"durations / {scale:g}); ideal wall {ideal:.1f} s")
    with _threads_in_processes(workers) as cluster, Client(cluster) as client:
        client.wait_for_workers(len(cluster.workers))
        began = time.perf_counter()
        hand_out(client, _sleeping_chunk, 1 / VGG_RATE / scale, chunks, 2 * workers + 2, [], [], lambda result: None)
        wall = time.perf_counter() - began
    print(f"| workers | chunks | ideal (s) | wall (s) | efficiency |\n|---:|---:|---:|---:|---:|\n"
          f"| {workers} | {len(durations)} | {ideal:.1f} | {wall:.1f} | {ideal / wall:.1%} |", flush=True)


if __name__ == "__main__":
    main()
