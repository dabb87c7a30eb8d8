"""Reads a MetaCore TensorBoard directory with TensorBoard's own reader and draws its scalars as a PNG.

    tensorboard_render.py LOGDIR OUT.png [TAG ...]

TensorBoard's EventAccumulator parses the event files (checking every record's CRC, as TensorBoard does when it
serves them); the script prints every tag with its number of points and last value, then draws the chosen tags
(default: train/loss and train/accuracy) against the step, one panel each, as TensorBoard's scalar dashboard
lays them out. Needs tensorboard and matplotlib; nothing in the build or the tests runs it.
"""
import sys
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

logdir, out = sys.argv[1], sys.argv[2]
accumulator = EventAccumulator(logdir, size_guidance={'scalars': 0})
accumulator.Reload()
tags = accumulator.Tags()['scalars']
for tag in tags:
    events = accumulator.Scalars(tag)
    print(f'{tag}: {len(events)} points, steps {events[0].step}..{events[-1].step}, last {events[-1].value:.5g}')
wanted = sys.argv[3:] or [t for t in ('train/loss', 'train/accuracy') if t in tags]
fig, axes = plt.subplots(1, len(wanted), figsize=(5.2 * len(wanted), 3.6), squeeze=False)
for ax, tag in zip(axes[0], wanted):
    events = accumulator.Scalars(tag)
    ax.plot([e.step for e in events], [e.value for e in events], color='#ff7043', linewidth=1.4)
    ax.set_title(tag, loc='left', fontsize=11)
    ax.set_xlabel('step (iteration)')
    ax.grid(True, color='#e0e0e0')
    for side in ('top', 'right'):
        ax.spines[side].set_visible(False)
fig.suptitle(f'TensorBoard scalars read from {logdir}', fontsize=10, x=0.01, ha='left')
fig.tight_layout()
fig.savefig(out, dpi=110)
print('wrote', out)
