"""What every page shares: the sign-in gate, the sidebar identity, and errors as messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
import sqlalchemy as sa
import streamlit as st
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from mlwb.errors import PermissionDenied, WorkbenchError
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.users import Principal
from workbench import auth, queries


@contextmanager
def shown_errors() -> Iterator[None]:
    """Turn a store or product error into one message on the page, then stop the page."""
    try:
        yield
    except WorkbenchError as exc:
        st.error(exc.message)
        st.stop()
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        st.error(f"A setting is invalid ({bad}). Fix the WB_* variable and restart.")
        st.stop()
    except redis.RedisError as exc:
        st.error(f"Redis does not answer ({exc}). Is the stack up? Start it with `wb up`.")
        st.stop()
    except sa.exc.OperationalError as exc:
        st.error(f"The state database does not answer ({exc.orig}). Check WB_STATE_DB_URL.")
        st.stop()
    except MlflowException as exc:
        st.error(f"MLflow could not answer: {exc.message}. Check MLFLOW_TRACKING_URI.")
        st.stop()


def signed_in(title: str, role: Role = Role.viewer) -> tuple[Services, Principal]:
    """Render the page header; stop with a sign-in link unless a ``role`` user is signed in."""
    st.title(title)
    with shown_errors():
        svc = queries.services()
        principal = auth.current_principal(svc)
    if principal is None:
        url = auth.login_url(svc.settings)
        st.info("You are not signed in. The workbench uses the same sign-in as the API.")
        st.markdown(f"[Sign in to ml-workbench]({url})")
        st.stop()
    try:
        principal.require(role, Scope.read, f"viewing {title}")
    except PermissionDenied as exc:
        st.error(exc.message)
        st.stop()
    st.sidebar.caption(f"Signed in as **{principal.username}** ({principal.role.value})")
    st.sidebar.markdown(f"[Sign out]({svc.settings.public_api_url}/logout)")
    return svc, principal
