"""What a training run tells its user while it runs: a per-batch progress bar on a terminal
(epoch i/N, the loss, time and ETA), one line per epoch in any case (loss, seconds, the
validation metric and the best so far, the time left at most), and the end line.

The bar shows the loss read from the device at most once per second (one host read per
refresh, none per batch otherwise), so it never slows a GPU step down; without a terminal (a
workflow job, a log file) there is no bar and nothing is read.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from tqdm.auto import tqdm

REFRESH_SECONDS = 1.0


class BatchBar:
    """tqdm over one epoch's batches, titled "epoch i/N", with the loss refreshed each second."""

    def __init__(self, n_batches: int, epoch: int, epochs: int, enabled: bool):
        self.bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not enabled,
                        unit="batch", dynamic_ncols=True)  # fmt: skip
        self.enabled = enabled
        self.last_refresh = time.monotonic()

    def step(self, loss: torch.Tensor | float | None) -> None:
        self.bar.update(1)
        if not self.enabled or loss is None or time.monotonic() - self.last_refresh < REFRESH_SECONDS:
            return
        self.bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)  # the refresh's one host read
        self.last_refresh = time.monotonic()

    def close(self) -> None:
        self.bar.close()


def epoch_line(
    row: dict[str, Any], epochs: int, valid_metric: str, best: tuple[float, int], seconds: list[float]
) -> str:
    """'epoch 12/300: loss 0.2345, 2.1 s + valid 0.4 s | valid recall@20 0.0812 (best 0.0830 at 10) |
    at most 9 min left' (early stopping usually ends the run sooner)."""
    epoch = int(row["epoch"])
    parts = [f"epoch {epoch + 1}/{epochs}:"]
    loss = row.get("train_loss")
    parts.append(f"loss {loss:.4f}," if isinstance(loss, float) and math.isfinite(loss) else "")
    timing = f"{row.get('train_seconds', 0.0):.1f} s"
    timing += f" + valid {row['eval_seconds']:.1f} s" if "eval_seconds" in row else ""
    text = " ".join(p for p in parts if p) + " " + timing
    score = row.get(f"valid_{valid_metric}")
    if score is not None:
        text += f" | valid {valid_metric} {score:.4f} (best {best[0]:.4f} at {best[1] + 1})"
    left = (epochs - epoch - 1) * (sum(seconds) / len(seconds)) if seconds else 0.0
    return text + (f" | at most {_duration(left)} left" if epoch + 1 < epochs else "")


def end_line(run_dir: str, metrics: dict[str, Any]) -> str:
    """'runs/lgn: best epoch 91 of 112; test recall@20 0.0762, ndcg@20 0.0322 (runs/lgn/metrics.json)'."""
    test = metrics.get("test", {})
    shown = ", ".join(f"{key} {test[key]:.4f}" for key in ("recall@20", "ndcg@20") if key in test)
    return (
        f"{run_dir}: best epoch {int(metrics.get('best_epoch', 0)) + 1} of {metrics.get('epochs_run')}; "
        f"test {shown} ({run_dir}/metrics.json)"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
