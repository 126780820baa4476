"""hpclab.elastic"""
