"""First-order MAML in PyTorch on the episodes and initial weights MetaCore writes (`metactl episodes`), to
compare a MetaCore run with PyTorch's step for step.

    torch_fomaml_compare.py EPISODES.safetensors INNER_LR [--order 1|2] [--checkpoint METACORE.safetensors]

Trains Conv-4 (BatchNorm with batch statistics, as MetaCore's) from the file's parameters with Adam 1e-3 on
its tasks, one meta-batch per iteration, one inner SGD step, and prints a CSV line per iteration: the mean
query loss before adaptation and after it (the latter is what `metactl train --log-every 1` logs as
"loss"). With --checkpoint, also prints the pre- and post-adaptation query loss of that MetaCore checkpoint's
parameters and of PyTorch's final ones, on the last iteration's tasks.
Needs torch and numpy (see ../shared/peers/README.md); nothing in the build or the tests runs it.
"""
import argparse
import torch, torch.nn.functional as F
from torch.func import functional_call
from metacore_files import conv4, read_safetensors

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('episodes'); parser.add_argument('inner_lr', type=float)
    parser.add_argument('--order', type=int, default=1); parser.add_argument('--checkpoint')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tensors, metadata = read_safetensors(args.episodes)
    batch = int(metadata['meta_batch'])
    sx, sy, qx, qy = (tensors[k] for k in ('support.inputs', 'support.targets', 'query.inputs', 'query.targets'))
    sy, qy = sy.long(), qy.long()
    ways = int(sy.max()) + 1
    model = conv4(ways)
    names = [k for k, _ in model.named_parameters()]
    params = {k: tensors[k].clone().requires_grad_(True) for k in names}
    opt = torch.optim.Adam(params.values(), lr=1e-3)

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    def adapted(p, x, y, graph):
        g = torch.autograd.grad(loss(p, x, y), list(p.values()), create_graph=graph)
        return {k: v - args.inner_lr * gi for (k, v), gi in zip(p.items(), g)}

    def evaluate(p, tasks):
        before = after = 0.0
        for t in tasks:
            before += loss(p, qx[t], qy[t]).item()
            after += loss(adapted(p, sx[t], sy[t], False), qx[t], qy[t]).item()
        return before / len(tasks), after / len(tasks)

    iterations = sx.shape[0] // batch
    print('iteration,pre_adaptation_loss,loss')
    for i in range(iterations):
        opt.zero_grad()
        pre = post = 0.0
        for t in range(i * batch, (i + 1) * batch):
            with torch.no_grad():
                pre += loss(params, qx[t], qy[t]).item()
            fast = adapted(params, sx[t], sy[t], args.order == 2)
            if args.order == 1:
                fast = {k: v.detach().requires_grad_(True) for k, v in fast.items()}
            l = loss(fast, qx[t], qy[t])
            post += l.item()
            g = torch.autograd.grad(l, list(fast.values()) if args.order == 1 else list(params.values()))
            for k, gi in zip(names, g):
                params[k].grad = gi / batch if params[k].grad is None else params[k].grad + gi / batch
        opt.step()
        print(f'{i},{pre / batch:.6f},{post / batch:.6f}', flush=True)
    if args.checkpoint:
        last = list(range((iterations - 1) * batch, iterations * batch))
        metacore, _ = read_safetensors(args.checkpoint)
        theirs = {k: metacore[k].clone().requires_grad_(True) for k in names}
        print('final parameters,pre_adaptation_loss,loss')
        print('metacore,%.6f,%.6f' % evaluate(theirs, last))
        print('pytorch,%.6f,%.6f' % evaluate(params, last))

main()
