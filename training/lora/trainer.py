"""The LoRA training loop: packed blocks in, a peft adapter out, resumable at any step.

Runs in the training process on its main thread; under ``torchrun`` every rank runs it and
PyTorch's DistributedDataParallel (gloo on CPU, NCCL on CUDA) averages the adapter gradients.
Rank 0 alone writes checkpoints and progress.

Why it is faster than a plain transformers + peft loop on a CPU (measured in
benchmarks/lora_throughput.py):

* one thread per physical core (torch's default counts hyper-threads on some machines);
* the language-model head and the loss are fused (``_FusedHeadLoss``): computed in slices
  of the sequence with their gradient at once, so the full (batch x seq x vocab) fp32
  logits, their log-softmax and their gradient (200 MB each for SmolLM2 at batch 4 x 256)
  are never materialised;
* no KV cache, no attention mask tensor (packed blocks are plain causal), LoRA dropout 0;
* AdamW over the adapter parameters only, foreach implementation.

Checkpoints (``<out>/checkpoints/step-N``) hold the adapter, optimizer, scheduler, RNG states
and the data position; training/checkpoints.py writes them so that a kill at any moment leaves
either the old or the new checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.settings import physical_cores
from training.checkpoints import (latest_checkpoint, publish_checkpoint, resolve_device, restore_rng, rng_state,
                                  warmup_cosine)
from training.datasets import PackedData
from training.lora.config import LoraTrainConfig
from training.progress import JobCancelled, ProgressReporter

#: Sequence positions per slice of the head + loss computation; 128 x 49k vocab x 4 bytes
#: x batch 4 = 100 MB per slice live at once instead of 200 MB for the whole block.
HEAD_SLICE = 128


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def attach_lora(model, config: LoraTrainConfig):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=config.target_modules, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _inner_causal_lm(peft_model):
    """The transformers ``*ForCausalLM`` under the peft wrapper (LoRA layers injected in place)."""
    return peft_model.get_base_model()


class _FusedHeadLoss(torch.autograd.Function):
    """Summed next-token cross-entropy of ``hidden @ weight.T`` over a frozen head.

    Forward computes, slice by slice of the sequence, the loss and at once its gradient with
    respect to the hidden states ((softmax - one-hot) @ W), keeping only that gradient
    (batch x seq x hidden) for backward. So the (batch x seq x vocab) logits, their
    log-softmax and their gradient are never held, and nothing is recomputed: the same two
    matrix products a plain loop does, a fraction of its memory traffic and peak memory.
    Positions masked with -100 (a translation pair's prompt) skip the head altogether.
    Valid because LoRA never trains the head (its weight gets no gradient).
    """

    @staticmethod
    def forward(ctx, hidden, labels, weight, softcap, slice_len):
        want_grad = hidden.requires_grad
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_hidden = torch.zeros_like(hidden) if want_grad else None
        width = hidden.size(-1)
        for start in range(0, hidden.size(1), slice_len):
            h = hidden[:, start:start + slice_len]
            y = labels[:, start:start + slice_len].reshape(-1)
            # Only positions that are scored go through the head: a translation pair's prompt
            # (masked with -100) costs no (tokens x vocab) product, which for Gemma's 262k
            # vocabulary is about half of a step.
            keep = (y != -100).nonzero().squeeze(1)
            if keep.numel() == 0:
                continue
            y = y.index_select(0, keep)
            kept_h = h.reshape(-1, width).index_select(0, keep)
            raw = F.linear(kept_h, weight).float()
            logits = torch.tanh(raw / softcap) * softcap if softcap else raw
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, y.unsqueeze(1)).squeeze(1)
            total = total + (lse - picked).sum()
            if want_grad:
                grad = torch.softmax(logits, dim=-1)
                grad[torch.arange(len(y), device=grad.device), y] -= 1.0
                if softcap:
                    grad *= 1.0 - torch.tanh(raw / softcap) ** 2
                rows = torch.zeros(h.size(0) * h.size(1), width, dtype=hidden.dtype, device=hidden.device)
                rows.index_copy_(0, keep, (grad.to(weight.dtype) @ weight).to(hidden.dtype))
                grad_hidden[:, start:start + slice_len] = rows.view(h.shape)
        ctx.save_for_backward(grad_hidden if want_grad else hidden.new_empty(0))
        return total

    @staticmethod
    def backward(ctx, grad_total):
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_total, None, None, None, None


def causal_lm_loss(model, input_ids: torch.Tensor, labels: torch.Tensor, slice_len: int = HEAD_SLICE) -> torch.Tensor:
    """Mean next-token loss of ``model`` (a peft model or DDP around one), the same value
    transformers computes with ``labels=``, with the head evaluated slice by slice."""
    core = model.module if hasattr(model, "module") and not hasattr(model, "get_base_model") else model
    lm = _inner_causal_lm(core)
    # DDP must see the forward go through its own __call__ to hook gradient all-reduce, so the
    # body runs through ``model`` itself; the base model returns hidden states when asked.
    model(input_ids=input_ids, use_cache=False, return_dict=True,
          logits_to_keep=slice(0, 0))  # the full head is skipped; it is computed below in slices
    hidden = lm._h1_last_hidden  # captured by the hook installed in prepare_model
    lm._h1_last_hidden = None
    shift_labels = labels[:, 1:]
    hidden = hidden[:, :-1]
    weight = lm.get_output_embeddings().weight
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    if weight.requires_grad:
        raise ValueError("The language-model head must stay frozen for LoRA training.")
    total = _FusedHeadLoss.apply(hidden, shift_labels, weight, softcap, slice_len)
    count = (shift_labels != -100).sum().clamp(min=1)
    return total / count


def prepare_model(peft_model) -> None:
    """Capture the final hidden states (after the last norm) so the loss can skip the full head."""
    lm = _inner_causal_lm(peft_model)

    def keep(_module, _inputs, output):
        lm._h1_last_hidden = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)

    lm.model.register_forward_hook(keep)


class LoraTrainer:
    """One training run; see the module docstring. Construct on the training process's main thread."""

    def __init__(self, model, tokenizer, data: PackedData, config: LoraTrainConfig, out_dir: Path,
                 reporter: ProgressReporter, dist: DistInfo | None = None):
        self.config = config
        self.tokenizer = tokenizer
        self.data = data
        self.out_dir = Path(out_dir)
        self.reporter = reporter
        self.dist = dist or DistInfo()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.dist.active:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if self.device.type == "cpu":
            cores = config.threads or physical_cores()
            torch.set_num_threads(max(1, cores // (self.dist.world_size if self.dist.active else 1)))
        torch.manual_seed(config.seed)
        self.peft_model = attach_lora(model, config).to(self.device)
        prepare_model(self.peft_model)
        self.model = self.peft_model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.peft_model, device_ids=[self.device.index]
                                                 if self.device.type == "cuda" else None)
        if config.compile:
            self.model = torch.compile(self.model)
        params = [p for p in self.peft_model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           foreach=True)
        per_step = config.batch_size * config.grad_accum * self.dist.world_size
        self.steps_per_epoch = max(1, len(data.train_ids) // per_step)
        total = math.ceil(config.epochs * self.steps_per_epoch)
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        self.scheduler = warmup_cosine(self.optimizer, self.total_steps, config.warmup_steps, config.schedule)
        self.step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.losses: list[float] = []

    # ----- data order -------------------------------------------------------------------
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(self.config.seed + epoch).permutation(len(self.data.train_ids))

    def _batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, w = self.config, self.dist.world_size
        per_step = c.batch_size * c.grad_accum * w
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        order = self._order(epoch)
        start = in_epoch * per_step + (micro * w + self.dist.rank) * c.batch_size
        # Modulo: a tiny data set with more ranks x batch than blocks still gives full batches.
        idx = order[np.arange(start, start + c.batch_size) % len(order)]
        ids = torch.from_numpy(self.data.train_ids[idx]).to(self.device)
        labels = torch.from_numpy(self.data.train_labels[idx]).to(self.device)
        return ids, labels

    # ----- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> float | None:
        n = min(self.config.eval_blocks, len(self.data.eval_ids))
        if n == 0:
            return None
        self.peft_model.eval()
        total, count = 0.0, 0
        for start in range(0, n, self.config.batch_size):
            ids = torch.from_numpy(self.data.eval_ids[start:min(n, start + self.config.batch_size)]).to(self.device)
            labels = torch.from_numpy(self.data.eval_labels[start:min(n, start + self.config.batch_size)]).to(self.device)
            loss = causal_lm_loss(self.peft_model, ids, labels)
            tokens = int((labels[:, 1:] != -100).sum())
            total += float(loss) * tokens
            count += tokens
        self.peft_model.train()
        return total / max(1, count)

    # ----- checkpoints --------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def save_checkpoint(self) -> Path | None:
        if self.dist.rank != 0:
            self._barrier()
            return None

        def write(folder: Path) -> None:
            self.peft_model.save_pretrained(folder / "adapter")
            state = {
                "step": self.step, "tokens_seen": self.tokens_seen, "elapsed": self.elapsed,
                "losses": self.losses[-1000:],
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(), "config": self.config.to_dict(), "world_size": self.dist.world_size,
            }
            torch.save(state, folder / "state.pt")

        final = publish_checkpoint(self.checkpoint_root, self.step, write)
        self.reporter.emit("checkpoint", step=self.step, path=str(final))
        self._barrier()
        return final

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoint_root)

    def load_checkpoint(self, path: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        if state.get("world_size", 1) != self.dist.world_size:
            raise ValueError(f"The checkpoint was written by {state.get('world_size')} processes; resume it with "
                             f"the same number (now {self.dist.world_size}).")
        weights = load_file(str(path / "adapter" / "adapter_model.safetensors"), device=str(self.device))
        set_peft_model_state_dict(self.peft_model, weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.tokens_seen, self.elapsed = state["step"], state["tokens_seen"], state["elapsed"]
        self.losses = list(state.get("losses", []))
        restore_rng(state["rng"])

    # ----- the loop -------------------------------------------------------------------------
    def _barrier(self) -> None:
        if self.dist.active:
            torch.distributed.barrier()

    def _agree_stop(self) -> bool:
        flag = bool(self.reporter.stop_requested)
        if not self.dist.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t)  # gloo: a CPU tensor; any rank asked -> all stop together
        return bool(t.item() > 0)

    def train(self) -> dict:
        c = self.config
        self.peft_model.train()
        last_save = time.monotonic()
        block_tokens = c.batch_size * c.grad_accum * self.dist.world_size * self.data.seq_len
        rate = None
        self.reporter.defer_stop = True
        try:
            return self._loop(block_tokens, last_save, rate)
        finally:
            self.reporter.defer_stop = False

    def _loop(self, block_tokens: int, last_save: float, rate: float | None) -> dict:
        c = self.config
        while self.step < self.total_steps:
            if self._agree_stop():
                self.save_checkpoint()
                raise JobCancelled(self.step)
            started = time.perf_counter()
            loss_sum = 0.0
            for micro in range(c.grad_accum):
                ids, labels = self._batch(self.step, micro)
                loss = causal_lm_loss(self.model, ids, labels) / c.grad_accum
                loss.backward()
                loss_sum += float(loss.detach())
            if c.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], c.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.dist.active:
                t = torch.tensor([loss_sum])
                torch.distributed.all_reduce(t)
                loss_sum = float(t.item()) / self.dist.world_size
            took = time.perf_counter() - started
            self.step += 1
            self.tokens_seen += block_tokens
            self.elapsed += took
            self.losses.append(loss_sum)
            step_rate = block_tokens / max(took, 1e-9)
            rate = step_rate if rate is None else 0.8 * rate + 0.2 * step_rate
            if self.step % c.log_every == 0 or self.step == self.total_steps:
                eta = (self.total_steps - self.step) * block_tokens / rate
                self.reporter.step(self.step, self.total_steps, loss_sum, rate, eta,
                                   lr=self.scheduler.get_last_lr()[0], tokens=self.tokens_seen)
            due = self.step % c.checkpoint_every == 0 or time.monotonic() - last_save > c.checkpoint_seconds
            if due and self.step < self.total_steps:
                self.save_checkpoint()
                last_save = time.monotonic()
        return {"steps": self.step, "tokens": self.tokens_seen, "train_seconds": round(self.elapsed, 2),
                "tokens_per_s": round(self.tokens_seen / max(self.elapsed, 1e-9), 2),
                "final_loss": self.losses[-1] if self.losses else None}

