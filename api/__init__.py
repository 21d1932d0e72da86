"""The Flask API: ``create_app(settings)`` builds it; nothing happens at import time.

Blueprints are registered from ``BLUEPRINTS``; each later part of the product adds its
module there.
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta

from flask import Flask

from api.fastjson import FastJSONProvider
from api.sessions import LeanSessionInterface
from mlwb.services import Services
from mlwb.settings import Settings, get_settings

# Modules with a ``bp`` Blueprint, registered in order.
BLUEPRINTS = ["api.health", "api.events", "api.serving", "api.promotions", "api.explain",
              "api.jobs", "api.openapi"]


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the API for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    settings.check()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.resolved_secret_key(),
        SESSION_COOKIE_NAME=settings.cookie_name,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_minutes),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=settings.session_minutes * 60,
    )
    if settings.trusted_proxies:
        # Only behind a proxy we run: otherwise a client would choose its own address.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.json = FastJSONProvider(app)
    app.session_interface = LeanSessionInterface()
    app.extensions["wb"] = services or Services.from_settings(settings)

    from api.auth import init_auth
    from api.errors import register_error_handlers

    register_error_handlers(app)
    init_auth(app)
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)
    from api.serving.fastpath import install

    install(app)  # the common prediction call, served without Flask's request machinery
    from api.serving.service import serving

    serving(app).shipper.start_if_left_over()  # rows of a stopped process's spool
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return app
