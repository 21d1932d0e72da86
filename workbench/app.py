"""The workbench's entry file: only the router. Run with `wb workbench` (streamlit run)."""

import streamlit as st

st.set_page_config(page_title="ml-workbench", layout="wide")
st.navigation([
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/runs.py", title="Runs", icon=":material/science:"),
    st.Page("pages/models.py", title="Models", icon=":material/deployed_code:"),
    st.Page("pages/jobs.py", title="Jobs", icon=":material/work:"),
    st.Page("pages/audit.py", title="Audit log", icon=":material/policy:"),
]).run()
