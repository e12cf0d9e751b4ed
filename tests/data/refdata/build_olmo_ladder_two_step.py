"""Builds olmo_ladder_two_step.csv from ../shared/refdata/olmo_ladder (Bhagia et al. 2024,
github.com/allenai/OLMo-ladder), reshaped as the paper's `scaling/utils.py` reads it for the
v2_main tasks (`get_step1_data_by_name`, `get_step2_data_by_name`, src/scripts/paper/configs/final.json):

- train runs: 190M, 370M, 760M, 1.3B at 1, 2, 5, 10 x Chinchilla (raw_curves/<size>-<length>.csv);
  targets: 7B-4T (peteish7_eval_anneal) and 13B-5T (peteish13_eval_final);
- D = throughput/total_tokens (_step x batch_size_in_tokens where that column is absent, as theirs); task loss = the task's rc 5-shot bits per byte, accuracy its rc
  5-shot len_norm accuracy; MMLU = the four test subsets weighted 0.215/0.335/0.219/0.231;
- step-1 rows (final = 1): per run, the mean of its last 5 evaluations at its last D;
- step-2 rows (final = 0): each train run's evaluations after the first 10% (ceil), then a
  trailing moving average of 5 (their `moving_average`);
- target rows (target = 1): the last value of the trailing moving average of 5 over the curve.

Run: python tests/data/refdata/build_olmo_ladder_two_step.py /work/shared/refdata/olmo_ladder
"""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

N = {"190M": 190354176, "370M": 371262464, "760M": 758220288, "1B": 1279395840,
     "peteish7_eval_anneal": 6887575552, "peteish13_eval_final": 13202396160}
MMLU_WEIGHTS = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
TASKS = ["hellaswag_val", "arc_challenge_test", "arc_easy_test", "piqa_val", "csqa_val", "socialiqa_val",
         "openbookqa_test"]
MINIMUM = {"piqa_val": 0.5, "socialiqa_val": 1 / 3, "csqa_val": 0.2}


def task_columns(curve: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task == "mmlu_avg_test":
        w = np.array(list(MMLU_WEIGHTS.values()))
        loss = np.stack([curve[f"eval/downstream_bpb/mmlu_{k}_test_rc_5shot_bpb"] for k in MMLU_WEIGHTS], 1)
        acc = np.stack([curve[f"eval/downstream/mmlu_{k}_test_rc_5shot_len_norm"] for k in MMLU_WEIGHTS], 1)
        return loss @ w / w.sum(), acc @ w / w.sum()
    return (curve[f"eval/downstream_bpb/{task}_rc_5shot_bpb"].to_numpy(float),
            curve[f"eval/downstream/{task}_rc_5shot_len_norm"].to_numpy(float))


def moving_average(values: np.ndarray, n: int = 5) -> np.ndarray:
    out = np.cumsum(values, dtype=float)
    if len(out) < n:
        return out / np.arange(1, len(out) + 1)
    out[n:] = out[n:] - out[:-n]
    return np.concatenate([out[: n - 1] / np.arange(1, n), out[n - 1:] / n])


def build(root: Path) -> pd.DataFrame:
    rows = []
    runs = [f"{s}-{m}xC" for s in ("190M", "370M", "760M", "1B") for m in (1, 2, 5, 10)]
    for run in runs + ["peteish7_eval_anneal", "peteish13_eval_final"]:
        curve = pd.read_csv(root / "raw_curves" / f"{run}.csv")
        size = run.split("-")[0]
        n, target = N[size if size in N else run], run.startswith("peteish")
        d = (curve["throughput/total_tokens"].to_numpy(float) if "throughput/total_tokens" in curve
             else curve["_step"].to_numpy(float) * curve["batch_size_in_tokens"].to_numpy(float))
        for task in ["mmlu_avg_test"] + TASKS:
            loss, acc = task_columns(curve, task)
            base = {"task": f"{task}_5shot", "task_minimum": MINIMUM.get(task, 0.25), "run": run, "N": n}
            if target:
                rows.append({**base, "D": d[-1], "task_loss": moving_average(loss)[-1],
                             "accuracy": moving_average(acc)[-1], "final": 0, "target": 1})
                continue
            rows.append({**base, "D": d[-1], "task_loss": loss[-5:].mean(), "accuracy": acc[-5:].mean(),
                         "final": 1, "target": 0})
            skip = int(math.ceil(0.1 * len(loss)))
            for dd, ll, aa in zip(d[skip:], moving_average(loss[skip:]), moving_average(acc[skip:])):
                rows.append({**base, "D": dd, "task_loss": ll, "accuracy": aa, "final": 0, "target": 0})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/refdata/olmo_ladder")
    out = Path(__file__).with_name("olmo_ladder_two_step.csv")
    build(root).to_csv(out, index=False, float_format="%.10g")
    print(out)
