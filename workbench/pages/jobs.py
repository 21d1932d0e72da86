"""Jobs: what the workers did (the lake's job events) and what they are doing (RQ, live)."""

import streamlit as st

from workbench import queries, ui

svc, me = ui.signed_in("Jobs")
with ui.shown_errors():
    workers = queries.workers(svc)
    queues = queries.queues(svc)
    jobs = queries.live_jobs(svc, me)
    history = queries.job_history(svc)

st.subheader("Workers")
if workers.empty:
    st.warning("No worker is running: queued jobs wait until one starts (`wb worker`, or "
               "`wb worker --gpu 0` on a GPU host).")
else:
    st.dataframe(workers, hide_index=True)

st.subheader("Queues")
st.dataframe(queues, hide_index=True)

st.subheader("Jobs")
if jobs.empty:
    st.info("No jobs queued or kept. Submit one with `wb run EXPERIMENT` (see `wb run --help`).")
else:
    st.dataframe(jobs, hide_index=True)

st.subheader("Job history")
if history.empty:
    st.info("No job events landed yet. Submitted jobs report each status change here.")
else:
    st.dataframe(history, hide_index=True)
