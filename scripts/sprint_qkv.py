"""sprint_qkv.py: the Q/K/V tensor-set format of `sprint run --qkv` (docs/formats.md), numpy only.

A tensor set is a safetensors file or a directory of .npy files holding, per sequence,
  q [layers, heads, T, d], k and v [layers, kv_heads, T, d], optional mask [T] (1 token, 0 padding)
under "NAME/" when there are several sequences, and one scalar "causal" (1 decoder, 0 encoder).
Used by scripts/export-qkv (numpy forward of stories260K / bitnet-3M) and
scripts/export-qkv-torch (PyTorch forward hooks).
"""
import json
import os
import struct

import numpy as np


def _check_seq(name, q, k, v, mask):
    if q.ndim != 4 or k.ndim != 4 or v.shape != k.shape:
        raise ValueError(f"sequence {name!r}: q must be [layers, heads, T, d], k and v [layers, kv_heads, T, d] "
                         f"(got {q.shape}, {k.shape}, {v.shape})")
    if k.shape[0] != q.shape[0] or k.shape[2:] != q.shape[2:] or q.shape[1] % k.shape[1]:
        raise ValueError(f"sequence {name!r}: shapes q {q.shape}, k {k.shape} do not match")
    if mask is not None and mask.shape != (q.shape[2],):
        raise ValueError(f"sequence {name!r}: mask must have shape [{q.shape[2]}]")


def tensors_of(seqs, causal):
    """seqs: list of (name, q, k, v, mask or None); name '' for one unnamed sequence.
    Returns an ordered list of (tensor name, C-contiguous little-endian array)."""
    out = []
    names = [s[0] for s in seqs]
    if len(set(names)) != len(names) or ("" in names and len(names) > 1):
        raise ValueError("sequence names must be distinct, and '' only for a single sequence")
    for name, q, k, v, mask in seqs:
        q, k, v = (np.ascontiguousarray(x, dtype="<f4") for x in (q, k, v))
        _check_seq(name, q, k, v, mask)
        p = f"{name}/" if name else ""
        out += [(p + "q", q), (p + "k", k), (p + "v", v)]
    for name, q, k, v, mask in seqs:  # one-byte tensors last: every F32 tensor stays 4-byte aligned
        if mask is not None:
            out.append(((f"{name}/" if name else "") + "mask", np.ascontiguousarray(mask, dtype="u1")))
    out.append(("causal", np.array(1 if causal else 0, dtype="u1")))
    return out


_ST_DTYPE = {"<f4": "F32", "|u1": "U8", "<f2": "F16", "<f8": "F64", "|b1": "BOOL", "<i8": "I64", "<i4": "I32"}


def write_safetensors(path, tensors, metadata=None):
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {str(a): str(b) for a, b in metadata.items()}
    for name, a in tensors:
        header[name] = {"dtype": _ST_DTYPE[a.dtype.str], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for _, a in tensors:
            f.write(a.tobytes())


def write_npy_dir(path, tensors):
    os.makedirs(path, exist_ok=True)
    for name, a in tensors:
        p = os.path.join(path, name + ".npy")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        np.save(p, a)


def write(path, seqs, causal, metadata=None):
    """Writes a tensor set: safetensors when path ends in .safetensors, else a .npy directory."""
    t = tensors_of(seqs, causal)
    if path.endswith(".safetensors"):
        write_safetensors(path, t, metadata)
    else:
        write_npy_dir(path, t)


def read_safetensors(path):
    """{name: array} of a safetensors file (for tests and comparisons)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    rev = {v: k for k, v in _ST_DTYPE.items()}
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        b, e = d["data_offsets"]
        out[name] = np.frombuffer(buf[8 + n + b:8 + n + e], dtype=rev[d["dtype"]]).reshape(d["shape"])
    return out


def read(path):
    """{name: array} of a tensor set (safetensors file or .npy directory)."""
    if not os.path.isdir(path):
        return read_safetensors(path)
    out = {}
    for root, _, files in os.walk(path):
        for fn in files:
            if fn.endswith(".npy"):
                rel = os.path.relpath(os.path.join(root, fn), path)[:-4]
                out[rel] = np.load(os.path.join(root, fn))
    return out
