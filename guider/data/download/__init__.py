"""Real datasets: the registry of upstream files (`registry`, datasets.yaml), resumable and
verified HTTP downloads (`http`), trust-on-first-use checksums (`checksum_lock`) and
`guider data download` (`cli`)."""
