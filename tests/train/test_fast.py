"""The faster CPU step computes what the stock one does: masks at the right rate from torch's own
generator, products and losses equal to torch's, and placed models equal to stock eager models."""

import json

import pytest
import torch
import torch.nn.functional as F

from workbench.train.device import place
from workbench.train.fast import ATTENTION, NARROW, Dropout, _CrossEntropy, cross_entropy, dropout, keep_mask, matmul
from workbench.train.model import adamw, param_groups


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_keep_mask_drops_at_rate_p_from_torchs_generator(p):
    torch.manual_seed(0)
    first = keep_mask((1000, 1001), p)
    assert first.dtype == torch.uint8 and set(first.unique().tolist()) <= {0, 1} and first.shape == (1000, 1001)
    dropped = 1 - first.float().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / first.numel()) ** 0.5 + 2**-17
    second = keep_mask((1000, 1001), p)
    torch.manual_seed(0)
    assert torch.equal(keep_mask((1000, 1001), p), first)  # seeded like F.dropout: resume and MemberRNG hold
    assert not torch.equal(second, first)
    # neighbours are independent: the four 16-bit parts of one 64-bit draw do not move together
    pairs = first.view(-1)[: 4 * (first.numel() // 4)].view(-1, 4).float()
    corr = torch.corrcoef(pairs.T)
    assert (corr - torch.eye(4)).abs().max() < 0.01


def test_dropout_zeroes_and_rescales_and_is_off_in_eval():
    x = torch.randn(64, 257, requires_grad=True)
    torch.manual_seed(3)
    out = dropout(x, 0.25)
    torch.manual_seed(3)
    keep = keep_mask(x.shape, 0.25).bool()
    assert torch.equal(out[~keep], torch.zeros_like(out[~keep]))
    assert torch.allclose(out[keep], x[keep] / 0.75)
    out.sum().backward()
    assert torch.allclose(x.grad, keep.float() / 0.75)
    assert dropout(x, 0.25, training=False) is x and dropout(x, 0.0) is x


@pytest.mark.parametrize("shapes", [((2, 3, 9, 4), (2, 3, 4, 9)), ((2, 3, 9, 9), (2, 3, 9, 4)),
                                    ((2, 3, 40, 40), (2, 3, 40, 12)), ((2, 3, 40, 40), (2, 3, 40, NARROW))])
def test_matmul_forward_and_gradients_equal_torch(shapes):
    a = torch.randn(shapes[0], dtype=torch.float64, requires_grad=True)
    b = torch.randn(shapes[1], dtype=torch.float64, requires_grad=True)
    g = torch.randn(*shapes[0][:-1], shapes[1][-1], dtype=torch.float64)
    ours = matmul(a, b)
    ga, gb = torch.autograd.grad(ours, (a, b), g)
    ref = torch.matmul(a, b)
    ra, rb = torch.autograd.grad(ref, (a, b), g)
    for x, y in ((ours, ref), (ga, ra), (gb, rb)):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(matmul, (a, b))


def test_cross_entropy_equals_torch_value_and_gradient():
    logits = torch.randn(37, 101, requires_grad=True)
    labels = torch.randint(0, 101, (37,))
    ours = cross_entropy(logits, labels)
    (g_ours,) = torch.autograd.grad(3 * ours, logits)
    ref = F.cross_entropy(logits, labels)
    (g_ref,) = torch.autograd.grad(3 * ref, logits)
    assert torch.allclose(ours, ref, rtol=1e-6) and torch.allclose(g_ours, g_ref, rtol=1e-5, atol=1e-8)
    # in float64 `cross_entropy` hands over to F.cross_entropy: check the custom function itself
    assert torch.autograd.gradcheck(_CrossEntropy.apply, (logits.detach().double().requires_grad_(), labels))


HEADS = ("BertForMaskedLM", "BertForSequenceClassification", "BertForMultipleChoice", "BertForQuestionAnswering")


def _pair(cls: str, heads: int):
    """A stock eager model and its placed twin (same weights); each has its own config object, since
    the attention implementation is set on the config."""
    import transformers

    def cfg():
        return transformers.BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=heads,
                                       intermediate_size=48, max_position_embeddings=16, num_labels=2)

    torch.manual_seed(0)
    stock = getattr(transformers, cls)(cfg())
    stock.set_attn_implementation("eager")
    torch.manual_seed(0)
    ours = place(getattr(transformers, cls)(cfg()), torch.device("cpu"))
    assert stock.config._attn_implementation == "eager" and ours.config._attn_implementation == ATTENTION
    return stock, ours


def _inputs(cls: str):
    g = torch.Generator().manual_seed(1)
    rows = (3, 2, 10) if cls == "BertForMultipleChoice" else (3, 10)
    mask = torch.ones(rows, dtype=torch.long)
    mask[..., 7:] = 0  # padding the attention must not see
    b = dict(input_ids=torch.randint(5, 50, rows, generator=g), attention_mask=mask)
    if cls == "BertForQuestionAnswering":
        b.update(start_positions=torch.tensor([1, 4, 2]), end_positions=torch.tensor([2, 6, 5]))
    elif cls == "BertForMaskedLM":
        b["labels"] = torch.where(torch.rand(rows, generator=g) < 0.3, b["input_ids"], -100)
    else:
        b["labels"] = torch.randint(0, 2, (3,), generator=g)
    return b


@pytest.mark.parametrize("heads", [4, 2])  # head widths 6 (computed transposed) and 12
@pytest.mark.parametrize("cls", HEADS)
def test_placed_model_equals_the_stock_eager_model_padding_included(cls, heads):
    """Eval mode (no dropout): the loss and every gradient of the placed model are the stock model's;
    the padded positions are masked (a custom attention unknown to transformers' mask registry
    would be handed no mask at all)."""
    stock, ours = _pair(cls, heads)
    assert ours.config._attn_implementation == ATTENTION
    batch = _inputs(cls)
    grads = []
    for model in (stock, ours):
        model.eval()
        loss = model(**batch).loss
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        model.zero_grad()
    assert torch.allclose(stock(**batch).loss, ours(**batch).loss, rtol=1e-6)
    assert float((grads[0] - grads[1]).norm() / grads[0].norm()) < 1e-5
    unpadded = dict(batch, attention_mask=torch.ones_like(batch["attention_mask"]))
    logits = ours(**batch)[1]
    assert torch.allclose(logits, stock(**batch)[1], rtol=1e-5, atol=1e-8)
    assert (ours(**unpadded)[1] - logits).abs().max() > 1e-6  # the mask changes them (at init, a little)


def test_placed_model_in_train_mode_drops_with_keep_mask_and_saves_a_stock_checkpoint(tmp_path):
    stock, ours = _pair("BertForMaskedLM", 4)
    batch = _inputs("BertForMaskedLM")
    drops = [m for m in ours.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(type(m) is Dropout for m in drops)
    ours.eval()
    assert torch.equal(ours(**batch).loss, ours(**batch).loss)
    ours.train()
    torch.manual_seed(5)
    a = ours(**batch).loss
    torch.manual_seed(5)
    assert torch.equal(ours(**batch).loss, a)  # torch's generator decides the draws
    b = ours(**batch).loss
    assert not torch.equal(a, b)
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert ATTENTION not in json.dumps(saved)
    assert sorted(ours.state_dict()) == sorted(stock.state_dict())


def test_fused_adamw_makes_the_per_tensor_loops_update():
    _, model = _pair("BertForMaskedLM", 4)
    twin = _pair("BertForMaskedLM", 4)[1]
    fused = adamw(model, torch.device("cpu"), 1e-3, 0.01, betas=(0.9, 0.98))
    loop = torch.optim.AdamW(param_groups(twin, 0.01), lr=1e-3, betas=(0.9, 0.98), foreach=False)
    assert fused.defaults["fused"]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        fused.step()
        loop.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7)


def test_placing_keeps_eval_mode_and_trains_under_cpu_bf16_autocast():
    """A model loaded in eval mode stays deterministic once placed; under CPU bf16 autocast (the
    loop runs backward outside it) a padded batch trains through the transposed products."""
    import transformers

    cfg = transformers.BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=16, num_labels=2)
    placed = place(transformers.BertForSequenceClassification(cfg).eval(), torch.device("cpu"))  # as from_pretrained
    assert all(not m.training for m in placed.modules())
    batch = _inputs("BertForSequenceClassification")
    placed.train()
    with torch.autocast("cpu", torch.bfloat16):
        loss = placed(**batch).loss
    loss.backward()
    grads = [p.grad for p in placed.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
