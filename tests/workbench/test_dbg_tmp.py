from mlwb.sessions import principal_from_cookie
from tests.workbench.conftest import cookie_for
from streamlit.testing.v1 import AppTest
def test_dbg(seeded, wb_settings, svc):
    c = cookie_for(wb_settings, seeded.admin)
    print("P", principal_from_cookie(c, wb_settings, svc.users))
    def app():
        import streamlit as st
        st.write(repr(st.session_state.get("wb_session_cookie"))[:30])
        st.write(repr(dict(st.context.cookies)))
    at = AppTest.from_function(app)
    at.session_state["wb_session_cookie"] = c
    at.run()
    print([m.value for m in at.markdown])
