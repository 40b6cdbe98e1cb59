# Datasets: download + prepare (real data), generate (synthetic), import an MMRec folder,
# noisy copies (noise study).


# One download rule per real dataset: its outputs are the registry's upstream files, so a
# failed or interrupted download keeps its partial files and resumes on the next run.
for _name in datasets_by_source("download"):

    rule:
        name:
            f"download_{_name}"
        output:
            download_outputs(_name),
        log:
            f"results/logs/data/download_{_name}.log",
        localrule: True
        conda:
            CONDA_ENV
        resources:
            **job_resources("data"),
        params:
            dataset=_name,
            args=download_args(_name),
        shell:
            "guider data download {params.dataset} --resources resources {params.args} --no-progress > {log} 2>&1"


rule prepare:
    input:
        lambda wildcards: download_outputs(wildcards.dataset),
    output:
        content="results/data/{dataset}/base/item_content.csv",
        meta="results/data/{dataset}/base/dataset.json",
    log:
        "results/logs/data/prepare_{dataset}.log",
    wildcard_constraints:
        dataset=name_pattern(datasets_by_source("download")),
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        folder=lambda wildcards, output: os.path.dirname(output.meta),
        seed=lambda wildcards: DATASETS[wildcards.dataset]["split_seed"],
    shell:
        "guider data prepare {wildcards.dataset} --resources resources --out {params.folder} "
        "--seed {params.seed} > {log} 2>&1"


rule synthetic:
    output:
        content="results/data/{dataset}/base/item_content.csv",
        meta="results/data/{dataset}/base/dataset.json",
    log:
        "results/logs/data/synthetic_{dataset}.log",
    wildcard_constraints:
        dataset=name_pattern(datasets_by_source("synthetic")),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        folder=lambda wildcards, output: os.path.dirname(output.meta),
        args=synthetic_args,
    shell:
        "guider data synthetic --out {params.folder} {params.args} --no-features > {log} 2>&1"


rule import_mmrec:
    input:
        mmrec_files,
    output:
        meta="results/data/{dataset}/base/dataset.json",
    log:
        "results/logs/data/import_{dataset}.log",
    wildcard_constraints:
        dataset=name_pattern(datasets_by_source("mmrec")),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        src=lambda wildcards: DATASETS[wildcards.dataset]["path"],
        folder=lambda wildcards, output: os.path.dirname(output.meta),
    shell:
        "guider data import --format mmrec {params.src} --out {params.folder} --name {wildcards.dataset} > {log} 2>&1"


rule noisy_copy:
    input:
        unpack(lambda wildcards: base_data_files(wildcards.dataset)),
    output:
        meta="results/data/{dataset}/{kind}{ratio}/dataset.json",
    log:
        "results/logs/data/noise_{dataset}_{kind}{ratio}.log",
    wildcard_constraints:
        kind="add|delete|modality",
        ratio=r"[0-9]*\.?[0-9]+",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        base=lambda wildcards, input: os.path.dirname(input.meta),
        folder=lambda wildcards, output: os.path.dirname(output.meta),
        args=noise_args,
    shell:
        "guider data noise --data {params.base} {params.args} --out {params.folder} > {log} 2>&1"


rule natural_copy:
    input:
        unpack(lambda wildcards: base_data_files(wildcards.dataset)),
    output:
        meta="results/data/{dataset}/natural/dataset.json",
    log:
        "results/logs/data/noise_{dataset}_natural.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("data"),
    params:
        base=lambda wildcards, input: os.path.dirname(input.meta),
        folder=lambda wildcards, output: os.path.dirname(output.meta),
        args=noise_args,
    shell:
        "guider data noise --data {params.base} {params.args} --out {params.folder} > {log} 2>&1"
