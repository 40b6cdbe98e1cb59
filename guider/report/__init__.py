"""Aggregation of finished runs into the paper's tables and figures.

`runs` collects run directories into one tidy table, `stats` holds the significance
tests, `tables` and `figures` render them; the `*_cli` modules are the `guider report`
commands the workflow's report rules call.
"""
