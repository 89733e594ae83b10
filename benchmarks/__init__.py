"""Benchmarks: flow inference vs RAFT, resolution scaling, training step, correlation/warp ops."""
