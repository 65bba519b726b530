"""Model FLOPs of our training step (what MFU counts; pads and unscored positions are not counted):

  N   = real (non-pad) tokens in the batch, P = matmul weights per token in the trunk
        (per block: q, k, v, o, gate, up, down), L = blocks, D = hidden, V = vocabulary
  fwd_base  = 2 * P * N                                   trunk matmuls
  fwd_attn  = 4 * L * n_heads * head_dim * sum_rows n(n+1)/2   QK^T and PV on causal pairs
  fwd_lora  = 2 * N * r * sum_adapters (in + out)          the V/O adapters
  fwd_unemb = 2 * D * V * (B + answer tokens)              lens row per sample + scored answer positions
  step      = 2 * (fwd_base + fwd_unemb) + 3 * (fwd_attn + fwd_lora)

Backward: base weights and the (tied) unembedding are frozen, so they need only input gradients (1x
forward); attention needs dQ, dK, dV and dP (2x); LoRA needs input and weight gradients (2x).
MFU = step FLOPs / step seconds / the sgemm rate of the model's dominant matmul shape (``machine.sgemm_fn``).
"""

import lazarus_nb  # noqa: F401, I001  (first: preloads the optimized BLAS before anything imports mlx)

import mlx.core as mx
import mlx.nn as nn

from lazarus_nb.model.hooks import parts
from lazarus_nb.model.lora import adapters


def _weight(m: nn.Module) -> mx.array:
    return m.linear.weight if hasattr(m, "linear") else m.weight


def arch(model: nn.Module) -> dict:
    """The shape figures the FLOP count needs, read off the (adapted) model."""
    _, trunk = parts(model)
    block = trunk.layers[0]
    att, mlp = block.self_attn, block.mlp
    per_block = sum(_weight(m).size for m in (att.q_proj, att.k_proj, att.v_proj, att.o_proj, mlp.gate_proj,
                                              mlp.up_proj, mlp.down_proj))
    vocab, hidden = trunk.embed_tokens.weight.shape
    lora = list(adapters(model).values())
    return dict(layers=len(trunk.layers), hidden=hidden, vocab=vocab, intermediate=_weight(mlp.gate_proj).shape[0],
                heads=att.n_heads, head_dim=_weight(att.q_proj).shape[0] // att.n_heads,
                matmul_params_per_token=per_block * len(trunk.layers),
                lora_in_out_sum=sum(m.lora_a.shape[0] + m.lora_b.shape[1] for m in lora), rank=lora[0].lora_a.shape[1])


def step_flops(a: dict, real: list[int], prompt: list[int], full_logits: bool = False) -> dict:
    """Model FLOPs of one training step (see the module docstring); ``full_logits``: the peer's count."""
    n = sum(real)
    answers = sum(r - p for r, p in zip(real, prompt))
    base = 2 * a["matmul_params_per_token"] * n
    attn = 4 * a["layers"] * a["heads"] * a["head_dim"] * sum(t * (t + 1) // 2 for t in real)
    lora = 2 * n * a["rank"] * a["lora_in_out_sum"]
    positions = n if full_logits else len(real) + answers
    unemb = 2 * a["hidden"] * a["vocab"] * positions
    return dict(total=2 * (base + unemb) + 3 * (attn + lora), fwd_base=base, fwd_attn=attn, fwd_lora=lora,
                fwd_unembed=unemb, tokens=n, unembedded_positions=positions)
