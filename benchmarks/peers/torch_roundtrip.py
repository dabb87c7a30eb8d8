"""MetaCore's Conv-4 weights into PyTorch and back.

    torch_roundtrip.py EXPORTED.safetensors OUT.safetensors [--bf16]

Loads `metactl export`'s file into Conv-4 as nn.Sequential with load_state_dict(strict=True) (batch-norm without
running statistics, as the file's metadata says), then writes the state_dict of the same network built with
PyTorch's default batch-norm (running statistics and the I64 num_batches_tracked included), in BF16 with
--bf16, for `metactl train --init-from OUT.safetensors` to read. Prints the logits of a fixed batch, so the two
sides can be compared. Needs torch and numpy; nothing in the build or the tests runs it.
"""
import argparse, json, struct
import numpy as np
import torch
from metacore_files import conv4, read_safetensors as read

DTYPES = {torch.float32: ('F32', np.float32), torch.int64: ('I64', np.int64)}

def write(path, tensors, bf16):
    header, blobs, offset = {}, [], 0
    for k, t in tensors.items():
        if t.dtype == torch.float32 and bf16:
            raw = (t.contiguous().view(torch.int32) >> 16).to(torch.int16).numpy().astype('<i2').tobytes()
            dtype = 'BF16'
        else:
            dtype, np_type = DTYPES[t.dtype]
            raw = t.contiguous().numpy().astype(np_type).tobytes()
        header[k] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw); offset += len(raw)
    text = json.dumps(header).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text))); f.write(text)
        for raw in blobs: f.write(raw)

def main():
    p = argparse.ArgumentParser()
    p.add_argument('exported'); p.add_argument('out'); p.add_argument('--bf16', action='store_true')
    args = p.parse_args()
    weights, metadata = read(args.exported)
    print('metadata batch_norm:', metadata.get('metacore.batch_norm'))
    model = conv4(weights['17.weight'].shape[0], running_stats=False)
    model.load_state_dict(weights, strict=True)
    x = torch.from_numpy(np.linspace(0, 1, 2 * 784, dtype=np.float32).reshape(2, 1, 28, 28))
    model.train()   # batch statistics, as MetaCore's batch-norm
    print('logits:', model(x).detach().numpy().round(5).tolist())
    other = conv4(weights['17.weight'].shape[0], running_stats=True)
    other.load_state_dict(weights, strict=False)
    write(args.out, other.state_dict(), args.bf16)
    print(f'wrote {len(other.state_dict())} tensors ({"BF16" if args.bf16 else "F32"} floats, I64 num_batches_tracked) to {args.out}')

main()
