# Tuning (config `tuning`; absent or null: no tuning): every grid point of a (backbone,
# method) trained once at the tuning seed on the base data, then `guider tune select`
# picks the point with the best valid Recall@20 and records what test-set selection would
# have picked. The study's runs train the chosen point (`guider train --tuned`).


rule tune_point:
    input:
        unpack(lambda wildcards: base_data_files(wildcards.dataset)),
        unpack(tuning_inherit_input),
    output:
        metrics="results/tuning/{dataset}/{backbone}/{method}/point{point}/metrics.json",
    log:
        "results/logs/tune/{dataset}/{backbone}/{method}/point{point}.log",
    wildcard_constraints:
        point=r"[0-9]+",
    conda:
        CONDA_ENV
    threads: job_resources("train")["threads"]
    resources:
        gpu=1,
        mem_mb=job_resources("train")["mem_mb"],
        runtime=job_resources("train")["runtime"],
    params:
        data=lambda wildcards, input: os.path.dirname(input.meta),
        run=lambda wildcards, output: os.path.dirname(output.metrics),
        args=tune_point_args,
    shell:
        "guider train --data {params.data} --backbone {wildcards.backbone} --out {params.run} {params.args} "
        "--resume --no-progress > {log} 2>&1"


rule tune_select:
    input:
        unpack(tuning_inherit_input),
        runs=tuning_point_runs,
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
        args=tune_select_args,
    shell:
        "guider tune select --dataset {wildcards.dataset} --backbone {wildcards.backbone} "
        "--method {wildcards.method} {params.args} --out {output.record} > {log} 2>&1"
