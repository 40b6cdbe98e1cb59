# Tuning (config `tuning`; absent or null: no tuning): every grid point of a (backbone,
# method) trained once at the tuning seed on the base data, then `guider tune select`
# picks the point with the best valid Recall@20 and records what test-set selection would
# have picked. The study's runs train the chosen point (`guider train --tuned`).


rule tune_point:
    input:
        unpack(lambda wildcards: point_of(wildcards).inputs()),
    output:
        metrics="results/tuning/{dataset}/{backbone}/{method}/point{point}/metrics.json",
    log:
        "results/logs/tune/{dataset}/{backbone}/{method}/point{point}.log",
    benchmark:
        "results/benchmarks/tune/{dataset}/{backbone}/{method}/point{point}.tsv"
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
        args=lambda wildcards: point_of(wildcards).train_args(),
    shell:
        "guider train --data {params.data:q} --backbone {wildcards.backbone:q} --out {params.run:q} "
        "{params.args:q} --resume --no-progress > {log:q} 2>&1"


rule tune_select:
    input:
        unpack(tuning_inputs),
        runs=tuning_point_metrics,
    output:
        record="results/tuning/{dataset}/{backbone}/{method}.json",
    log:
        "results/logs/tune/{dataset}/{backbone}/{method}.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        args=lambda wildcards: STUDY.tune_select_args(wildcards.dataset, wildcards.backbone, wildcards.method),
    shell:
        "guider tune select --dataset {wildcards.dataset:q} --backbone {wildcards.backbone:q} "
        "--method {wildcards.method:q} {params.args:q} --out {output.record:q} > {log:q} 2>&1"
