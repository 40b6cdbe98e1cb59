# Training: one `guider train` per (dataset, data, backbone, method, seed). The run folder
# also receives config.json, checkpoint.pt (resume after an interruption: --resume) and,
# for GUIDER's methods, teacher_metrics.json, amsc.npz and denoise.json.


rule train:
    input:
        unpack(train_data_files),
        unpack(tuned_input),
    output:
        metrics=f"{RUN}/metrics.json",
        per_user=f"{RUN}/per_user_test.csv",
        curve=f"{RUN}/log.csv",
    log:
        "results/logs/train/{dataset}/{data}/{backbone}/{method}/seed{seed}.log",
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
        args=train_args,
    shell:
        "guider train --data {params.data} --backbone {wildcards.backbone} --out {params.run} {params.args} "
        "--resume --no-progress > {log} 2>&1"
