"""The parts of benchmarks/gpu.py, one job a module: `harness` (the sizes, time boxes, the context the parts share
and their peak memory), `workload` (the synthetic batches and FLOP counts they measure with), one module a part
(`forward`, `scoring`, `kmeans`, `training` for warmup and finetune), `runner` (runs one part in its time box and
records it) and `report` (the environment, the table and the JSON). benchmarks/gpu.py is the command; it puts
benchmarks/ on sys.path, where this package (and benchmarks/clustering.py, which the k-means part takes its features
from) is imported by absolute name. No module imports torch, transformers, peft, accelerate or mygo when it is
imported: each part imports what it needs when it runs, so a broken package fails that part only.
"""
