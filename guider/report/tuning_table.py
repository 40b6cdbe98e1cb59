"""The "selection on valid vs on test" table: for every tuned (dataset, backbone, method),
the grid point chosen on validation Recall@20 (what the study trains), the point test-set
selection would have chosen (what MMRec's quick_start.py and the released GUIDER code
report, enoche/MMRec#64), their test Recall@20, and the optimism test-set selection adds.
Rows come from the tuning records (guider.tuning.grids); methods without a grid of their own
are left out (they train plain training's point)."""

from __future__ import annotations

from guider.report.labels import (
    backbone_name,
    backbone_order,
    dataset_name,
    dataset_order,
    display_name,
    learn_record,
    method_order,
)

COLUMNS = (
    "Dataset", "Backbone", "Method", "Points", "Chosen on valid", "Valid R@20", "Test R@20",
    "Chosen on test", "Test R@20 (test-chosen)", "Optimism",
)  # fmt: skip


def point_text(point: dict) -> str:
    """'reg_weight=0.001, train.lr=0.005, kd.weight=0.2' (model keys without their section);
    'defaults' for an empty point."""

    def one(key: str, value) -> str:
        name = key.removeprefix("model.")
        return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"

    return ", ".join(one(key, value) for key, value in point.items()) or "defaults"


def selection_rows(records: list[dict]) -> list[list[str]]:
    """One row per record with points, in dataset, backbone, method order."""
    for record in records:
        learn_record(record)
    tuned = [r for r in records if r.get("points")]
    if not tuned:
        raise ValueError("no tuning record with grid points (every method inherited plain training's point)")
    datasets = dataset_order({r["dataset"] for r in tuned})
    backbones = backbone_order({r["backbone"] for r in tuned})
    methods = method_order({r["method"] for r in tuned})
    key = {r_id: i for i, r_id in enumerate((d, b, m) for d in datasets for b in backbones for m in methods)}
    rows = []
    for record in sorted(tuned, key=lambda r: key[(r["dataset"], r["backbone"], r["method"])]):
        metric, chosen, by_test = record["metric"], record["chosen"], record["test_selected"]
        relative = record["optimism"] / chosen["test"][metric] if chosen["test"][metric] else float("nan")
        rows.append(
            [
                dataset_name(record["dataset"]),
                backbone_name(record["backbone"]),
                display_name(record["method"]),
                str(len(record["points"])),
                point_text(chosen["point"]),
                f"{chosen['valid'][metric]:.4f}",
                f"{chosen['test'][metric]:.4f}",
                "same" if by_test["index"] == chosen["index"] else point_text(by_test["point"]),
                f"{by_test['test'][metric]:.4f}",
                f"{record['optimism']:+.4f} ({relative:+.1%})",
            ]
        )
    return rows


CAPTION = "Model selection on valid vs on test (Recall@20 of one tuning seed)"
NOTE = (
    "Chosen on valid: the grid point with the best validation Recall@20 (ties: the earlier point), "
    "which the study trains with every seed. Chosen on test: the point test-set selection would report. "
    "Optimism: its test Recall@20 minus the valid-chosen point's, absolute (relative)."
)


def markdown(records: list[dict]) -> str:
    rows = selection_rows(records)
    lines = [f"**{CAPTION}**", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([*lines, "", NOTE, ""])


def latex(records: list[dict]) -> str:
    rows = selection_rows(records)

    def tex(text: str) -> str:
        return text.replace("\\", r"\textbackslash{}").replace("%", r"\%").replace("_", r"\_").replace("&", r"\&")

    body = [" & ".join(tex(cell) for cell in row) + r" \\" for row in rows]
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{tex(CAPTION)}}}",
            r"\label{tab:tuning}",
            r"\begin{tabular}{lll r l rr l r r}",
            r"\toprule",
            " & ".join(tex(c) for c in COLUMNS) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            rf"\par\footnotesize {tex(NOTE)}",
            r"\end{table}",
            "",
        ]
    )
