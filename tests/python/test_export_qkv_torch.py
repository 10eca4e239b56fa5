#!/usr/bin/python3
"""test_export_qkv_torch.py: does the PyTorch forward-hook exporter (scripts/sprint_qkv_torch.py)
write exactly the Q/K/V a model's attention uses, with its padding mask, in a file sprint reads?

A small torch transformer is built here (no downloads): 2 layers, 4 query heads sharing 2 key/value
heads of 16, HF-style rotary positions, a padded batch of 2. Checks: exported Q/K/V equal the
tensors the toy's attention used (after RoPE) to 1e-6; dense attention recomputed from the file
with sprint's semantics (scale 1/sqrt(d), head h uses kv head h // 2, padding and causal masks)
equals the toy's attention output; `sprint trace --qkv` sees exactly the visible keys of every
valid query and no padding query; `sprint run --qkv-only` simulates the file.
Needs python3-torch (not in CI: it pulls ~230 packages; the run is recorded in docs/RESULTS.md).

    /usr/bin/python3 tests/python/test_export_qkv_torch.py [build/sprint]
"""
import csv
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import sprint_qkv  # noqa: E402
from sprint_qkv_torch import export_qkv  # noqa: E402

DIM, H, KVH, L, VOCAB = 64, 4, 2, 2, 50
HD = DIM // H


def rotate_half_rope(x, theta=10000.0):  # HF's apply_rotary_pos_emb, written independently
    T, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2).float() / d))
    freqs = torch.outer(torch.arange(T).float(), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    rot = torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1)
    return x * emb.cos() + rot * emb.sin()


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(DIM, H * HD, bias=False)
        self.k_proj = nn.Linear(DIM, KVH * HD, bias=True)
        self.v_proj = nn.Linear(DIM, KVH * HD, bias=True)
        self.o_proj = nn.Linear(H * HD, DIM, bias=False)

    def forward(self, x, mask):
        B, T, _ = x.shape
        q = rotate_half_rope(self.q_proj(x).view(B, T, H, HD).transpose(1, 2))
        k = rotate_half_rope(self.k_proj(x).view(B, T, KVH, HD).transpose(1, 2))
        v = self.v_proj(x).view(B, T, KVH, HD).transpose(1, 2)
        self.seen = (q.detach().clone(), k.detach().clone(), v.detach().clone())
        k2, v2 = k.repeat_interleave(H // KVH, dim=1), v.repeat_interleave(H // KVH, dim=1)
        s = q @ k2.transpose(-1, -2) / HD ** 0.5
        allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None] & mask[:, None, None, :].bool()
        s = s.masked_fill(~allowed, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        out = p @ v2
        out = out * mask[:, None, :, None]  # padding query rows are zero (sprint's convention)
        self.att = out.detach().clone()
        return self.o_proj(out.transpose(1, 2).reshape(B, T, H * HD))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = Attention()
        self.mlp = nn.Sequential(nn.Linear(DIM, 128), nn.GELU(), nn.Linear(128, DIM))
        self.n1, self.n2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)

    def forward(self, x, mask):
        x = x + self.self_attn(self.n1(x), mask)
        return x + self.mlp(self.n2(x))


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList([Block() for _ in range(L)])

    def forward(self, input_ids, attention_mask):
        x = self.emb(input_ids)
        for blk in self.layers:
            x = blk(x, attention_mask)
        return x


def interleaved_rope(x, theta=10000.0):  # llama2.c / Meta convention: pairs (2i, 2i+1)
    T, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2).float() / d))
    ang = torch.outer(torch.arange(T).float(), inv)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()], dim=-1).flatten(-2)


class FusedAttention(nn.Module):
    """GPT-2-like fused projection [q | k | v], no grouped heads, interleaved rotary positions."""

    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(DIM, 3 * DIM)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).split(DIM, dim=-1)
        q = interleaved_rope(q.view(B, T, H, HD).transpose(1, 2))
        k = interleaved_rope(k.view(B, T, H, HD).transpose(1, 2))
        v = v.view(B, T, H, HD).transpose(1, 2)
        self.seen = (q.detach().clone(), k.detach().clone(), v.detach().clone())
        return x


def check(cond, msg):
    if not cond:
        print("FAIL:", msg)
        sys.exit(1)
    print("ok:", msg)


def main():
    sprint = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "sprint")
    torch.manual_seed(0)
    model = Toy().eval()
    T = 24
    ids = torch.randint(0, VOCAB, (2, T))
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, 17:] = 0  # item 1: 17 tokens, 7 padding
    tmp = tempfile.mkdtemp(prefix="sprint-torch-")
    path = os.path.join(tmp, "toy.safetensors")
    export_qkv(model, {"input_ids": ids, "attention_mask": mask}, path, num_heads=H, num_kv_heads=KVH, causal=True,
               rope="hf")
    got = sprint_qkv.read(path)
    check(sorted(got) == sorted(["000000/q", "000000/k", "000000/v", "000001/q", "000001/k", "000001/v",
                                 "000001/mask", "causal"]), f"tensor names {sorted(got)}")
    check(got["000000/q"].shape == (L, H, T, HD) and got["000000/k"].shape == (L, KVH, T, HD), "shapes")
    check(int(got["causal"]) == 1 and got["000001/mask"].tolist() == [1] * 17 + [0] * 7, "causal flag and padding mask")
    worst = 0.0
    for li, blk in enumerate(model.layers):
        for b in range(2):
            for j, name in enumerate("qkv"):
                ref = blk.self_attn.seen[j][b].numpy()
                worst = max(worst, float(np.abs(got[f"{b:06d}/{name}"][li] - ref).max()))
    check(worst < 1e-6, f"exported Q/K/V (after RoPE) equal the toy's to {worst:.2g}")
    # dense attention from the file with sprint's semantics equals the toy's attention output
    worst = 0.0
    for b in range(2):
        n_valid = int(mask[b].sum())
        for li, blk in enumerate(model.layers):
            q, k, v = (got[f"{b:06d}/{x}"][li].astype(np.float64) for x in "qkv")
            for h in range(H):
                s = q[h] @ k[h // (H // KVH)].T / np.sqrt(HD)
                vis = np.tril(np.ones((T, T), bool)) & (np.arange(T) < n_valid)[None, :]
                s = np.where(vis, s, -np.inf)
                for i in range(n_valid):
                    p = np.exp(s[i] - s[i].max())
                    o = (p / p.sum()) @ v[h // (H // KVH)]
                    worst = max(worst, float(np.abs(o - blk.self_attn.att[b, h, i].numpy()).max()))
    check(worst < 1e-5, f"attention recomputed from the file equals the model's to {worst:.2g}")
    # sprint sees exactly the visible keys of every valid query, no padding query
    tr = subprocess.run([sprint, "trace", "--quiet", "--qkv", path, "--set", "workload.mode=dense"], capture_output=True,
                        text=True)
    check(tr.returncode == 0, f"sprint trace --qkv exit {tr.returncode} {tr.stderr.strip()}")
    rows = list(csv.DictReader(io.StringIO(tr.stdout)))
    check(len(rows) == L * H * (T + 17), f"{len(rows)} query records = layers x heads x (24 + 17 valid queries)")
    bad = [r for r in rows if int(r["n_visible"]) != min(int(r["qi"]) + 1, 24 if r["seq"] == "0" else 17)
           or int(r["n_kept"]) != int(r["n_visible"])]
    check(not bad, "every record: n_visible = causal and padding-masked keys, dense keeps them all")
    run = subprocess.run([sprint, "run", "--quiet", "--qkv-only", "--qkv", path, "--sizes", "S", "--summary"],
                         capture_output=True, text=True)
    check(run.returncode == 0 and "qkv:toy.safetensors" in run.stdout, f"sprint run --qkv-only exit {run.returncode}")
    # the hooks are gone after the export: a second forward records nothing
    check(all(len(m._forward_hooks) == 0 for m in model.modules()), "hooks removed after export")
    # a fused projection with interleaved RoPE
    fused = nn.Sequential(FusedAttention(), FusedAttention()).eval()
    x = torch.randn(1, 10, DIM)
    p2 = os.path.join(tmp, "fused")
    export_qkv(fused, x, p2, num_heads=H, causal=False, fused=r"c_attn$", rope="interleaved")
    got2 = sprint_qkv.read(p2)
    check(sorted(got2) == ["000000/k", "000000/q", "000000/v", "causal"] and int(got2["causal"]) == 0,
          "fused export: one unmasked sequence in a .npy directory, not causal")
    worst = max(float(np.abs(got2[f"000000/{n}"][li] - m.seen[j][0].numpy()).max())
                for li, m in enumerate(fused) for j, n in enumerate("qkv"))
    check(worst < 1e-6, f"fused projection + interleaved RoPE equal the model's Q/K/V to {worst:.2g}")
    try:
        export_qkv(model, {"input_ids": ids, "attention_mask": mask}, p2, num_heads=H, patterns={"q": r"nothing$"})
        check(False, "a pattern matching no module is refused")
    except ValueError as e:
        check("projection modules found" in str(e), f"a pattern matching no module is refused ({e})")
    print("all checks passed")


if __name__ == "__main__":
    main()
