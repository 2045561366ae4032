"""What counts as a mention of each CheXpert observation (the labeler's vocabulary).

Patterns are regular-expression fragments matched on lower-cased, cleaned report text at word
boundaries. Three kinds:

* `MENTIONS`: phrases that name a finding by themselves ("cardiomegaly", "pleural effusion"). A
  phrase may name several observations ("hydropneumothorax").
* `ANATOMY`: structures whose *size* is the finding ("heart size", "mediastinum"). They count only
  when the same clause also says the structure is abnormal (a `QUALIFIERS` word: "the heart is
  mildly enlarged"), or when a negation reaches them ("heart size is normal" -> 0). "Heart size is
  stable" therefore labels nothing, unlike a bare-keyword labeler that would call it positive.
* `EXCLUSIONS`: phrases that contain a mention word but are not that finding ("pericardial
  effusion", "mass effect"). They are matched in the same pass and swallow the text they cover.

The lists were written for this project from radiology usage (Fleischner glossary terms and
common report phrasing); they are not copied from the CheXpert labeler's phrase files.
"""

from __future__ import annotations

# observation -> phrases that name it on their own.
MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        r"enlarged (?:cardio)?mediastin(?:um|al (?:silhouette|contours?))",
        r"widened (?:cardio)?mediastin(?:um|al (?:silhouette|contours?))",
        r"(?:cardio)?mediastinal (?:widening|enlargement)",
        r"widening of the (?:cardio)?mediastinum",
    ),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"cardiac (?:enlargement|hypertrophy)",
        r"enlarged heart",
    ),
    "Lung Opacity": (
        r"opacit(?:y|ies)",
        r"opacification",
        r"opacified",
        r"infiltrat(?:e|es|ion|ive)",
        r"air[- ]?space (?:disease|process|filling)",
        r"haziness",
        r"hazy",
        r"ground[- ]glass",
        r"densit(?:y|ies)",
    ),
    "Lung Lesion": (
        r"nodul(?:e|es|ar density|ar densities)",
        r"mass(?:es)?",
        r"lesions?",
        r"neoplasms?",
        r"tumou?rs?",
        r"carcinoma",
        r"malignan(?:cy|cies)",
        r"metastas(?:is|es)",
        r"cavitary lesions?",
    ),
    "Edema": (
        r"edema",
        r"oedema",
        r"(?:pulmonary )?vascular congestion",
        r"pulmonary congestion",
        r"(?:congestive )?heart failure",
        r"chf",
        r"fluid overload",
    ),
    "Consolidation": (r"consolidation", r"consolidations", r"consolidative", r"consolidated"),
    "Pneumonia": (
        r"pneumonias?",
        r"bronchopneumonia",
        r"infectious process",
        r"infections?",
    ),
    "Atelectasis": (
        r"atelectas[ie]s",
        r"atelectatic",
        r"(?:lobar |segmental |lung )?collapse",
    ),
    "Pneumothorax": (r"pneumothora(?:x|ces)", r"ptx"),
    "Pleural Effusion": (
        r"(?:pleural )?effusions?",
        r"pleural fluid",
        r"hydrothorax",
    ),
    "Pleural Other": (
        r"pleural (?:thickening|plaques?|scarring|scar|calcifications?|fibrosis)",
        r"pleuro-?parenchymal (?:scarring|thickening)",
        r"fibrothorax",
        r"apical (?:pleural )?(?:cap|capping|thickening)",
    ),
    "Fracture": (r"fractures?", r"fractured", r"fx"),
    "Support Devices": (
        r"(?:endotracheal|tracheostomy|trach|et|nasogastric|ng|orogastric|og|enteric|feeding|gastrostomy|chest|"
        r"mediastinal|pleural|dobhoff|dubhoff) tubes?",
        r"tracheostomy",
        r"ett",
        r"dobhoff",
        r"(?:central venous|central|picc|swan[- ]ganz|pulmonary artery|hemodialysis|dialysis|ij|jugular|subclavian|"
        r"venous|midline|port) (?:catheters?|lines?)",
        r"picc",
        r"cvc",
        r"catheters?",
        r"pacemakers?",
        r"pacer",
        r"aicd",
        r"icd",
        r"defibrillator",
        r"(?:pacer|pacemaker|pacing|cardiac) (?:leads?|wires?)",
        r"port-?a-?cath",
        r"(?:lines|tubes) and (?:tubes|lines)",
        r"(?:support|monitoring) devices?",
        r"drains?",
        r"stents?",
        r"intra-?aortic balloon pump",
        r"iabp",
    ),
}

#: Pairs of (anatomy phrase, observation): the finding is the structure's abnormal size.
ANATOMY: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        r"heart(?: size)?",
        r"cardiac (?:silhouette|size|contours?|shadow|diameter)",
    ),
    "Enlarged Cardiomediastinum": (
        r"mediastinum",
        r"mediastinal (?:contours?|silhouette|width|structures)",
        r"cardiomediastinal (?:silhouette|contours?|structures|width)",
    ),
}

#: Words that say a structure in `ANATOMY` is abnormally large.
QUALIFIERS: tuple[str, ...] = (
    r"enlarg(?:ed|ement|ing)",
    r"widen(?:ed|ing)",
    r"prominen(?:t|ce)",
    r"increased",
    r"large",
    r"dilated",
)

#: observation -> phrases containing a mention word that are not that finding.
EXCLUSIONS: dict[str, tuple[str, ...]] = {
    "Pleural Effusion": (r"pericardial effusions?", r"joint effusions?"),
    "Lung Lesion": (r"mass effect", r"skin lesions?", r"soft tissue mass(?:es)?", r"breast mass(?:es)?"),
    "Lung Opacity": (r"(?:bone|osseous|soft tissue|breast) densit(?:y|ies)", r"bone mineral density"),
    "Edema": (r"(?:soft tissue|subcutaneous) edema",),
    "Atelectasis": (r"(?:vertebral|compression|vertebral body) collapse",),
    "Support Devices": (r"urinary catheters?",),
}
