"""The client's side of ``lrpnb evaluate`` on a Dask cluster: chunks of whole
batches handed out, each worker explaining and perturbing its own samples
(lrpnb.distributed.tasks.evaluate_chunk), their curves taken in order. The
curves are the local run's bit for bit (lrpnb.pipeline.curves). Nothing is
written before every chunk is in, so an interrupted evaluation keeps
nothing."""
import signal
import sys
import threading
import time

from ..pipeline.options import embedded_model, open_model
from ..pipeline.remote import absolute
from . import tasks
from .run import _progress, hand_out, plan_chunks

__all__ = ["evaluate_chunks"]


def _spec(plan, model):
    """What a worker needs to evaluate a chunk: files by absolute paths, read where they lie."""
    s = plan.settings
    path, _, _ = open_model(embedded_model() if model is None else model, s.weights)
    return dict(network=None if path is not None else model, model_path=absolute(path), device=s.device,
                weights=absolute(s.weights), data=absolute(s.data), dataset=s.dataset, size=s.size, resize=s.resize,
                crop=s.crop, input_range=plan.input_range, mean=s.mean, std=s.std, channel_order=s.channel_order,
                batch_size=s.batch_size, methods=plan.methods, target=plan.target, curve=plan.curve,
                relevance=absolute(s.relevance),
                synthetic=(plan.source.count, plan.source.seed) if plan.synthetic else None)


def evaluate_chunks(plan, client, model, chunk=None):
    """(the batches' (kept, followed, curves), in order; seconds) of an
    evaluation on ``client``'s cluster; ``chunk``: batches per chunk."""
    s, count = plan.settings, plan.count
    workers = len(client.scheduler_info().get("workers", {}))
    chunks = plan_chunks([(0, count)], s.batch_size, workers, chunk)
    parts, failures = [], []
    bar = _progress(count, "evaluating")

    def take(result):
        for index, message in result["problems"]:
            failures.append(index)
            print(f"lrpnb evaluate: skipped sample {index}: {message}", file=sys.stderr)
        parts.extend(result["parts"])
        bar.update(result["last"] - result["first"])

    began = time.perf_counter()
    stop, running = [], []
    in_main_thread = threading.current_thread() is threading.main_thread()
    # Ctrl-C sets a flag checked while waiting for chunks, as in the explain run
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum)) if in_main_thread else None
    try:
        hand_out(client, tasks.evaluate_chunk, _spec(plan, model), chunks, 2 * max(1, workers) + 2, running,
                 stop, take, data=s.data or "the synthetic digits")
    except BaseException as error:
        bar.close()
        try:
            client.cancel(running)
        except Exception:  # noqa: BLE001 - a client already gone has nothing left to cancel
            pass
        if isinstance(error, KeyboardInterrupt):
            error.reported = True
            print("lrpnb evaluate: interrupted; nothing written", file=sys.stderr)
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    bar.close()
    return parts, time.perf_counter() - began
