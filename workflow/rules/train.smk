# Training: one `guider train` per study run (guider.study.RunSpec). The run folder also
# receives config.json, checkpoint.pt (resume after an interruption: --resume rewrites every
# output below, so a job killed at any moment completes on the next run) and, for GUIDER's
# methods, teacher_metrics.json, amsc.npz and denoise.json.


rule train:
    input:
        unpack(lambda wildcards: run_of(wildcards).inputs()),
    output:
        metrics="results/runs/{dataset}/{data}/{backbone}/{method}/seed{seed}/metrics.json",
        per_user="results/runs/{dataset}/{data}/{backbone}/{method}/seed{seed}/per_user_test.csv",
        curve="results/runs/{dataset}/{data}/{backbone}/{method}/seed{seed}/log.csv",
    log:
        "results/logs/train/{dataset}/{data}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{data}/{backbone}/{method}/seed{seed}.tsv"
    conda:
        CONDA_ENV
    threads: job_resources("train")["threads"]
    resources:
        gpu=1,
        mem_mb=job_resources("train")["mem_mb"],
        runtime=job_resources("train")["runtime"],
    params:
        data=lambda wildcards, input: folder_of(input.meta),
        run=lambda wildcards, output: folder_of(output.metrics),
        args=lambda wildcards: run_of(wildcards).train_args(),
    shell:
        "guider train --data {params.data:q} --backbone {wildcards.backbone:q} --out {params.run:q} "
        "{params.args:q} --resume --no-progress > {log:q} 2>&1"
