"""Run folders and infrastructure: atomic writes (`atomic`), safe checkpoints (`checkpoint`), one
run per folder and one writer per run (`run_dir`), GPU slots (`gpu_claim`), plug-ins
(`plugins`) and provenance (`provenance`)."""
