"""
Applications built on the engine and the tasks: the main job's chain (pretrain -> export ->
convert -> transfer) and the benchmarks. Nothing in the library imports this package.
"""
