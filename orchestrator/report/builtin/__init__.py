"""The built-in study's report: the rewrite study's findings in words and its paper-vs-ours
table, its transition fit on per-example predictions, its figures (transition, heatmap,
frontier, long tail, no-op, settings), built on the report's core (collect, intervals,
threshold, render). `write_builtin_report` in write.py writes it."""
