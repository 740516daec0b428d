"""Regenerate the example files in this folder (seeded; run from anywhere).

- tiny_cnn.txt: Convolution 3x3x1x4, Rect, SumPool 2x2, Flatten, Linear 36x3,
  for 8x8 one-channel images; tiny_cnn_inputs.npy: 16 such images.
- mlp.txt: Linear 4x6, Tanh, Linear 6x3, SoftMax; mlp_legacy.txt: the same
  model in the legacy Linear variant (one line per weight row);
  mlp_inputs.txt: 5 samples of 4 features.
- toolbox/digits/*.png: three synthetic digits (lrpnb.digits, seed 21, 32x32
  grey PNGs named digit<k>_<label>.png) for the toolbox batch-mode example in
  toolbox/ (config.txt and files.txt are written by hand).
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def numbers(values):
    return " ".join(f"{v:.4f}" for v in np.ravel(values)) + "\n"


def main():
    rng = np.random.default_rng(2016)
    conv_w = rng.normal(0, 0.5, (3, 3, 1, 4)).round(4)
    conv_b = rng.normal(0, 0.1, 4).round(4)
    dense_w = rng.normal(0, 0.3, (36, 3)).round(4)
    dense_b = rng.normal(0, 0.1, 3).round(4)
    with open(os.path.join(HERE, "tiny_cnn.txt"), "w") as f:
        f.write("Convolution 3 3 1 4 1 1\n" + numbers(conv_w) + numbers(conv_b))
        f.write("Rect\nSumPool 2 2 2 2\nFlatten\n")
        f.write("Linear 36 3\n" + numbers(dense_w) + numbers(dense_b))
    images = rng.uniform(-1, 1, (16, 8, 8, 1)).round(3)
    np.save(os.path.join(HERE, "tiny_cnn_inputs.npy"), images)

    w1 = rng.normal(0, 1, (4, 6)).round(4)
    b1 = rng.normal(0, 0.1, 6).round(4)
    w2 = rng.normal(0, 1, (6, 3)).round(4)
    b2 = rng.normal(0, 0.1, 3).round(4)
    with open(os.path.join(HERE, "mlp.txt"), "w") as f:
        f.write("Linear 4 6\n" + numbers(w1) + numbers(b1) + "Tanh\n")
        f.write("Linear 6 3\n" + numbers(w2) + numbers(b2) + "SoftMax\n")
    with open(os.path.join(HERE, "mlp_legacy.txt"), "w") as f:
        f.write("Linear 4 6\n" + "".join(numbers(row) for row in w1) + numbers(b1) + "Tanh\n")
        f.write("Linear 6 3\n" + "".join(numbers(row) for row in w2) + numbers(b2) + "SoftMax\n")
    np.savetxt(os.path.join(HERE, "mlp_inputs.txt"), rng.uniform(-1, 1, (5, 4)).round(3), fmt="%.3f")


def toolbox_digits():
    from PIL import Image

    from lrpnb.digits import synthetic_digits

    folder = os.path.join(HERE, "toolbox", "digits")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".png"):
            os.remove(os.path.join(folder, name))
    digits = synthetic_digits(3, seed=21)
    for k, (image, label) in enumerate(zip(digits.images, digits.labels)):
        pixels = np.round((image[..., 0] + 1) * 127.5).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"digit{k}_{label}.png"))
    with open(os.path.join(HERE, "toolbox", "files.txt"), "w") as f:
        for k, label in enumerate(digits.labels):
            f.write(f"digit{k}_{label}.png {-2 if k == 1 else -1}\n")


if __name__ == "__main__":
    main()
    toolbox_digits()
