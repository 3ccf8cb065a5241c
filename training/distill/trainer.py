"""The distillation losses and the resumable training loop.

Runs in the training process (``python -m training.run``) on its main thread, or in a
benchmark/test. The teacher only runs forward (no gradients, eval mode); the student trains
every weight except, by default, the tied embedding/head it shares with the teacher.

Loss per step (positions shifted as in next-token training, means over valid positions):

  alpha_kl  * T^2 * D(teacher || student)  at temperature T  (forward KL; reverse / skew options)
+ alpha_lm  * cross-entropy of the student on the real next tokens
+ alpha_cos * (1 - cos(student hidden, teacher hidden))  (last layer, or each student layer and
                                                          the teacher layer it was copied from)

Sequence-level distillation (different tokenizers) trains the same loop on text the teacher
wrote, with the language-model loss alone: there are no comparable logits.

Checkpoints (``<out>/checkpoints/step-N/state.pt``: student weights, optimizer, scheduler,
RNG, data position, losses) are written by training/checkpoints.py, so a kill at any moment
leaves a usable one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.settings import physical_cores
from training.checkpoints import (latest_checkpoint, publish_checkpoint, resolve_device, restore_rng, rng_state,
                                  warmup_cosine)
from training.datasets import PackedData
from training.distill.config import DistillConfig
from training.progress import JobCancelled, ProgressReporter


def divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str, temperature: float,
               skew_lambda: float = 0.1) -> torch.Tensor:
    """Per-position divergence (shape = logits.shape[:-1]) at ``temperature``, times T^2 so
    its gradient keeps the same scale whatever the temperature (Hinton et al., 2015)."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if kind == "forward":  # KL(teacher || student): the student covers every word the teacher finds likely
        value = (t.exp() * (t - s)).sum(-1)
    elif kind == "reverse":  # KL(student || teacher): mode-seeking, the student avoids what the teacher finds unlikely
        value = (s.exp() * (s - t)).sum(-1)
    elif kind in ("skew_forward", "skew_reverse"):
        # DistiLLM's skew KL: the second distribution is mixed with the first, which bounds the
        # divergence (and its gradient) when the student gives a word almost no probability.
        p, q = (t, s) if kind == "skew_forward" else (s, t)
        lam = torch.tensor(skew_lambda, dtype=p.dtype)
        mixed = torch.logaddexp(torch.log(lam) + p, torch.log1p(-lam) + q) if skew_lambda > 0 else q
        value = (p.exp() * (p - mixed)).sum(-1)
    else:
        raise ValueError(f"Unknown divergence {kind!r}.")
    return value * temperature ** 2


class _LayerOutputs:
    """Keeps the output of chosen decoder layers during a forward pass (hooks)."""

    def __init__(self, model, indices: list[int]):
        self.outputs: dict[int, torch.Tensor] = {}
        layers = model.model.layers
        self.handles = [layers[i].register_forward_hook(self._keep(i)) for i in indices]

    def _keep(self, i: int):
        def hook(_module, _args, output):
            self.outputs[i] = output[0] if isinstance(output, tuple) else output
        return hook

    def take(self) -> dict[int, torch.Tensor]:
        out, self.outputs = self.outputs, {}
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class DistillTrainer:
    """Trains ``student`` towards ``teacher`` (None for sequence-level data) on ``data``.

    ``layer_map[s]`` is the teacher layer student layer ``s`` mirrors (pruned students); with
    it the cosine loss can align every layer, otherwise only the last hidden states.
    """

    def __init__(self, student, teacher, data: PackedData, config: DistillConfig, out_dir: Path,
                 reporter: ProgressReporter, layer_map: list[int] | None = None):
        self.config = config
        self.device = resolve_device(config.device)
        if self.device.type == "cpu":
            torch.set_num_threads(config.threads or physical_cores())
        torch.manual_seed(config.seed)
        self.student = student.to(self.device)
        self.teacher = teacher.to(self.device) if teacher is not None else None
        self.data = data
        self.out_dir = Path(out_dir)
        self.reporter = reporter
        self.layer_map = list(layer_map) if layer_map is not None else None
        if self.teacher is not None:
            # Only ever run under no_grad (losses_for), so its parameters' flags are left alone.
            self.teacher.eval()
        if config.freeze_embeddings:
            for module in (self.student.get_input_embeddings(), self.student.get_output_embeddings()):
                if module is not None:
                    module.weight.requires_grad_(False)
        self.align = self._alignment()
        self._student_hooks = self._teacher_hooks = None
        if self.align == "mapped":
            self._student_hooks = _LayerOutputs(self.student, list(range(len(self.layer_map))))
            self._teacher_hooks = _LayerOutputs(self.teacher, sorted(set(self.layer_map)))

        per_step = config.batch_size * config.grad_accum
        self.steps_per_epoch = max(1, len(data.train_ids) // per_step)
        total = int(math.ceil(self.steps_per_epoch * config.epochs))
        # max_steps, when set, is the number of steps (as in transformers' Trainer): the data order
        # wraps into further epochs, so a short text still gives the steps asked for.
        self.total_steps = config.max_steps if config.max_steps else total
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           foreach=True)

        self.scheduler = warmup_cosine(self.optimizer, self.total_steps, config.warmup_steps, config.schedule)
        self.step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.losses: list[dict] = []

    def _alignment(self) -> str:
        c = self.config
        if self.teacher is None or c.alpha_cos == 0 or c.hidden_align == "none":
            return "none"
        same_width = self.student.config.hidden_size == self.teacher.config.hidden_size
        if c.hidden_align == "mapped" or (c.hidden_align == "auto" and self.layer_map is not None):
            if self.layer_map is None:
                raise ValueError("hidden_align 'mapped' needs a student pruned from the teacher (a layer map).")
            return "mapped" if same_width else "none"
        return "last" if same_width else "none"

    @property
    def uses_teacher_logits(self) -> bool:
        return self.teacher is not None

    # ----- the loss ---------------------------------------------------------------------------
    def losses_for(self, ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every loss term for one micro-batch and their weighted sum (``total``)."""
        c = self.config
        s_out = self.student.model(input_ids=ids, use_cache=False)
        s_hidden = s_out.last_hidden_state
        s_logits = self.student.lm_head(s_hidden[:, :-1])
        target = labels[:, 1:]
        valid = target != -100
        n_valid = valid.sum().clamp(min=1)
        terms: dict[str, torch.Tensor] = {}
        terms["lm"] = F.cross_entropy(s_logits.float().reshape(-1, s_logits.size(-1)), target.reshape(-1),
                                      ignore_index=-100)
        total = c.alpha_lm * terms["lm"]
        if self.teacher is not None:
            with torch.no_grad():
                t_out = self.teacher.model(input_ids=ids, use_cache=False)
                t_hidden = t_out.last_hidden_state
                t_logits = self.teacher.lm_head(t_hidden[:, :-1])
            if c.alpha_kl:
                per_pos = divergence(s_logits, t_logits, c.divergence, c.temperature, c.skew_lambda)
                terms["kl"] = (per_pos * valid).sum() / n_valid
                total = total + c.alpha_kl * terms["kl"]
            if self.align == "last":
                terms["cos"] = (1 - F.cosine_similarity(s_hidden.float(), t_hidden.float(), dim=-1)).mean()
            elif self.align == "mapped":
                s_layers, t_layers = self._student_hooks.take(), self._teacher_hooks.take()
                terms["cos"] = torch.stack([
                    (1 - F.cosine_similarity(s_layers[s].float(), t_layers[t].float(), dim=-1)).mean()
                    for s, t in enumerate(self.layer_map)]).mean()
            if "cos" in terms:
                total = total + c.alpha_cos * terms["cos"]
        terms["total"] = total
        return terms

    # ----- data -------------------------------------------------------------------------------
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(self.config.seed + epoch).permutation(len(self.data.train_ids))

    def _batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        start = (in_epoch * c.grad_accum + micro) * c.batch_size
        idx = self._order(epoch)[start:start + c.batch_size]
        return (torch.from_numpy(self.data.train_ids[idx]).to(self.device),
                torch.from_numpy(self.data.train_labels[idx]).to(self.device))

    # ----- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model=None) -> float | None:
        """Mean next-token loss on the held-out blocks (the student unless ``model`` is given)."""
        model = model if model is not None else self.student
        n = min(self.config.eval_blocks, len(self.data.eval_ids))
        if n == 0:
            return None
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for start in range(0, n, self.config.batch_size):
            stop = min(n, start + self.config.batch_size)
            ids = torch.from_numpy(self.data.eval_ids[start:stop]).to(self.device)
            labels = torch.from_numpy(self.data.eval_labels[start:stop]).to(self.device)
            hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state[:, :-1]
            target = labels[:, 1:]
            loss = F.cross_entropy(model.lm_head(hidden).float().reshape(-1, model.config.vocab_size),
                                   target.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((target != -100).sum())
        if self._student_hooks is not None:  # evaluation forwards must not leave stale layer outputs
            self._student_hooks.take()
            self._teacher_hooks.take()
        model.train(was_training)
        return total / max(1, count)

    # ----- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        def write(folder: Path) -> None:
            state = {
                "step": self.step, "tokens_seen": self.tokens_seen, "elapsed": self.elapsed,
                "losses": self.losses[-2000:], "student": self.student.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(), "config": self.config.to_dict(), "layer_map": self.layer_map,
            }
            torch.save(state, folder / "state.pt")

        final = publish_checkpoint(self.checkpoint_root, self.step, write)
        self.reporter.emit("checkpoint", step=self.step, path=str(final))
        return final

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoint_root)

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
        if state.get("layer_map") != self.layer_map:
            raise ValueError("The checkpoint was made for a student cut from other teacher layers; "
                             "start the job afresh instead of resuming it.")
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.tokens_seen, self.elapsed = state["step"], state["tokens_seen"], state["elapsed"]
        self.losses = list(state.get("losses", []))
        restore_rng(state["rng"])

    # ----- the loop ---------------------------------------------------------------------------
    def train(self) -> dict:
        """Train until ``total_steps`` or the time budget; on a stop request save and raise
        :class:`JobCancelled`. Returns step/token counts and the last losses."""
        self.reporter.defer_stop = True
        try:
            return self._loop()
        finally:
            self.reporter.defer_stop = False

    def _loop(self) -> dict:
        c = self.config
        self.student.train()
        block_tokens = c.batch_size * c.grad_accum * self.data.seq_len
        last_save = time.monotonic()
        rate = None
        stopped_by_budget = False
        params = [p for p in self.student.parameters() if p.requires_grad]
        while self.step < self.total_steps:
            if self.reporter.stop_requested:
                self.save_checkpoint()
                raise JobCancelled(self.step)
            if c.time_budget_s and self.elapsed >= c.time_budget_s:
                stopped_by_budget = True
                break
            started = time.perf_counter()
            sums: dict[str, float] = {}
            for micro in range(c.grad_accum):
                ids, labels = self._batch(self.step, micro)
                terms = self.losses_for(ids, labels)
                (terms["total"] / c.grad_accum).backward()
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach()) / c.grad_accum
            if c.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            took = time.perf_counter() - started
            self.step += 1
            self.tokens_seen += block_tokens
            self.elapsed += took
            self.losses.append({"step": self.step, **{k: round(v, 5) for k, v in sums.items()}})
            step_rate = block_tokens / max(took, 1e-9)
            rate = step_rate if rate is None else 0.8 * rate + 0.2 * step_rate
            if self.step % c.log_every == 0 or self.step == self.total_steps:
                eta = (self.total_steps - self.step) * block_tokens / rate
                if c.time_budget_s:
                    eta = min(eta, max(0.0, c.time_budget_s - self.elapsed))
                self.reporter.step(self.step, self.total_steps, sums["total"], rate, eta,
                                   lr=self.scheduler.get_last_lr()[0], tokens=self.tokens_seen,
                                   **{f"loss_{k}": round(v, 5) for k, v in sums.items() if k != "total"})
            due = self.step % c.checkpoint_every == 0 or time.monotonic() - last_save > c.checkpoint_seconds
            if due and self.step < self.total_steps:
                self.save_checkpoint()
                last_save = time.monotonic()
        self.student.eval()
        return {"steps": self.step, "total_steps": self.total_steps, "tokens": self.tokens_seen,
                "train_seconds": round(self.elapsed, 2),
                "tokens_per_s": round(self.tokens_seen / max(self.elapsed, 1e-9), 2),
                "stopped_by_time_budget": stopped_by_budget,
                "final_losses": self.losses[-1] if self.losses else None,
                "loss_curve": self.losses[:: max(1, len(self.losses) // 50)]}

    def close(self) -> None:
        for hooks in (self._student_hooks, self._teacher_hooks):
            if hooks is not None:
                hooks.remove()
