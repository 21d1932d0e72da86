"""Runs: MLflow runs of every experiment side by side, and one metric over steps."""

import plotly.express as px
import streamlit as st

from workbench import queries, ui

svc, me = ui.signed_in("Runs")
with ui.shown_errors():
    runs = queries.runs(svc)
if runs.empty:
    st.info("No MLflow runs yet. Run an experiment (`wb demo` seeds a few) and they appear "
            "here.")
    st.stop()

experiments = sorted(runs["experiment"].unique())
chosen = st.multiselect("Experiments", experiments, default=experiments)
shown = runs[runs["experiment"].isin(chosen)]
st.dataframe(shown, hide_index=True)

metrics = sorted(c.removeprefix("metrics.") for c in shown.columns if c.startswith("metrics."))
if not metrics:
    st.info("These runs logged no metrics.")
    st.stop()
metric = st.selectbox("Metric", metrics)
column = f"metrics.{metric}"
with_metric = shown[shown[column].notna()]
run_ids = tuple(with_metric["run_id"].head(20))
with ui.shown_errors():
    history = queries.metric_history(svc, run_ids, metric)
names = dict(zip(with_metric["run_id"], with_metric["run_name"].fillna(""), strict=True))
history["run"] = [f"{names.get(r) or r[:8]}" for r in history["run_id"]]
if history["step"].nunique() > 1:
    fig = px.line(history, x="step", y="value", color="run", markers=True,
                  title=f"{metric} by step")
else:
    fig = px.bar(with_metric, x="run_name", y=column, color="experiment", title=metric)
st.plotly_chart(fig)
