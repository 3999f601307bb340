"""Run logging: one JSON line per epoch, TensorBoard scalars, and a console summary (rank 0 only)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RunLogger:
    def __init__(self, out_dir: Path | None, *, enabled: bool, tensorboard: bool, progress: bool,
                 quiet: bool = False):
        self.out_dir = out_dir
        self.enabled = enabled
        #: quiet: no epoch or info lines on the console, only warnings (files and TensorBoard as usual)
        self.quiet = quiet
        self.console = Console(stderr=True, soft_wrap=True)
        # a live bar only on a terminal: in a log file or a pipe it leaves a blank line per epoch, and the
        # epoch lines already say how far the run is
        self.show_progress = enabled and progress and not quiet and self.console.is_terminal
        self._tb = None
        if enabled and tensorboard and out_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but stay usable without it
                self.console.print("[yellow]tensorboard not installed: no TensorBoard logs[/]")

    def rewrite_history(self, rows: list[dict]) -> None:
        """On resume, the checkpoint's history is the truth: rewrite the JSONL to match it."""
        if self.enabled and self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")

    def log_epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        if self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch" and v is not None:
                    self._tb.add_scalar(k, v, row["epoch"])
            for k, v in row.get("health", {}).items():  # a method's mechanism figures (Method.health)
                if v is not None:
                    self._tb.add_scalar(f"health/{k}", v, row["epoch"])
            self._tb.flush()
        shown = {k: row[k] for k in ("train_loss", "val_acc", "test_acc", "memorised", "lr",
                                            "train_seconds") if row.get(k) is not None}
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        if not self.quiet:
            self.console.print(f"epoch {row['epoch'] + 1}/{row['num_epochs']}  {text}")

    def progress(self, total: int, description: str):
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=self.console, transient=True, disable=not self.show_progress)

    def info(self, msg: str) -> None:
        """A console line; when quiet, only the ones that start with ``warning:``."""
        if self.enabled and (not self.quiet or msg.startswith("warning:")):
            self.console.print(msg)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
