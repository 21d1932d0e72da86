"""Overview: who uses the product and how much has landed in the event store."""

import streamlit as st

from workbench import queries, ui

svc, me = ui.signed_in("Overview")
with ui.shown_errors():
    o = queries.overview(svc)
    kinds = queries.events_per_kind(svc)

cols = st.columns(5)
cols[0].metric("Users", o.users, help=f"{o.active_users} active")
cols[1].metric("Events", o.events)
cols[2].metric("Audit entries", o.audit_entries)
cols[3].metric("Job events", o.job_events)
cols[4].metric("Ingest backlog", "Redis down" if o.backlog is None else o.backlog,
               help="Events recorded but not yet landed in the lake by `wb ingest`.")
landed = (f"last landed {o.lake_updated:%Y-%m-%d %H:%M:%S} UTC" if o.lake_updated
          else "nothing landed yet (is `wb ingest` running?)")
st.caption(f"Lake version {o.lake_version}, {landed}; pages cache reads for "
           f"{queries.LAKE_TTL} s.")

st.subheader("Events by kind")
if kinds.empty:
    st.info("No events yet. Clients record them with `POST /api/events`; `wb demo` seeds some.")
else:
    st.dataframe(kinds, hide_index=True)
