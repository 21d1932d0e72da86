"""Audit log: every state change and sign-in, newest first, and the hash chain's status."""

import streamlit as st

from mlwb.roles import Role
from workbench import queries, ui

svc, me = ui.signed_in("Audit log", Role.approver)
with ui.shown_errors():
    chain = queries.audit_chain(svc)
if chain.ok:
    st.success(f"Hash chain intact: {chain.entries} entries verified (`wb audit verify`).")
else:
    st.error("The audit chain does not verify: " + "; ".join(chain.problems))

left, right, count = st.columns([2, 2, 1])
action = left.text_input("Action starts with", placeholder="auth.login")
actor = right.text_input("Actor contains", placeholder="user:1")
limit = count.number_input("Rows", min_value=10, max_value=5000, value=200, step=50)
with ui.shown_errors():
    entries = queries.audit_entries(svc, action.strip(), actor.strip(), int(limit))
if entries.empty:
    st.info("No audit entries match. Sign-ins, user and token changes and jobs add entries "
            "once `wb ingest` has landed them.")
else:
    st.dataframe(entries, hide_index=True)
