"""sprint_qkv_torch.py: the PyTorch forward-hook exporter of the Q/K/V tensor format of
`sprint run --qkv` (docs/formats.md), for Hugging Face models and any torch.nn.Module whose
attention layers compute Q, K and V with separate projection modules (or one fused projection).

Forward hooks on the projection modules record their outputs during one forward pass; each is
split into heads ([batch, T, heads * d] -> [heads, T, d]), optionally rotated by RoPE (the
Q/K the attention actually sees in Llama-family models), and written per batch item as one
sequence (named 000000, 000001, ...) with the batch's attention_mask as its padding mask.

    import sys; sys.path.insert(0, "scripts")
    from sprint_qkv_torch import export_qkv
    from transformers import AutoModel, AutoTokenizer        # any HF model, already downloaded
    tok = AutoTokenizer.from_pretrained("bert-base-uncased")
    model = AutoModel.from_pretrained("bert-base-uncased").eval()
    batch = tok(["a first sentence", "and a second, longer sentence"], padding=True, return_tensors="pt")
    export_qkv(model, batch, "bert.safetensors", num_heads=12, causal=False)
    # Llama-family decoder (rotary positions, grouped-query attention):
    # export_qkv(model, batch, "llama.safetensors", num_heads=32, num_kv_heads=8, causal=True,
    #            rope="hf", rope_theta=model.config.rope_theta)
    # then: build/sprint run --qkv bert.safetensors

Exact for: models whose attention is softmax(q.k / sqrt(d)) v over the projections (BERT, RoBERTa,
ViT, OPT, ...) and, with rope="hf" (rotate-half pairs (i, i + d/2), HF's convention) or
rope="interleaved" (pairs (2i, 2i+1), llama2.c / Meta's convention), rotary models. Not exact
for position schemes applied inside attention that the format cannot carry (ALiBi or relative
biases: the scores sprint computes lack the bias), nor for scales other than 1/sqrt(d) unless
q_scale = (model scale) * sqrt(d) is given. Needs torch (Debian: python3-torch) and numpy.
"""
import re

import numpy as np
import torch

import sprint_qkv

DEFAULT_PATTERNS = {
    # HF Llama/Mistral/Qwen/OPT/Phi: self_attn.q_proj ...; BERT/RoBERTa/ViT: attention.self.query ...
    "q": r"(^|\.)(q_proj|query)$",
    "k": r"(^|\.)(k_proj|key)$",
    "v": r"(^|\.)(v_proj|value)$",
}


def _rope(x, theta, style):
    """x [B, H, T, d] rotated at positions 0..T-1."""
    d, T = x.shape[-1], x.shape[-2]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # [T, d/2]
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    if style == "hf":
        a, b = x[..., : d // 2], x[..., d // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
    if style == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out
    raise ValueError(f"rope must be None, 'hf' or 'interleaved', not {style!r}")


class QKVRecorder:
    """Registers forward hooks on the Q, K, V projection modules of model (names matched by
    patterns, regular expressions on the dotted module names; or fused = a pattern for one module
    whose output is [q | k | v]). Layers are the matching modules in model.named_modules() order.
    Use as a context manager around one forward pass; then .layers holds [(q, k, v)] tensors of
    shape [batch, T, features]."""

    def __init__(self, model, patterns=None, fused=None):
        self.handles, self.out = [], {"q": [], "k": [], "v": [], "qkv": []}
        pats = {} if fused else dict(DEFAULT_PATTERNS, **(patterns or {}))
        if fused:
            pats = {"qkv": fused}
        for name, mod in model.named_modules():
            for kind, pat in pats.items():
                if re.search(pat, name):
                    self.handles.append(mod.register_forward_hook(self._hook(kind)))
        counts = {k: sum(1 for n, _ in model.named_modules() if re.search(p, n)) for k, p in pats.items()}
        if not all(counts.values()) or len(set(counts.values())) != 1:
            self.close()
            raise ValueError(f"projection modules found per kind: {counts} (need the same non-zero count; "
                             "pass patterns= or fused=)")

    def _hook(self, kind):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            self.out[kind].append(out.detach().to(torch.float32).cpu())
        return hook

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def layers(self):
        if self.out["qkv"]:
            res = []
            for x in self.out["qkv"]:
                if x.shape[-1] % 3:
                    raise ValueError("fused projection output is not divisible into q, k, v")
                res.append(tuple(torch.chunk(x, 3, dim=-1)))
            return res
        return list(zip(self.out["q"], self.out["k"], self.out["v"]))


def export_qkv(model, inputs, path, num_heads, num_kv_heads=None, causal=False, attention_mask=None,
               patterns=None, fused=None, rope=None, rope_theta=10000.0, q_scale=1.0, metadata=None):
    """Runs model(**inputs) (or model(inputs) for a tensor) once under no_grad with forward hooks
    and writes every layer's Q/K/V to path (.safetensors, else a .npy directory). attention_mask
    defaults to inputs["attention_mask"] when present ([batch, T], 1 = token, 0 = padding).
    Returns the list of sequences written [(name, q, k, v, mask)]."""
    num_kv_heads = num_kv_heads or num_heads
    with QKVRecorder(model, patterns, fused) as rec, torch.no_grad():
        if isinstance(inputs, dict):
            model(**inputs)
            if attention_mask is None:
                attention_mask = inputs.get("attention_mask")
        else:
            model(inputs)
    layers = rec.layers
    if not layers:
        raise ValueError("no projection output was recorded (did the forward pass run the hooked modules?)")
    per_layer = []
    for q, k, v in layers:
        if q.dim() != 3:
            raise ValueError(f"projection output of shape {tuple(q.shape)}: expected [batch, T, features]")
        B, T, fq = q.shape
        if fq % num_heads or k.shape[-1] % num_kv_heads or fq // num_heads != k.shape[-1] // num_kv_heads:
            raise ValueError(f"q features {fq} and k features {k.shape[-1]} do not split into {num_heads} and "
                             f"{num_kv_heads} heads of one size")
        d = fq // num_heads
        qh = q.reshape(B, T, num_heads, d).transpose(1, 2)
        kh = k.reshape(B, T, num_kv_heads, d).transpose(1, 2)
        vh = v.reshape(B, T, num_kv_heads, d).transpose(1, 2)
        if rope:
            qh, kh = _rope(qh, rope_theta, rope), _rope(kh, rope_theta, rope)
        per_layer.append((qh * q_scale, kh, vh))
    B = per_layer[0][0].shape[0]
    seqs = []
    for b in range(B):
        q = np.stack([L[0][b].numpy() for L in per_layer])
        k = np.stack([L[1][b].numpy() for L in per_layer])
        v = np.stack([L[2][b].numpy() for L in per_layer])
        mask = None
        if attention_mask is not None:
            m = np.asarray(attention_mask[b].cpu().numpy() if torch.is_tensor(attention_mask) else attention_mask[b])
            mask = (m != 0).astype(np.uint8) if not m.all() else None
        seqs.append((f"{b:06d}", q, k, v, mask))
    sprint_qkv.write(path, seqs, causal=causal, metadata=dict({"source": "scripts/sprint_qkv_torch.py"}, **(metadata or {})))
    return seqs
