"""Evaluation of generated reports, images and VQA answers (`radllm evaluate`).

    from radllm.evaluation import EvaluationOptions, evaluate
    metrics = evaluate("preds.jsonl", "data/manifest.jsonl", "runs/eval", EvaluationOptions())

Groups: `nlg` (BLEU/METEOR/ROUGE-L/CIDEr), `clinical` + `reports` (clinical efficacy through
`radllm.labeler`), `images` (PSNR/SSIM, FID, clinical agreement), `vqa` (accuracy, AUROC);
`bootstrap` + `intervals` (paired-bootstrap intervals of the headline metrics and of model − set);
`suite` runs what the predictions allow and writes metrics.json and report.html (`page`, with
`svg` charts and the learning curves of `curves`).
"""

from radllm.evaluation.suite import EvaluationOptions, compute_metrics, evaluate

__all__ = ["EvaluationOptions", "compute_metrics", "evaluate"]
