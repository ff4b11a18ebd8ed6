"""Tokens/s of the workbench's CPU training step (`workbench.train.fast`) against the stock one, per size.

    python benchmarks/cpu_step.py                       # AR16 L1-4 and AR32 L1-3, one thread, 6 x 20 steps a side
    python benchmarks/cpu_step.py --sizes ar16:2 --rounds 4 --steps 20

Both sides train the same model (same initial weights) on the same blocks and MLM masks with the
masked-positions head, batch and LR of the `cpu` profile, on `--threads` threads (a sweep worker
has one):
  stock : eager attention, `F.dropout` (bernoulli draws), `F.cross_entropy`, AdamW's per-tensor loop
  ours  : `workbench.train.device.place` (`fast_cpu`: cheap dropout draws, products in their faster
          orientation), `workbench.train.fast.cross_entropy`, fused AdamW
With `--bf16`, a third side times ours under bf16 autocast (`exec.precision=native` on a CPU with
bf16 instructions) and prints its eval loss on the fixed batch beside the fp32 one. With `--compile`,
one more side times ours with the encoder compiled by inductor (`exec.compile`, as `pretrain` does
it: dropout then draws from inductor's own generator, fused into the kernels), after its compilation
(timed apart), with its eval loss on the fixed batch and its mean train loss over the draws.
Timing alternates the sides in rounds of `--steps` steps, so a machine that slows down mid-run
slows both; the median step of each side gives tokens/s. Before timing, it checks on a fixed batch
that the two compute the same thing: the loss and every gradient with dropout off (eval mode), and
with dropout on the mean loss over `--draws` draws of the masks (each side's own draws); and the
share of 4M elements `keep_mask` drops at p = 0.1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from workbench.base.family import model_spec
from workbench.config import DataConfig, PretrainConfig, TrainConfig
from workbench.data.prepared import prepare_data
from workbench.runs.pretrain import setup_pretraining
from workbench.train.device import place
from workbench.train.fast import keep_mask
from workbench.train.model import adamw, build_mlm_model, mlm_loss, param_groups

GOAL = 1.5  # at <= 200K non-embedding parameters


def stock_loss(model, batch) -> torch.Tensor:
    hidden = model.bert(input_ids=batch.input_ids).last_hidden_state
    return F.cross_entropy(model.cls(hidden[batch.positions]).float(), batch.labels)


def sides(cfg: PretrainConfig, vocab: int):
    spec, t, cpu = model_spec(cfg.family, cfg.n_layers), cfg.train, torch.device("cpu")
    stock = build_mlm_model(spec, vocab, cfg.data.seq_len, t.dropout, cfg.seed)
    stock.set_attn_implementation("eager")
    ours = place(build_mlm_model(spec, vocab, cfg.data.seq_len, t.dropout, cfg.seed), cpu)
    opt_stock = torch.optim.AdamW(param_groups(stock, t.weight_decay), lr=t.lr, betas=t.adam_betas)
    opt_ours = adamw(ours, cpu, t.lr, t.weight_decay, betas=t.adam_betas)
    return (stock, opt_stock, stock_loss), (ours, opt_ours, mlm_loss)


def same_computation(stock, ours, batch, draws: int) -> dict:
    """Eval-mode loss and gradients of both, and train-mode mean loss over `draws` dropout draws."""
    out = {}
    for model in (stock, ours):
        model.zero_grad(set_to_none=True)
        model.eval()
    losses = [fn(m, batch) for m, fn in ((stock, stock_loss), (ours, mlm_loss))]
    for loss in losses:
        loss.backward()
    out["eval_loss"] = [float(x.detach()) for x in losses]
    # over all gradients at once: the key biases' gradients are zero in exact arithmetic (a constant
    # added to a row of scores), so their own relative difference is rounding over rounding
    a, b = (torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]) for m in (stock, ours))
    out["grad_rel_diff"] = float((a - b).norm() / a.norm())
    train = []
    for model, fn in ((stock, stock_loss), (ours, mlm_loss)):
        model.train()
        with torch.no_grad():
            xs = torch.tensor([float(fn(model, batch)) for _ in range(draws)])
        train.append((float(xs.mean()), float(xs.std() / draws**0.5)))
        model.zero_grad(set_to_none=True)
    out["train_loss"] = train
    out["dropped"] = 1 - float(keep_mask((1 << 22,), 0.1).float().mean())
    return out


def bf16_side(cfg: PretrainConfig, vocab: int, batch):
    """Ours under bf16 autocast: (model, optimiser, loss fn, eval-mode loss on `batch`)."""
    t, cpu = cfg.train, torch.device("cpu")
    model = place(build_mlm_model(model_spec(cfg.family, cfg.n_layers), vocab, cfg.data.seq_len, t.dropout, cfg.seed),
                  cpu)
    opt = adamw(model, cpu, t.lr, t.weight_decay, betas=t.adam_betas)

    def loss_fn(m, b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return mlm_loss(m, b)

    model.eval()
    with torch.no_grad():
        loss = float(loss_fn(model, batch))
    return model, opt, loss_fn, loss


def compiled_side(cfg: PretrainConfig, vocab: int, batch, draws: int):
    """Ours with `model.bert.compile()` (`exec.compile`): (model, optimiser, loss fn, eval-mode loss on
    `batch`, (mean, s.e.) of the train-mode loss over `draws` dropout draws, seconds to compile)."""
    t, cpu = cfg.train, torch.device("cpu")
    model = place(build_mlm_model(model_spec(cfg.family, cfg.n_layers), vocab, cfg.data.seq_len, t.dropout, cfg.seed),
                  cpu)
    torch._dynamo.reset()  # each size compiles afresh: past dynamo's recompile limit it would run eager, unseen
    model.bert.compile()
    opt = adamw(model, cpu, t.lr, t.weight_decay, betas=t.adam_betas)
    t0 = time.perf_counter()
    model.train()
    mlm_loss(model, batch).backward()  # compiles the training graphs (forward and backward)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        loss = float(mlm_loss(model, batch))  # and the eval graph
    seconds = time.perf_counter() - t0
    model.train()
    with torch.no_grad():
        xs = torch.tensor([float(mlm_loss(model, batch)) for _ in range(draws)])
    return model, opt, mlm_loss, loss, (float(xs.mean()), float(xs.std() / draws**0.5)), seconds


def time_steps(model, opt, fn, batch_at, start: int, steps: int, clip: float) -> list[float]:
    model.train()
    times = []
    for step in range(start, start + steps):
        t0 = time.perf_counter()
        loss = fn(model, batch_at(step))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="ar16:1,ar16:2,ar16:3,ar16:4,ar32:1,ar32:2,ar32:3")
    ap.add_argument("--corpus", default="sotu")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20, help="steps per side per round")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action="store_true", help="also time ours under bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also time ours with the encoder compiled (exec.compile)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data_cfg = DataConfig(corpus=args.corpus, vocab_size=4096, seq_len=64, eval_fraction=0.05, eval_blocks=256)
    data = prepare_data(data_cfg)
    print(f"{args.corpus}: vocab {data.vocab_size}, blocks of {data_cfg.seq_len}, batch 32, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.steps} steps a side")
    print(f"{'size':>8} {'N':>8} {'stock tok/s':>12} {'ours tok/s':>11} {'ratio':>6}  eval loss stock/ours  "
          f"grad diff  train loss ({args.draws} draws) stock / ours")
    for size in args.sizes.split(","):
        family, layers = size.split(":")
        cfg = PretrainConfig(family=family, n_layers=int(layers), data=data_cfg,
                             train=TrainConfig(batch_size=32, lr=1e-3, warmup_steps=50, schedule="constant"))
        *_, batch_at = setup_pretraining(cfg, data, torch.device("cpu"))
        (stock, opt_s, fn_s), (ours, opt_o, fn_o) = sides(cfg, data.vocab_size)
        check = same_computation(stock, ours, batch_at(10**6), args.draws)
        half = bf16_side(cfg, data.vocab_size, batch_at(10**6)) if args.bf16 else None
        comp = compiled_side(cfg, data.vocab_size, batch_at(10**6), args.draws) if args.compile else None
        start = 0
        for side in ((stock, opt_s, fn_s), (ours, opt_o, fn_o)) + ((half[:3],) if half else ()) + (
                (comp[:3],) if comp else ()):
            time_steps(*side, batch_at, start, args.warmup, cfg.train.grad_clip)
        start += args.warmup
        t_stock, t_ours, t_half, t_comp = [], [], [], []
        for _ in range(args.rounds):
            t_stock += time_steps(stock, opt_s, fn_s, batch_at, start, args.steps, cfg.train.grad_clip)
            t_ours += time_steps(ours, opt_o, fn_o, batch_at, start, args.steps, cfg.train.grad_clip)
            if half:
                t_half += time_steps(*half[:3], batch_at, start, args.steps, cfg.train.grad_clip)
            if comp:
                t_comp += time_steps(*comp[:3], batch_at, start, args.steps, cfg.train.grad_clip)
            start += args.steps
        tokens = cfg.train.batch_size * data_cfg.seq_len
        a, b = tokens / statistics.median(t_stock), tokens / statistics.median(t_ours)
        n = model_spec(family, int(layers)).n_params
        (ms, ss), (mo, so) = check["train_loss"]
        print(f"{size:>8} {n:>8,} {a:>12,.0f} {b:>11,.0f} {b / a:>5.2f}x  {check['eval_loss'][0]:.5f} / "
              f"{check['eval_loss'][1]:.5f}  {check['grad_rel_diff']:.1e}  {ms:.4f}+-{ss:.4f} / {mo:.4f}+-{so:.4f}",
              flush=True)
        if half:
            c = tokens / statistics.median(t_half)
            print(f"{'':>8} {'bf16':>8} {'':>12} {c:>11,.0f} {c / a:>5.2f}x  eval loss {half[3]:.5f} (fp32 "
                  f"{check['eval_loss'][1]:.5f}); {c / b:.2f}x ours in fp32", flush=True)
        if comp:
            c, (mc, sc) = tokens / statistics.median(t_comp), comp[4]
            print(f"{'':>8} {'compiled':>8} {'':>12} {c:>11,.0f} {c / a:>5.2f}x  eval loss {comp[3]:.5f} (eager "
                  f"{check['eval_loss'][1]:.5f}); train loss {mc:.4f}+-{sc:.4f}; {c / b:.2f}x ours eager; compiled "
                  f"in {comp[5]:.0f} s", flush=True)
    print(f"share of elements keep_mask drops at p = 0.1 (4M draws): {check['dropped']:.5f}; goal: >= {GOAL}x at "
          f"<= 200K parameters")


if __name__ == "__main__":
    main()
