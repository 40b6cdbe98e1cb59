# Aggregation: runs.csv, tables (Markdown + LaTeX), metrics for DVC, figures (PDF + PNG).
# `snakemake --report results/report.html` collects the outputs marked report(...).

REPORT_METRICS = STUDY.config["report"]["metrics"]
FIGURE_METRIC = STUDY.config["report"]["figure_metric"]


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
        "guider report collect --metrics {input.metrics:q} --out {output.runs:q} --curves {output.curves:q} "
        "> {log:q} 2>&1"


rule main_table:
    input:
        runs="results/summary/runs.csv",
        per_user=run_files("per_user_test.csv"),
    output:
        md=report("results/tables/main.md", caption="../report/tables.rst", category="Tables (Markdown)"),
        tex="results/tables/main.tex",
        html=report("results/tables/main.html", caption="../report/tables.rst", category="Tables"),
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
        alpha=STUDY.config["report"]["alpha"],
        note=STUDY.note_args(),
    shell:
        "guider report table main --runs {input.runs:q} --out {params.stem:q} --metrics {params.metrics:q} "
        "--alpha {params.alpha:q} {params.note:q} > {log:q} 2>&1"


rule ablation_table:
    input:
        runs="results/summary/runs.csv",
    output:
        md=report("results/tables/ablation.md", caption="../report/tables.rst", category="Tables (Markdown)"),
        tex="results/tables/ablation.tex",
        html=report("results/tables/ablation.html", caption="../report/tables.rst", category="Tables"),
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
        "guider report table ablation --runs {input.runs:q} --out {params.stem:q} --metrics {params.metrics:q} "
        "> {log:q} 2>&1"


rule baselines_table:
    input:
        runs="results/summary/runs.csv",
    output:
        md=report("results/tables/baselines.md", caption="../report/tables.rst", category="Tables (Markdown)"),
        tex="results/tables/baselines.tex",
        html=report("results/tables/baselines.html", caption="../report/tables.rst", category="Tables"),
    log:
        "results/logs/report/baselines_table.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.md)[0],
        metrics=REPORT_METRICS,
    shell:
        "guider report table baselines --runs {input.runs:q} --out {params.stem:q} --metrics {params.metrics:q} "
        "> {log:q} 2>&1"


rule robustness_table:
    input:
        runs="results/summary/runs.csv",
    output:
        md=report("results/tables/robustness.md", caption="../report/robustness.rst", category="Tables (Markdown)"),
        tex="results/tables/robustness.tex",
        html=report("results/tables/robustness.html", caption="../report/robustness.rst", category="Tables"),
    log:
        "results/logs/report/robustness_table.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.md)[0],
        metric=FIGURE_METRIC,
    shell:
        "guider report table robustness --runs {input.runs:q} --out {params.stem:q} --metrics {params.metric:q} "
        "> {log:q} 2>&1"


rule tuning_table:
    input:
        records=[STUDY.tuning_record(*key) for key in STUDY.tuning_keys()],
    output:
        md=report("results/tables/tuning.md", caption="../report/tuning.rst", category="Tables (Markdown)"),
        tex="results/tables/tuning.tex",
        html=report("results/tables/tuning.html", caption="../report/tuning.rst", category="Tables"),
    log:
        "results/logs/report/tuning_table.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.md)[0],
    shell:
        "guider report tuning --records {input.records:q} --out {params.stem:q} > {log:q} 2>&1"


# The report's first page (workflow/report/workflow.rst includes it) and the README's table:
# GUIDER vs plain per dataset and backbone, with the direction and significance.
rule headline:
    input:
        runs="results/summary/runs.csv",
        tests="results/tables/main_significance.csv",
    output:
        rst="results/report/headline.rst",
        md="results/report/headline.md",
    log:
        "results/logs/report/headline.log",
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.rst)[0],
        metric=FIGURE_METRIC,
        alpha=STUDY.config["report"]["alpha"],
        note=STUDY.note_args(),
    shell:
        "guider report headline --runs {input.runs:q} --tests {input.tests:q} --out {params.stem:q} "
        "--metric {params.metric:q} --alpha {params.alpha:q} {params.note:q} > {log:q} 2>&1"


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
        "guider report summary --runs {input.runs:q} --metrics-out {output.metrics:q} --metrics {params.metrics:q} "
        "> {log:q} 2>&1"


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
        "guider report summary --runs {input.runs:q} --noise-out {output.curve:q} --metric {params.metric:q} "
        "> {log:q} 2>&1"


# One rule for every figure: `guider report figure <figure>`; the caption (figure.rst)
# picks its text by the figure's name.
rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report("results/figures/{figure}.png", caption="../report/figure.rst", category="Figures"),
        pdf="results/figures/{figure}.pdf",
    log:
        "results/logs/report/figure_{figure}.log",
    wildcard_constraints:
        figure=name_pattern(STUDY.all_figures()),
    localrule: True
    conda:
        CONDA_ENV
    resources:
        **job_resources("report"),
    params:
        stem=lambda wildcards, output: os.path.splitext(output.png)[0],
        command=lambda wildcards: STUDY.figure_command(wildcards.figure),
        args=lambda wildcards: STUDY.figure_args(wildcards.figure),
    shell:
        "guider report figure {params.command:q} --runs {input.runs:q} {params.args:q} --out {params.stem:q} "
        "> {log:q} 2>&1"
