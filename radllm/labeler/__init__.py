"""A CheXpert-style rule-based report labeler written for radllm (`radllm label`).

    from radllm.labeler import label_report
    label_report("FINDINGS: No pleural effusion. Possible left basilar atelectasis.")
    # {"No Finding": None, ..., "Atelectasis": -1, ..., "Pleural Effusion": 0, ...}

Vocabulary (`vocabulary`), negation/uncertainty cues and their scopes (`cues`) and the rules that
combine them (`labeler`) are separate modules so each list can be read and extended on its own.
"""

from radllm.labeler.labeler import Labeler, Mention, default_labeler, label_report, label_reports, prepare_text

__all__ = ["Labeler", "Mention", "default_labeler", "label_report", "label_reports", "prepare_text"]
