"""Models: what the API serves (the promotion record), registered models, aliases, versions."""

import streamlit as st

from workbench import queries, ui

svc, me = ui.signed_in("Models")
with ui.shown_errors():
    models = queries.models(svc)
if models.empty:
    st.info("No registered models yet. Train and register one (`wb demo` registers a "
            "`champion` and a `challenger`).")
    st.stop()
st.dataframe(models, hide_index=True)
name = st.selectbox("Model", list(models["model"]))
with ui.shown_errors():
    served = queries.serving(svc, name)
    versions = queries.model_versions(svc, name)
st.subheader("Served by the API")
cols = st.columns(3)
cols[0].metric("Champion", f"v{served['champion']}" if served["champion"] else "none")
cols[1].metric("Challenger", f"v{served['challenger']}" if served["challenger"] else "none")
cols[2].metric("Traffic", served["mode"])
if served["drift"]:
    st.warning("An alias was moved in MLflow directly, not through a promotion. The API keeps "
               "serving the recorded version until an approver confirms or reverts it "
               "(`wb models drift`).")
    st.dataframe(served["drift"], hide_index=True)
st.subheader("Versions")
st.dataframe(versions, hide_index=True)
