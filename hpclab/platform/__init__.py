"""hpclab.platform"""
