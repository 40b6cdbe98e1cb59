# Datasets: download + prepare (real data), generate (synthetic), import an MMRec folder,
# noisy copies (noise study). Every value reaches the shell quoted ({...:q}).


# One download rule per real dataset: its outputs are the registry's upstream files, so a
# failed or interrupted download keeps its partial files and resumes on the next run.
for _name in STUDY.by_source("download"):

    rule:
        name:
            f"download_{_name}"
        output:
            STUDY.download_outputs(_name),
        log:
            f"results/logs/data/download_{_name}.log",
        localrule: True
        conda:
            CONDA_ENV
        resources:
            **job_resources("data"),
        params:
            dataset=_name,
            args=STUDY.download_args(_name),
        shell:
            "guider data download {params.dataset:q} --resources resources {params.args:q} --no-progress "
            "> {log:q} 2>&1"


rule prepare:
    input:
        lambda wildcards: STUDY.download_outputs(wildcards.dataset),
    output:
        content="results/data/{dataset}/base/item_content.csv",
        meta="results/data/{dataset}/base/dataset.json",
    log:
        "results/logs/data/prepare_{dataset}.log",
    wildcard_constraints:
        dataset=name_pattern(STUDY.by_source("download")),
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        folder=lambda wildcards, output: folder_of(output.meta),
        seed=lambda wildcards: DATASETS[wildcards.dataset]["split_seed"],
    shell:
        "guider data prepare {wildcards.dataset:q} --resources resources --out {params.folder:q} "
        "--seed {params.seed:q} > {log:q} 2>&1"


rule synthetic:
    output:
        content="results/data/{dataset}/base/item_content.csv",
        meta="results/data/{dataset}/base/dataset.json",
    log:
        "results/logs/data/synthetic_{dataset}.log",
    wildcard_constraints:
        dataset=name_pattern(STUDY.by_source("synthetic")),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        folder=lambda wildcards, output: folder_of(output.meta),
        args=lambda wildcards: STUDY.synthetic_args(wildcards.dataset),
    shell:
        "guider data synthetic --out {params.folder:q} {params.args:q} --no-features > {log:q} 2>&1"


rule import_mmrec:
    input:
        lambda wildcards: STUDY.mmrec_files(wildcards.dataset),
    output:
        meta="results/data/{dataset}/base/dataset.json",
    log:
        "results/logs/data/import_{dataset}.log",
    wildcard_constraints:
        dataset=name_pattern(STUDY.by_source("mmrec")),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        src=lambda wildcards: DATASETS[wildcards.dataset]["path"],
        folder=lambda wildcards, output: folder_of(output.meta),
    shell:
        "guider data import --format mmrec {params.src:q} --out {params.folder:q} --name {wildcards.dataset:q} "
        "> {log:q} 2>&1"


# One rule for every noise kind (guider.data.noise): the copy's folder is the kind's level
# name (add0.2, natural), its options come from config noise.
rule noisy_copy:
    input:
        unpack(lambda wildcards: STUDY.base_files(wildcards.dataset)),
    output:
        meta="results/data/{dataset}/{level}/dataset.json",
    log:
        "results/logs/data/noise_{dataset}_{level}.log",
    wildcard_constraints:
        level=noise_level_pattern(),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        base=lambda wildcards, input: folder_of(input.meta),
        folder=lambda wildcards, output: folder_of(output.meta),
        args=lambda wildcards: STUDY.noise_args(wildcards.level),
    shell:
        "guider data noise --data {params.base:q} {params.args:q} --out {params.folder:q} > {log:q} 2>&1"
