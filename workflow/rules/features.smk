# Item features: text (sentence-transformers) and image (CNN, or Amazon's published CNN
# features) into the dataset folder. Both may use a GPU, so they count against `gpu`.


rule text_features:
    input:
        content="results/data/{dataset}/base/item_content.csv",
    output:
        feat="results/data/{dataset}/base/text_feat.npy",
    log:
        "results/logs/features/text_{dataset}.log",
    conda:
        CONDA_ENV
    threads: job_resources("features")["threads"]
    resources:
        gpu=1,
        mem_mb=job_resources("features")["mem_mb"],
        runtime=job_resources("features")["runtime"],
    params:
        folder=lambda wildcards, input: folder_of(input.content),
        args=lambda wildcards: STUDY.feature_args(wildcards.dataset, "text"),
    shell:
        "guider features text --data {params.folder:q} {params.args:q} --no-progress > {log:q} 2>&1"


rule image_features:
    input:
        content="results/data/{dataset}/base/item_content.csv",
    output:
        feat="results/data/{dataset}/base/image_feat.npy",
    log:
        "results/logs/features/image_{dataset}.log",
    conda:
        CONDA_ENV
    threads: job_resources("features")["threads"]
    resources:
        gpu=1,
        mem_mb=job_resources("features")["mem_mb"],
        runtime=job_resources("features")["runtime"],
    params:
        folder=lambda wildcards, input: folder_of(input.content),
        args=lambda wildcards: STUDY.feature_args(wildcards.dataset, "image"),
    shell:
        "guider features image --data {params.folder:q} {params.args:q} --no-progress > {log:q} 2>&1"
