"""Code the tests and benchmarks share but production never runs: test doubles and the spec-vector demo.

Imported as ``tests.support`` from a checkout (the project root is on ``sys.path``).
"""
