"""The GPU suite (``python benchmarks/gpu_suite.py``), one concern per module:

settings  what runs (rows, budgets, sizes), the settings and the plan
cli       the command line (its help is the suite's manual)
suite     the parent: runs the plan inside the budget, records every step
supervise process groups: a task's process and everything it started end together
child     a task's own process: runs one task, saves its result as it goes
env, smoke, checks, ddp, speed, quality   the tasks and the smoke task's checks
data      the smoke check's few images
report    RESULTS-gpu.md from results.json
export    the best checkpoints in fp16, within what comes back from the machine
wheels    wheels carried beside the code, installed without an index
files     atomic writes

Modules import torch and attnmel inside the functions that need them, so the parent stays light
and a missing package is named by the env task instead of failing at import.
"""
