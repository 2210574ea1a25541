"""The benchmark harness of the book's performance chapter.

- :mod:`bench.measure`: what gets timed and how (the string-statement timer, series, inputs,
  and the worker process that times one peer at one thread count);
- :mod:`bench.results`: pure functions over a results JSON (floors, ratios, targets, tables);
- :mod:`bench.run`: the command line (``python -m bench.run``), which starts the workers,
  interleaves them and writes ``bench/results/*.json``.

Run from the repository root: ``python -m bench.run --help``. See ``bench/README.md``.
"""
