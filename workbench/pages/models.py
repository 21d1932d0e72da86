"""Models: registered models, their aliases (champion, challenger, ...) and versions."""

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
name = st.selectbox("Versions of", list(models["model"]))
with ui.shown_errors():
    versions = queries.model_versions(svc, name)
st.dataframe(versions, hide_index=True)
