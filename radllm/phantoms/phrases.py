"""Sentence templates for phantom reports, in the register of IU X-Ray / MIMIC-CXR reports.

Rules the templates keep, so a rule-based CheXpert-style labeler reads back exactly the labels
the report was written from:
- a positive sentence names its observation in standard vocabulary and contains no negation
  ("no", "without", "not", "normal") and no hedge;
- a hedged sentence contains one uncertainty cue ("possible", "may", "cannot be excluded",
  "questionable") and no negation;
- a negative sentence negates only observations that are all absent (never mixes polarities);
- sentences never name a second observation by accident (no "collapse", "density", "heart
  border" in an effusion sentence, etc.);
- fillers ("The lungs are clear.") name no observation at all.

Placeholders: {side} right/left/bilateral, {sev} severity word, {lobe} lobe name, {zone} lung
zone, {size} diameter in cm, {ribs}/{rib_word} rib ordinals, {route} central line route,
{cm} tube distance, {displaced} displaced/nondisplaced, {is_a} "is a"/"are".
A capitalised placeholder ({Side}) is the same value with its first letter upper-cased.
"""

from __future__ import annotations

CARDIOMEGALY = (
    "The heart is {sev_adv} enlarged.",
    "{Sev} cardiomegaly.",
    "There is {sev} enlargement of the cardiac silhouette.",
    "The cardiac silhouette is {sev_adv} enlarged.",
    "{Sev} cardiomegaly is present.",
)
CARDIOMEGALY_HEDGED = (
    "Possible mild cardiomegaly.",
    "The cardiac silhouette may be mildly enlarged.",
    "Mild cardiomegaly cannot be excluded.",
)
CARDIOMEGALY_IMPRESSION = ("{Sev} cardiomegaly.", "Cardiomegaly.")
CARDIOMEGALY_IMPRESSION_HEDGED = ("Possible mild cardiomegaly.",)

EFFUSION = (
    "There is a {sev} {side} pleural effusion.",
    "{Sev} {side} pleural effusion.",
    "{Sev} {side} pleural effusion with blunting of the {side} costophrenic angle.",
    "A {sev} {side} pleural effusion is present.",
)
EFFUSION_BILATERAL = (
    "There are {sev} bilateral pleural effusions.",
    "{Sev} bilateral pleural effusions.",
    "{Sev} bilateral pleural effusions with blunting of both costophrenic angles.",
)
EFFUSION_HEDGED = (
    "Possible small {side} pleural effusion.",
    "Blunting of the {side} costophrenic angle may represent a small pleural effusion.",
    "A small {side} pleural effusion cannot be excluded.",
)
EFFUSION_BILATERAL_HEDGED = (
    "Possible small bilateral pleural effusions.",
    "Blunting of both costophrenic angles may represent small pleural effusions.",
    "Small bilateral pleural effusions cannot be excluded.",
)
EFFUSION_IMPRESSION = ("{Sev} {side} pleural effusion.",)
EFFUSION_BILATERAL_IMPRESSION = ("{Sev} bilateral pleural effusions.",)
EFFUSION_IMPRESSION_HEDGED = ("Possible small {side} pleural effusion.",)
EFFUSION_BILATERAL_IMPRESSION_HEDGED = ("Possible small bilateral pleural effusions.",)

PNEUMOTHORAX = (
    "There is a {sev} {side} pneumothorax.",
    "{Sev} {side} pneumothorax with a visible visceral pleural line.",
    "A {sev} {side} pneumothorax is present.",
    "{Sev} {side} {where}pneumothorax.",
)
PNEUMOTHORAX_HEDGED = (
    "Possible small {side} apical pneumothorax.",
    "A small {side} pneumothorax cannot be excluded.",
    "There may be a small {side} apical pneumothorax.",
)
PNEUMOTHORAX_IMPRESSION = ("{Sev} {side} pneumothorax.",)
PNEUMOTHORAX_IMPRESSION_HEDGED = ("Possible small {side} pneumothorax.",)

CONSOLIDATION = (
    "Focal opacity in the {lobe} consistent with consolidation.",
    "Dense airspace opacity in the {lobe} compatible with consolidation.",
    "Consolidative opacity in the {lobe} with air bronchograms.",
    "There is {lobe} consolidation with associated airspace opacity.",
)
CONSOLIDATION_IMPRESSION = ("{Lobe} consolidation.", "Consolidation in the {lobe}.")
PNEUMONIA_HEDGED = (
    "Findings may represent pneumonia.",
    "This could represent pneumonia in the appropriate clinical setting.",
    "Possible pneumonia.",
)
OPACITY = (
    "Patchy opacity in the {lobe}.",
    "Hazy airspace opacity in the {lobe}.",
    "There is an ill-defined opacity in the {lobe}.",
)
OPACITY_HEDGED = (
    "Possible subtle opacity in the {lobe}.",
    "Questionable opacity in the {lobe}.",
    "A subtle opacity in the {lobe} cannot be excluded.",
)
OPACITY_IMPRESSION = ("{Lobe} opacity.", "Airspace opacity in the {lobe}.")
OPACITY_IMPRESSION_HEDGED = ("Possible {lobe} opacity.",)

NODULE = (
    "There is a {size} cm nodule in the {side} {zone} lung.",
    "{Size} cm {side} {zone} lung nodule.",
    "A rounded {size} cm nodule projects over the {side} {zone} lung.",
)
NODULE_HEDGED = (
    "Possible {size} cm nodule in the {side} {zone} lung.",
    "Questionable small nodule in the {side} {zone} lung.",
    "A small {side} {zone} lung nodule cannot be excluded.",
)
MASS = (
    "There is a {size} cm mass in the {side} {zone} lung.",
    "{Size} cm {side} {zone} lung mass.",
    "A lobulated {size} cm mass is seen in the {side} {zone} lung.",
)
LESION_IMPRESSION = (
    "{Size} cm {side} {zone} lung {kind}. Recommend chest CT for further evaluation.",
    "{Side} {zone} lung {kind}.",
)
LESION_IMPRESSION_HEDGED = ("Possible {side} {zone} lung nodule. Consider chest CT.",)

ATELECTASIS = (
    "Plate-like atelectasis at the {side} lung base.",
    "Linear atelectasis at the {side} base.",
    "{Side} basilar subsegmental atelectasis.",
)
ATELECTASIS_BILATERAL = (
    "Bibasilar plate-like atelectasis.",
    "Linear atelectasis at both lung bases.",
    "Bibasilar subsegmental atelectasis.",
)
ATELECTASIS_VOLUME_LOSS = (
    "{Side} lower lobe atelectasis with volume loss and elevation of the {side} hemidiaphragm.",
    "Volume loss in the {side} lower lobe from atelectasis, with elevation of the {side} hemidiaphragm.",
)
ATELECTASIS_HEDGED = (
    "Possible minimal {side} basilar atelectasis.",
    "Minimal atelectasis at the {side} base cannot be excluded.",
    "Questionable subsegmental atelectasis at the {side} base.",
)
ATELECTASIS_BILATERAL_HEDGED = (
    "Possible minimal bibasilar atelectasis.",
    "Minimal bibasilar atelectasis cannot be excluded.",
)
ATELECTASIS_IMPRESSION = ("{Side} basilar atelectasis.",)
ATELECTASIS_BILATERAL_IMPRESSION = ("Bibasilar atelectasis.",)
ATELECTASIS_VOLUME_LOSS_IMPRESSION = ("{Side} lower lobe atelectasis.",)
ATELECTASIS_IMPRESSION_HEDGED = ("Possible {side} basilar atelectasis.",)
ATELECTASIS_BILATERAL_IMPRESSION_HEDGED = ("Possible bibasilar atelectasis.",)

FRACTURE = (
    "Acute {displaced} {fracture_word} of the {side} posterior {ribs} {rib_word}.",
    "There {is_a} {displaced} {fracture_word} of the {side} {ribs} posterior {rib_word}.",
    "{Displaced} {side} posterior {ribs} {rib_word} {fracture_word}.",
)
FRACTURE_HEDGED = (
    "Possible nondisplaced fracture of the {side} posterior {ribs} {rib_word}.",
    "A nondisplaced fracture of the {side} {ribs} {rib_word} cannot be excluded.",
    "Questionable nondisplaced fracture of the {side} posterior {ribs} {rib_word}.",
)
FRACTURE_IMPRESSION = ("{Side} {ribs} {rib_word} {fracture_word}.", "Acute {side} rib {fracture_word}.")
FRACTURE_IMPRESSION_HEDGED = ("Possible {side} rib fracture.",)

ETT = (
    "Endotracheal tube terminates {cm} cm above the carina.",
    "The endotracheal tube tip is {cm} cm above the carina.",
    "An endotracheal tube is in place with the tip {cm} cm above the carina.",
)
CENTRAL_LINE = (
    "{Route} central venous catheter with tip in the superior vena cava.",
    "{Route} central venous catheter terminates in the SVC.",
    "A {route} central venous catheter is present with the tip in the lower SVC.",
)
ENTERIC_TUBE = (
    "Enteric tube courses below the diaphragm into the stomach.",
    "Nasogastric tube tip is in the stomach.",
    "An enteric tube extends into the stomach.",
)
DEVICES_IMPRESSION = ("Lines and tubes in satisfactory position.", "Support devices as described above.")

#: Negations, keyed by the set of observations they negate together.
NEGATIONS: dict[frozenset[str], tuple[str, ...]] = {
    frozenset({"Cardiomegaly"}): (
        "Heart size is normal.",
        "The heart is normal in size.",
        "Normal heart size.",
        "The cardiac silhouette is within normal limits.",
        "No cardiomegaly.",
    ),
    frozenset({"Enlarged Cardiomediastinum"}): (
        "The mediastinal contours are normal.",
        "Mediastinal contours are within normal limits.",
        "The mediastinum is unremarkable.",
    ),
    frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"}): (
        "Heart size and mediastinal contours are normal.",
        "The heart and mediastinum are within normal limits.",
        "Normal heart size and mediastinal contours.",
    ),
    frozenset({"Lung Opacity"}): (
        "No focal airspace opacity.",
        "There is no focal opacity.",
        "No focal lung opacity is seen.",
    ),
    frozenset({"Consolidation"}): (
        "No focal consolidation.",
        "There is no focal consolidation.",
        "No consolidation is identified.",
    ),
    frozenset({"Lung Opacity", "Consolidation"}): (
        "No focal consolidation or opacity.",
        "There is no focal airspace opacity or consolidation.",
    ),
    frozenset({"Edema"}): ("No pulmonary edema.", "There is no evidence of pulmonary edema.", "No edema."),
    frozenset({"Pneumonia"}): ("No evidence of pneumonia.", "No radiographic evidence of pneumonia."),
    frozenset({"Lung Lesion"}): (
        "No suspicious pulmonary nodules or masses.",
        "No pulmonary nodule or mass is seen.",
        "No focal nodule or mass.",
    ),
    frozenset({"Atelectasis"}): ("No atelectasis.", "No focal atelectasis."),
    frozenset({"Pneumothorax"}): ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax."),
    frozenset({"Pleural Effusion"}): ("No pleural effusion.", "No pleural effusions.", "There is no pleural effusion."),
    frozenset({"Pleural Effusion", "Pneumothorax"}): (
        "No pleural effusion or pneumothorax.",
        "No pneumothorax or pleural effusion.",
        "There is no pleural effusion or pneumothorax.",
    ),
    frozenset({"Consolidation", "Pleural Effusion", "Pneumothorax"}): (
        "No focal consolidation, pleural effusion, or pneumothorax.",
        "There is no focal consolidation, pleural effusion or pneumothorax.",
    ),
    frozenset({"Fracture"}): ("No acute rib fracture.", "No displaced fracture is seen.", "No acute osseous fracture."),
}

LUNGS_CLEAR = ("The lungs are clear.", "Lungs are clear bilaterally.", "The lungs are well expanded and clear.")
BONES_UNREMARKABLE = ("The visualized osseous structures are unremarkable.", "Osseous structures are grossly intact.")
NORMAL_IMPRESSION = (
    "No acute cardiopulmonary abnormality.",
    "No acute cardiopulmonary disease.",
    "No active disease.",
    "Normal chest radiograph.",
    "No acute cardiopulmonary process.",
)
