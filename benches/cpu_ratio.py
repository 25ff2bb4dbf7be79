#!/usr/bin/env python3
"""Runs shell commands interleaved N rounds; prints median CPU seconds (user+sys of the command
and every descendant it waited for, from wait4) per variant and the ratio to the first."""
import os, sys, subprocess, statistics
rounds = int(sys.argv[1]); pairs = sys.argv[2:]
names, cmds = pairs[0::2], pairs[1::2]
res = {n: [] for n in names}
for r in range(rounds):
    order = list(range(len(names)))
    order = order[r % len(order):] + order[:r % len(order)]
    for i in order:
        p = subprocess.Popen(["sh", "-c", cmds[i]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = 0
        res[names[i]].append(ru.ru_utime + ru.ru_stime)
base = statistics.median(res[names[0]])
for n in names:
    m = statistics.median(res[n])
    print(f"{n}: median {m*1000:.1f} ms CPU over {rounds} rounds (min {min(res[n])*1000:.1f}, max {max(res[n])*1000:.1f}); ratio {m/base:.2f}")
