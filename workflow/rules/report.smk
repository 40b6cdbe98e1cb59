# Aggregation: runs.csv, tables (Markdown + LaTeX), metrics for DVC, figures (PDF + PNG).
# `snakemake --report results/report.html` collects the outputs marked report(...).

REPORT_METRICS = " ".join(config["report"]["metrics"])
FIGURE_METRIC = config["report"]["figure_metric"]


rule collect_runs:
    input:
        metrics=run_files("metrics.json"),
        curves=run_files("log.csv"),
    output:
        runs=report("results/summary/runs.csv", caption="../report/runs.rst", category="Summary"),
        curves="results/summary/training_curves.csv",
    log:
        "results/logs/report/collect_runs.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    shell:
        "guider report collect --metrics {input.metrics} --out {output.runs} --curves {output.curves} > {log} 2>&1"


rule main_table:
    input:
        runs="results/summary/runs.csv",
        per_user=run_files("per_user_test.csv"),
    output:
        md="results/tables/main.md",
        tex="results/tables/main.tex",
        tests=report("results/tables/main_significance.csv", caption="../report/significance.rst", category="Tables"),
    log:
        "results/logs/report/main_table.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.md)[0],
        metrics=REPORT_METRICS,
        alpha=config["report"]["alpha"],
    shell:
        "guider report table main --runs {input.runs} --out {params.stem} --metrics {params.metrics} "
        "--alpha {params.alpha} > {log} 2>&1"


rule ablation_table:
    input:
        runs="results/summary/runs.csv",
    output:
        md="results/tables/ablation.md",
        tex="results/tables/ablation.tex",
    log:
        "results/logs/report/ablation_table.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.md)[0],
        metrics=REPORT_METRICS,
    shell:
        "guider report table ablation --runs {input.runs} --out {params.stem} --metrics {params.metrics} > {log} 2>&1"


rule headline_metrics:
    input:
        runs="results/summary/runs.csv",
    output:
        metrics="results/summary/metrics.json",
    log:
        "results/logs/report/headline_metrics.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        metrics=REPORT_METRICS,
    shell:
        "guider report summary --runs {input.runs} --metrics-out {output.metrics} --metrics {params.metrics} > {log} 2>&1"


rule noise_curve:
    input:
        runs="results/summary/runs.csv",
    output:
        curve="results/summary/noise_curve.csv",
    log:
        "results/logs/report/noise_curve.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        metric=FIGURE_METRIC,
    shell:
        "guider report summary --runs {input.runs} --noise-out {output.curve} --metric {params.metric} > {log} 2>&1"


rule figure_comparison:
    input:
        runs="results/summary/runs.csv",
    output:
        png=report("results/figures/comparison.png", caption="../report/comparison.rst", category="Figures"),
        pdf="results/figures/comparison.pdf",
    log:
        "results/logs/report/figure_comparison.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.png)[0],
        metric=FIGURE_METRIC,
    shell:
        "guider report figure comparison --runs {input.runs} --metric {params.metric} --out {params.stem} > {log} 2>&1"


rule figure_curves:
    input:
        runs="results/summary/runs.csv",
        curves="results/summary/training_curves.csv",
    output:
        png=report("results/figures/curves.png", caption="../report/curves.rst", category="Figures"),
        pdf="results/figures/curves.pdf",
    log:
        "results/logs/report/figure_curves.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.png)[0],
        metric=FIGURE_METRIC,
    shell:
        "guider report figure curves --runs {input.runs} --curves {input.curves} --metric {params.metric} "
        "--out {params.stem} > {log} 2>&1"


rule figure_ablation:
    input:
        runs="results/summary/runs.csv",
    output:
        png=report("results/figures/ablation.png", caption="../report/ablation.rst", category="Figures"),
        pdf="results/figures/ablation.pdf",
    log:
        "results/logs/report/figure_ablation.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.png)[0],
        metric=FIGURE_METRIC,
    shell:
        "guider report figure ablation --runs {input.runs} --metric {params.metric} --out {params.stem} > {log} 2>&1"


rule figure_noise:
    input:
        runs="results/summary/runs.csv",
    output:
        png=report("results/figures/noise.png", caption="../report/noise.rst", category="Figures"),
        pdf="results/figures/noise.pdf",
    log:
        "results/logs/report/figure_noise.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.png)[0],
        metric=FIGURE_METRIC,
    shell:
        "guider report figure noise --runs {input.runs} --metric {params.metric} --out {params.stem} > {log} 2>&1"


rule figure_detection:
    input:
        runs="results/summary/runs.csv",
    output:
        png=report("results/figures/detection.png", caption="../report/detection.rst", category="Figures"),
        pdf="results/figures/detection.pdf",
    log:
        "results/logs/report/figure_detection.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.png)[0],
    shell:
        "guider report figure detection --runs {input.runs} --out {params.stem} > {log} 2>&1"
