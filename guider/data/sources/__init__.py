"""Dataset sources: the protocol's processing of raw files (`preprocess`, `split`, `prepared`),
the real datasets' parsers (`amazon`, `microlens`), imports and exports of other layouts
(`lattice`, `import_cli`, `export_cli`) and `guider data prepare` (`prepare_cli`)."""
