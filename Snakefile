# GUIDER reproduction workflow (Snakemake 9). Table of contents only: the rules live in
# workflow/rules/, their glue in workflow/rules/common.smk, the config in config/.
#   snakemake --cores all                              the paper reproduction (config/config.yaml)
#   snakemake --cores all --configfile config/demo.yaml    the offline CPU demo
#   snakemake --report results/report.html             the HTML report


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        STUDY.targets(),
