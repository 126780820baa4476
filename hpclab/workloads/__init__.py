"""hpclab.workloads"""
