"""Scaled dot-product attention as the mesh's primitives, forward and backward.

On the CPU, ``F.scaled_dot_product_attention`` dispatches to
``aten._scaled_dot_product_flash_attention_for_cpu`` (returning the output and the
row-wise log-sum-exp) and AOTAutograd differentiates it with
``aten._scaled_dot_product_flash_attention_for_cpu_backward``. PyTorch 2.13's own
decomposition of the forward gives wrong gradients under AOTAutograd, so torch-dojo decomposes
both ops itself into matmuls, reductions and elementwise math — the textbook attention and its
gradient written with the saved log-sum-exp — which the mesh runs like any other graph.

Dropout inside attention (``dropout_p > 0``) is not decomposed: the op then stays whole and
runs eagerly.
"""

from __future__ import annotations

import math

import torch

aten = torch.ops.aten


def _scores(q, k, is_causal, attn_mask, scale):
    """Scaled scores with the causal mask (top-left aligned, as the flash kernel) and the user
    mask applied: masked entries are -inf."""
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-2, -1)) * s
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        keep = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return scores, s


def _probabilities(scores, lse):
    # A fully masked row has lse = -inf; its probabilities (and output) are 0, not NaN.
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    return torch.exp(scores - safe.unsqueeze(-1))


def flash_attention_for_cpu(query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None):
    if dropout_p != 0.0:
        return NotImplemented
    scores, _ = _scores(query, key, is_causal, attn_mask, scale)
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.matmul(_probabilities(scores, lse), value)
    return out, lse


def flash_attention_for_cpu_backward(
    grad_out, query, key, value, out, logsumexp, dropout_p, is_causal, *, attn_mask=None, scale=None
):
    if dropout_p != 0.0:
        return NotImplemented
    scores, s = _scores(query, key, is_causal, attn_mask, scale)
    p = _probabilities(scores, logsumexp)
    grad_v = torch.matmul(p.transpose(-2, -1), grad_out)
    grad_p = torch.matmul(grad_out, value.transpose(-2, -1))
    row = (grad_out * out).sum(dim=-1, keepdim=True)
    grad_scores = p * (grad_p - row)
    grad_q = torch.matmul(grad_scores, key) * s
    grad_k = torch.matmul(grad_scores.transpose(-2, -1), query) * s
    return grad_q, grad_k, grad_v


def decompositions() -> dict:
    return {
        aten._scaled_dot_product_flash_attention_for_cpu.default: flash_attention_for_cpu,
        aten._scaled_dot_product_flash_attention_for_cpu_backward.default: flash_attention_for_cpu_backward,
    }
