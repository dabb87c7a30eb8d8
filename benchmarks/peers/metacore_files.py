"""What the peer scripts share: reading MetaCore's safetensors files, and Conv-4 as MetaCore lays it out."""
import json, struct
import numpy as np
import torch, torch.nn as nn

def read_safetensors(path):
    """The F32 tensors of a safetensors file by name, and its metadata."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        assert entry['dtype'] == 'F32', f"{name}: {entry['dtype']}"
        begin, end = entry['data_offsets']
        tensors[name] = torch.from_numpy(np.frombuffer(data[begin:end], dtype='<f4').reshape(entry['shape']).copy())
    return tensors, header.get('__metadata__', {})

def conv4(ways, running_stats=False):
    """Conv-4 with MetaCore's layer indices: it pools before the ReLU (the same function and derivatives)."""
    layers, c = [], 1
    for _ in range(4):
        layers += [nn.Conv2d(c, 64, 3, padding=1), nn.BatchNorm2d(64, track_running_stats=running_stats), nn.MaxPool2d(2), nn.ReLU()]
        c = 64
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, ways))
