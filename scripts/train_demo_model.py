"""Train the LeNet-5 that ``lrpnb demo`` explains, on lrpnb's synthetic digits.

Run from the repository root:  python scripts/train_demo_model.py [OUT]

It draws the training and held-out digits with fixed seeds, trains with
lrpnb's own SGD (Network.train), and writes lrpnb/data/lenet5_synthetic.txt
(the toolbox's text format). Training batches are augmented with
lrpnb.digits.augmenter (noise, specks, shifts), so that the model does not
lean on the empty background. With the LRP Toolbox's MNIST test digits at
../shared/formats/data (or $LRPNB_SHARED/formats/data) it also reports the
accuracy there. The same seeds and settings give the same model on the same
machine (the sums run in a fixed order; BLAS builds may differ in the last bits).
"""
import os
import sys
import time

import lrpnb
from lrpnb.digits import augmenter, mnist_images, synthetic_digits
from lrpnb.training import accuracy, lenet5

#: everything that decides the model
SETTINGS = dict(train_count=40000, train_seed=1, heldout_count=5000, heldout_seed=2, init_seed=0,
                batchsize=64, iters=6000, lrate=0.01, momentum=0.9, status=500, sgd_seed=3,
                augment_seed=4)

OUT = os.path.join(os.path.dirname(__file__), "..", "lrpnb", "data", "lenet5_synthetic.txt")


def mnist_accuracy(net):
    shared = os.environ.get("LRPNB_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    folder = os.path.join(shared, "formats", "data")
    if not os.path.isdir(folder):
        return None
    digits = lrpnb.read_data(os.path.join(folder, "test_images.mat"))
    labels = lrpnb.read_data(os.path.join(folder, "test_labels.npy")).reshape(-1).astype(int)
    X = mnist_images(digits)
    return accuracy(net, X, labels)


def main():
    s = SETTINGS
    started = time.perf_counter()
    train = synthetic_digits(s["train_count"], seed=s["train_seed"])
    heldout = synthetic_digits(s["heldout_count"], seed=s["heldout_seed"])
    print(f"drew {s['train_count']} + {s['heldout_count']} digits in {time.perf_counter() - started:.1f} s")
    net = lenet5(seed=s["init_seed"])
    net.train(train.images, train.labels, heldout.images, heldout.labels, batchsize=s["batchsize"],
              iters=s["iters"], lrate=s["lrate"], momentum=s["momentum"], status=s["status"],
              seed=s["sgd_seed"], transform=augmenter(s["augment_seed"]))
    synthetic = accuracy(net, heldout.images, heldout.labels)
    print(f"held-out synthetic accuracy: {100 * synthetic:.2f}%")
    mnist = mnist_accuracy(net)
    if mnist is not None:
        print(f"MNIST test accuracy (10,000 toolbox digits): {100 * mnist:.2f}%")
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    lrpnb.save(net, out)
    print(f"wrote {os.path.normpath(out)} after {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
