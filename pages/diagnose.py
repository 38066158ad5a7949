"""Diagnose: which classes fail, what kind of error, and at which stage each missed object is lost."""

import streamlit as st

from detector.diagnosis.stage_blame import STAGE_LABELS, STAGES
from detector.diagnosis.tuner import KNOBS
from detector.viz import diagnosis as viz
from detector.wording import counted
from ui.diagnose import glue as ui
from ui.diagnose.wrong import LINK_COLUMN, wrong_frame
from ui.model import current_model
from ui.router import ensure_router

ensure_router()

st.title("Diagnose")
st.caption("One pass over a dataset, one forward per image through the same stages as the RPN inspector: per-class "
           "COCO AP, PR curves, the confusion matrix, TIDE's error types (Bolya et al. 2020) and, for every missed "
           "object, the stage of Faster R-CNN that lost it.")
loaded = current_model()
st.caption(f"Model: {loaded.description}. Change it in the sidebar.")
options = ui.targets()
if not options:
    st.info("No stored dataset and no run yet: upload a dataset on the **Data** page.")
    st.stop()
c1, c2, c3, c4 = st.columns([4, 2, 2, 2])
target = options[c1.selectbox("Images", range(len(options)), index=ui.target_from_url(options),
                              format_func=lambda i: options[i].label, key="diag_target")]
iou = c2.slider("IoU of a match", 0.1, 0.95, 0.5, 0.05, key="diag_iou")
score = c3.slider("Score threshold", 0.0, 1.0, 0.5, 0.05, key="diag_score")
available = len(ui.target_images(loaded, target).records)
images = c4.number_input("Images", 1, available, available, key=f"diag_images_{available}",
                         help="The first N images of the target; the pass states its time, memory and disk first.")

report = ui.stored_run_report(loaded, target)
if report and (report["iou"], report["score_threshold"]) == (iou, score) and not st.session_state.get("diag_live"):
    st.success(f"The run's diagnosis.json ({counted(report['images'], 'image')}), as last computed.", icon=":material/history:")
    trails = None
else:
    trails, fixed, total = ui.diagnosis_pass(loaded, target, int(images))
    report = ui.report_for(loaded, target, trails, fixed, total, iou, score)
    if len(trails) < total:
        st.caption(f"The first {len(trails)} of {total} images (raise 'Images' for all).")

m = st.columns(5)
m[0].metric("images", report["images"])
for col, key in zip(m[1:4], ("mAP", "mAP50", "mAP75")):
    col.metric(key, "-" if report[key] is None else f"{report[key]:.3f}")
m[4].metric("missed boxes", f"{report['missed']['total']} of {report['ground_truth']}")

tabs = st.tabs(["Per class", "Confusion", "Error types", "Where missed", "Missed boxes", "Tuner"])
with tabs[0]:
    st.dataframe(ui.per_class_frame(report), hide_index=True)
    st.caption(f"AP figures: pycocotools, as `evaluate`. Precision and recall at IoU {iou:g} and score >= {score:g}; "
               "best_f1_threshold: the score threshold that maximises F1 for that class.")
    pr_iou = st.radio("PR curves at IoU", ["0.5", "0.75"], horizontal=True, key="diag_pr_iou")
    st.plotly_chart(viz.pr_figure(report, pr_iou), key="diag_pr")
with tabs[1]:
    conf = report["confusion"]
    st.plotly_chart(viz.confusion_figure(conf), key="diag_confusion")
    labels = conf["labels"]
    r1, r2 = st.columns(2)
    row = r1.selectbox("Ground truth", range(len(labels)), format_func=labels.__getitem__, key="diag_cell_row")
    col = r2.selectbox("Predicted", range(len(labels)), format_func=labels.__getitem__, key="diag_cell_col")
    cell = conf["images"][row][col]
    st.caption(f"{conf['matrix'][row][col]} in this cell, from {counted(len(cell), 'image')}: " + ", ".join(cell[:50]))
    if trails is not None:
        wrong = wrong_frame(trails, iou, score, target.dataset_name, loaded.source)
        st.dataframe(wrong, hide_index=True,
                     column_config={LINK_COLUMN: st.column_config.LinkColumn(display_text=LINK_COLUMN)})
        st.caption("The false positives (the background row) and the confusions (off the diagonal), each detection "
                   "linked to its explanation on /rpn: its RoI, anchor, class distribution and NMS.")
        if len(wrong):
            i = st.number_input(f"False positive or confusion (0 to {len(wrong) - 1})", 0, len(wrong) - 1, 0,
                                key="diag_wrong_i")
            if wrong[LINK_COLUMN].iloc[int(i)]:
                st.markdown(f"[Explain this detection in the RPN inspector]({wrong[LINK_COLUMN].iloc[int(i)]})")
with tabs[2]:
    st.plotly_chart(viz.errors_figure(report["errors"]), key="diag_errors")
    st.caption(f"TIDE on every detection the model returns (foreground IoU 0.5, background 0.1): AP50 points gained "
               f"by fixing each error type alone (TIDE AP50 {report['tide_ap50']:.1f}). Counts: {report['error_counts']}.")
with tabs[3]:
    by = st.radio("Split by", ["class", "size"], horizontal=True, key="diag_blame_by")
    st.plotly_chart(viz.stage_figure(report["missed"], by), key="diag_stages")
    st.caption(f"{report['missed']['no_anchor_fits']} of the RPN-proposal losses have no anchor of IoU >= 0.3: "
               "no anchor shape fits them (the others the RPN ranked too low).")
with tabs[4]:
    missed = report["missed"]["boxes"]
    if not missed:
        st.success("No missed box at these thresholds.")
    else:
        stage = st.selectbox("Stage", ["all"] + list(STAGES), key="diag_missed_stage",
                             format_func=lambda s: s if s == "all" else STAGE_LABELS[s])
        shown = [b for b in missed if stage == "all" or b["stage"] == stage]
        st.dataframe(ui.missed_frame({"missed": {"boxes": shown}}, target, loaded), hide_index=True,
                     column_config={"open in /rpn": st.column_config.LinkColumn(display_text="open in /rpn")})
        if shown:
            i = st.number_input(f"Missed box (0 to {len(shown) - 1})", 0, len(shown) - 1, 0, key="diag_missed_i")
            box = shown[int(i)]
            image = ui.missed_image(target, box["image"])
            if image is not None:
                st.plotly_chart(viz.missed_box_figure(image, box["box"], box["stage"], box["class"]), key="diag_box")
            link = ui.rpn_link(box, target, loaded)
            if link:
                st.markdown(f"[Open this box in the RPN inspector]({link})")
with tabs[5]:
    if trails is None:
        st.info("The tuner needs the pass over the images (its RoI candidates).")
        st.button("Run the pass", key="diag_rerun", on_click=ui.go_live)
    else:
        base = ui.tuner_defaults(loaded)
        cols = st.columns(4)
        knobs = {}
        for j, (name, (_, _, kind)) in enumerate(KNOBS.items()):
            box_col = cols[j % 4]
            knobs[name] = (box_col.number_input(name, 1, 10000, int(base[name]), key=f"diag_knob_{name}") if kind is int
                           else box_col.slider(name, 0.0, 1.0, float(base[name]), 0.01, key=f"diag_knob_{name}"))
        st.caption(ui.exactness_text(trails))
        point = ui.tuned_point(loaded, trails, knobs, iou, score)
        if isinstance(point, str):
            st.warning(point)
        else:
            t = st.columns(3)
            for col, key in zip(t, ("mAP", "mAP50", "recall")):
                col.metric(key, "-" if point[key] is None else f"{point[key]:.3f}",
                           delta=None if point[key] is None or key == "recall" or report[key] is None
                           else f"{point[key] - report[key]:+.3f}")
        knob = st.selectbox("Curve over", list(KNOBS), index=list(KNOBS).index("box_score_thresh"), key="diag_curve")
        if st.toggle("Draw the curve (proposal filtering and post-processing per point)", key="diag_curve_on"):
            values = ui.curve_values(knob, knobs[knob])
            points = [ui.tuned_point(loaded, trails, {**knobs, knob: v}, iou, score) for v in values]
            curve = [p for p in points if not isinstance(p, str)]
            if len(curve) < len(points):
                st.caption(f"{len(points) - len(curve)} values beyond the pass's candidates are left out.")
            st.plotly_chart(viz.tuner_figure(curve, knob), key="diag_tuner")
        name = st.text_input("Checkpoint name", "tuned", key="diag_save_name")
        if st.button("Save the tuned checkpoint", key="diag_save"):
            path, message = ui.save_tuned(loaded, knobs, name)
            (st.success if path else st.error)(message)
