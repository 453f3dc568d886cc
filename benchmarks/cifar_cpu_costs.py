"""Where a cifar10-4000-cpu step spends its time (issue 18's protocol choice): RandAugment of the
unlabelled batch against the network's work, for cnn_small at three widths. The model work of a
FixMatch step at mu 7 is a forward + backward on 64 + 448 images and a no-grad forward on 448;
labels only is forward + backward on 64. Run alone on an idle machine:

    python benchmarks/cifar_cpu_costs.py          # torch's default threads (2 on this machine)
"""

from __future__ import annotations

import time

import torch

from semireg.augment import flip_pad_crop, rand_augment
from semireg.models import build_model


def seconds_per_call(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}")
    x_u = torch.rand(448, 3, 32, 32)  # (Bu, C, H, W) at mu 7
    print(f"weak view, 448 images: {seconds_per_call(lambda: flip_pad_crop(x_u, 4), 5):.4f} s")
    strong = lambda: rand_augment(flip_pad_crop(x_u, 4), num_ops=2, magnitude=10.0, magnitude_mode="uniform")
    print(f"RandAugment, 448 images: {seconds_per_call(strong, 5):.4f} s")
    for widths in ([32, 64, 128], [48, 96, 192], [64, 128, 256]):
        model = build_model("cnn_small", in_shape=(3, 32, 32), num_classes=10, hidden=widths)
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x_graph = torch.rand(512, 3, 32, 32).to(memory_format=torch.channels_last)  # labelled + strong view
        x_weak = torch.rand(448, 3, 32, 32).to(memory_format=torch.channels_last)

        def train_on(x: torch.Tensor) -> None:
            loss = model(x).logsumexp(1).mean()  # any scalar: the cost, not the value, is measured
            opt.zero_grad()
            loss.backward()
            opt.step()

        def fixmatch_work() -> None:
            with torch.no_grad():
                model(x_weak)
            train_on(x_graph)

        params = sum(p.numel() for p in model.parameters())
        print(
            f"cnn_small {widths} ({params:,} parameters): FixMatch-at-mu-7 model work "
            f"{seconds_per_call(fixmatch_work, 5):.3f} s, labels only at 64 {seconds_per_call(lambda: train_on(x_graph[:64]), 20):.3f} s"
        )


if __name__ == "__main__":
    main()
